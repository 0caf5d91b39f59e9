"""What every command-line tool of the package does with a user's mistake and with Ctrl-C.

A mistake in a command (a flag out of range, an unknown id or model, a missing file) is
printed as one line naming the problem, with exit status 2; ``--debug`` (taken by every
tool) shows the traceback instead.  Ctrl-C ends with one line and status 130 (training
says where its last checkpoint is: :func:`glam_experiments.training.train`).  Errors that
are not the user's — bugs — keep their traceback.

    def main(argv: list[str] | None = None) -> None:
        parser = ArgumentParser(description=...)
        ...
        run_command(lambda rest: _run(parser.parse_args(rest)), argv)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

import gymnasium as gym

T = TypeVar("T")

DEBUG_FLAG = "--debug"
#: exit status of a command that was used wrongly (argparse's)
USAGE_STATUS = 2
#: exit status after Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED_STATUS = 130


class UsageError(ValueError):
    """A command's arguments or a configuration's fields cannot run; the message names the flag."""


def flag_name(field: str) -> str:
    """The command-line flag of a configuration field (``n_envs`` → ``--n-envs``)."""
    return "--" + field.replace("_", "-")


def require_at_least(values: Mapping[str, int | float | None], minimum: int = 1) -> None:
    """Refuse fields below ``minimum`` (``None`` means "not set" and passes).

    :param values: field name → value; the message names the field and its flag.
    :raises UsageError: ``--n-envs must be at least 1, got 0 (n_envs)``.
    """
    for field, value in values.items():
        if value is not None and value < minimum:
            raise UsageError(f"{flag_name(field)} must be at least {minimum}, got {value} ({field})")


def summary(doc: str | None) -> str:
    """A module docstring's first paragraph on one line: a ``--help`` description not cut mid-sentence."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors are :class:`UsageError` (one line through :func:`run_command`, the same as
    every other refused flag, instead of the usage block) and which lists ``--debug``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of an error")

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


#: what a wrong command raises: our own UsageError and the library's ValueErrors (unknown ids,
#: models, kwargs, prompts over the context...), missing files, gymnasium's unknown ids, and a
#: lock another process holds (llm_policy.file_lock.LockHeldError, a TimeoutError)
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, TimeoutError, gym.error.Error)


def run_command(command: Callable[[list[str]], T], argv: list[str] | None = None) -> T:
    """Run a tool's ``command`` on its arguments: user errors as one line, Ctrl-C as one line.

    :param command: parses its arguments (``--debug`` removed) and runs.
    :param argv: the arguments (``None``: ``sys.argv[1:]``).
    :raises SystemExit: 2 after a user error, 130 after Ctrl-C.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        return command(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        raise SystemExit(INTERRUPTED_STATUS) from None
    except USER_ERRORS as error:
        if debug:
            raise
        message = " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__
        print(f"error: {message}  ({DEBUG_FLAG} shows the traceback)", file=sys.stderr)
        raise SystemExit(USAGE_STATUS) from None


__all__ = [
    "DEBUG_FLAG",
    "INTERRUPTED_STATUS",
    "USAGE_STATUS",
    "USER_ERRORS",
    "ArgumentParser",
    "UsageError",
    "flag_name",
    "require_at_least",
    "run_command",
    "summary",
]
