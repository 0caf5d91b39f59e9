"""One voice per ``torchrun`` job: the ranks other than 0 keep their warnings to themselves.

Every rank of a job runs the same code, so each library warning, log record and progress bar
would be printed once per rank (twice with 2 ranks, interleaved).  :func:`glam_experiments.distributed.init_ranks`
calls :func:`silence_process` on every rank but 0; set ``GLAM_RL_VERBOSE_RANKS=1`` to let every rank
speak (e.g. to debug a warning only one rank would give).  Errors are never hidden: an exception
still ends its rank with its traceback, and log records of level ERROR still print.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import TextIO

#: Set to 1 to let every rank print its warnings, log records and progress bars.
VERBOSE_RANKS_ENV = "GLAM_RL_VERBOSE_RANKS"


def speaks(rank: int) -> bool:
    """Whether the process of global ``rank`` prints warnings: rank 0, or every rank with
    ``GLAM_RL_VERBOSE_RANKS=1``.

    :param rank: the process's global rank.
    """
    return rank == 0 or os.environ.get(VERBOSE_RANKS_ENV, "") not in ("", "0")


def _show_nothing(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A ``warnings.showwarning`` that shows nothing."""


def silence_process() -> None:
    """Hide this process's Python warnings, its log records up to WARNING (transformers, torch,
    accelerate, peft...) and transformers' and huggingface_hub's progress bars (``Loading weights``).

    The warning filters are left as they are: what they display is hidden, and a warning they turn
    into an error (``-W error``) still raises, as it does on the rank that speaks, so the ranks keep
    running the same code.  Irreversible for the process (call it on a rank that should stay quiet).
    """
    warnings.showwarning = _show_nothing
    logging.disable(logging.WARNING)  # every logger's records up to WARNING; ERROR and CRITICAL still print
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # transformers is the "policy" extra: no transformers, no bar of it
        return
    hf_logging.disable_progress_bar()  # transformers' bars, and huggingface_hub's downloads


def quiet_unless_main(rank: int) -> bool:
    """:func:`silence_process` on a rank that does not :func:`speaks`.

    :param rank: the process's global rank.
    :return: whether the process was silenced.
    """
    if speaks(rank):
        return False
    silence_process()
    return True


__all__ = ["VERBOSE_RANKS_ENV", "quiet_unless_main", "silence_process", "speaks"]
