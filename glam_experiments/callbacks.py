"""CleanRL-style training logs for any SB3 algorithm: TensorBoard tags and an episode CSV."""

from __future__ import annotations

import csv
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from torch.utils.tensorboard import SummaryWriter

#: SB3 logger keys and the CleanRL tags they are written under.
LOSS_TAGS = {
    "train/policy_gradient_loss": "losses/policy_loss",
    "train/value_loss": "losses/value_loss",
    "train/entropy_loss": "losses/entropy",
    "train/approx_kl": "losses/approx_kl",
    "train/clip_fraction": "losses/clipfrac",
    "train/explained_variance": "losses/explained_variance",
    "train/loss": "losses/td_loss",
    "train/learning_rate": "charts/learning_rate",
}
EPISODE_FIELDS = ("frames", "return", "length", "success")


class CleanRLLogger(BaseCallback):
    """Writes ``charts/episodic_return``, ``charts/episodic_length``,
    ``charts/episodic_success`` (0 or 1), ``charts/success_rate`` (mean of the last
    ``window`` episodes), ``charts/SPS`` and ``losses/*`` (one point per update, at the
    step of that update) to TensorBoard, and every finished episode to
    ``<run_dir>/episodes.csv``.

    Episodes are read from the env's infos: ``info["episode"]`` (SB3's Monitor) for the
    return and length, ``info["success"]`` (BabyAI-Text) for success.

    :param run_dir: the run's log folder.
    :param window: episodes averaged in ``charts/success_rate``.
    """

    def __init__(self, run_dir: str | Path, window: int = 100) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.window = window
        self.successes: deque[float] = deque(maxlen=window)
        self.writer: SummaryWriter | None = None
        self._csv = None
        self._start = 0.0
        self._start_steps = 0
        self._unhook: Callable[[], None] | None = None

    def _on_training_start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.run_dir))
        new = not (self.run_dir / "episodes.csv").exists()
        self._csv = open(self.run_dir / "episodes.csv", "a", newline="")  # noqa: SIM115 (closed at training end)
        self._rows = csv.writer(self._csv)
        if new:
            self._rows.writerow(EPISODE_FIELDS)
        self._start, self._start_steps = time.perf_counter(), self.num_timesteps
        self._hook_logger()

    def _hook_logger(self) -> None:
        """Write each ``train/*`` value to TensorBoard as ``train()`` records it.

        SB3 dumps its logger before ``train()`` (on-policy) or every few episodes
        (off-policy), so values read at a callback point or at a dump are one update
        late, and the last update of ``learn()`` is never dumped.  ``train()`` records
        each key once per update, which gives one point per update at its own step.
        """
        logger = self.logger
        original = logger.record
        had_own = "record" in vars(logger)

        def record(key: str, value: Any, exclude: str | tuple[str, ...] | None = None) -> None:
            original(key, value, exclude)
            if key in LOSS_TAGS and self.writer is not None:
                self.writer.add_scalar(LOSS_TAGS[key], float(value), self.num_timesteps)

        def unhook() -> None:
            if had_own:
                logger.record = original  # type: ignore[method-assign]
            else:
                del logger.record  # the class's method again

        logger.record = record  # type: ignore[method-assign]
        self._unhook = unhook

    def _on_step(self) -> bool:
        assert self.writer is not None
        dones = np.asarray(self.locals.get("dones", []))
        for done, info in zip(dones, self.locals.get("infos", []), strict=False):
            if not done:
                continue
            success = float(info.get("success", False))
            self.successes.append(success)
            episode = info.get("episode", {})
            ret, length = float(episode.get("r", np.nan)), int(episode.get("l", -1))
            self.writer.add_scalar("charts/episodic_return", ret, self.num_timesteps)
            self.writer.add_scalar("charts/episodic_length", length, self.num_timesteps)
            self.writer.add_scalar("charts/episodic_success", success, self.num_timesteps)
            self.writer.add_scalar("charts/success_rate", np.mean(self.successes), self.num_timesteps)
            self._rows.writerow((self.num_timesteps, ret, length, int(success)))
        return True

    def _on_rollout_end(self) -> None:
        assert self.writer is not None
        elapsed = time.perf_counter() - self._start
        if elapsed > 0:
            self.writer.add_scalar("charts/SPS", (self.num_timesteps - self._start_steps) / elapsed, self.num_timesteps)
        if self._csv is not None:
            self._csv.flush()

    def _on_training_end(self) -> None:
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
        if self.writer is not None:
            self.writer.close()
        if self._csv is not None:
            self._csv.close()
