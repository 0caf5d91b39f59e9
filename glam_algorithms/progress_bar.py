"""A progress bar that counts the frames an algorithm played, not its VecEnv's width times its steps."""

from __future__ import annotations

from stable_baselines3.common.callbacks import ProgressBarCallback


class FramesProgressBar(ProgressBarCallback):
    """SB3's progress bar, advanced by ``model.num_timesteps``.

    SB3's own bar adds ``n_envs`` at every step, which is every env's frame for PPO but
    overcounts an algorithm whose finished envs wait for the others of their group
    (:class:`glam_algorithms.GiGPO`); for PPO both bars are the same.
    """

    def _on_training_start(self) -> None:
        super()._on_training_start()  # the bar's total: the frames left, from where learn() starts
        self._start = self.model.num_timesteps

    def _on_step(self) -> bool:
        self.pbar.update(self.num_timesteps - self._start - self.pbar.n)
        return True


__all__ = ["FramesProgressBar"]
