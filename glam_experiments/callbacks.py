"""CleanRL-style training logs for any SB3 algorithm: TensorBoard tags and an episode CSV."""

from __future__ import annotations

import csv
import io
import time
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from torch.utils.tensorboard import SummaryWriter

from glam_experiments.distributed import current_ranks
from llm_policy.optimizer import LR_SCALE

#: SB3 logger keys and the CleanRL tags they are written under (CleanRL's ppo.py names, which
#: only PPO and RecurrentPPO log); SB3's ``train/loss`` depends on the algorithm: :func:`loss_tags`.
#: ``losses/entropy`` holds SB3's entropy *loss*, minus the entropy (CleanRL's ppo.py logs the
#: entropy itself), and ``losses/value_loss`` SB3's mean squared error (CleanRL's is half of it):
#: the values are SB3's, so that the runs logged so far stay comparable with new ones.
LOSS_TAGS = {
    "train/policy_gradient_loss": "losses/policy_loss",
    "train/value_loss": "losses/value_loss",
    "train/entropy_loss": "losses/entropy",
    "train/approx_kl": "losses/approx_kl",
    "train/clip_fraction": "losses/clipfrac",
    "train/explained_variance": "losses/explained_variance",
    "train/learning_rate": "charts/learning_rate",
    # the group-advantage algorithms' (glam_algorithms)
    "train/reference_kl": "losses/reference_kl",
    "train/rollout_steps": "charts/rollout_steps",
    "train/skipped_updates": "charts/skipped_updates",
}
#: logger keys written to TensorBoard under their own name (glam_algorithms' statistics of each rollout's groups)
OWN_NAME_PREFIXES = ("group/",)
#: SB3's ``train/loss`` of an on-policy algorithm (PPO, RecurrentPPO): the total loss minimised.
ON_POLICY_LOSS_TAG = "losses/loss"
#: SB3's ``train/loss`` of an off-policy one (DQN): the TD loss, under CleanRL's dqn.py name.
OFF_POLICY_LOSS_TAG = "losses/td_loss"


def loss_tags(model: BaseAlgorithm) -> dict[str, str]:
    """SB3 logger keys -> CleanRL tags for ``model``'s algorithm.

    SB3 records PPO's total loss and DQN's TD loss under the same key, ``train/loss``; CleanRL
    names them apart (``losses/loss``, ``losses/td_loss``), so a PPO run's curve does not read
    as a TD loss.

    :param model: the algorithm being trained.
    """
    total = ON_POLICY_LOSS_TAG if isinstance(model, OnPolicyAlgorithm) else OFF_POLICY_LOSS_TAG
    return {**LOSS_TAGS, "train/loss": total}


EPISODE_FIELDS = ("frames", "return", "length", "success")


class CleanRLLogger(BaseCallback):
    """Writes ``charts/episodic_return``, ``charts/episodic_length``,
    ``charts/episodic_success`` (0 or 1), ``charts/success_rate`` (mean of the last
    ``window`` episodes), ``charts/SPS`` and ``losses/*`` (one point per update, at the
    step of that update; :func:`loss_tags`: PPO's total loss is ``losses/loss``, DQN's
    ``losses/td_loss``) to TensorBoard, and every finished episode to
    ``<run_dir>/episodes.csv``.

    Episodes are read from the env's infos: ``info["episode"]`` (SB3's Monitor) for the
    return and length, ``info["success"]`` (BabyAI-Text) for success.

    Under ``torchrun`` (:mod:`glam_experiments.distributed`) rank 0 alone writes; steps count
    the frames of all ranks, each rank's episodes are gathered to rank 0 at the end of
    every rollout, and ``losses/*`` are rank 0's (the ranks share their gradients, not
    their minibatches).

    :param run_dir: the run's log folder.
    :param window: episodes averaged in ``charts/success_rate``.
    :param resume_step: continue an interrupted run whose last checkpoint was taken at this
        (global) step: TensorBoard hides what the killed run logged after it (``purge_step``),
        ``episodes.csv`` drops those rows, and the success window starts from ``successes``.
    :param successes: the success window at ``resume_step``.
    """

    def __init__(
        self,
        run_dir: str | Path,
        window: int = 100,
        resume_step: int | None = None,
        successes: list[float] | None = None,
    ) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.window = window
        self.resume_step = resume_step
        self.successes: deque[float] = deque(successes or [], maxlen=window)
        self.writer: SummaryWriter | None = None
        self._csv = None
        self._pending: list[tuple[int, float, int, float]] = []
        self._start = 0.0
        self._start_steps = 0
        self._unhook: Callable[[], None] | None = None
        self.ranks = current_ranks()

    @property
    def step(self) -> int:
        """Frames so far over all ranks (every rank runs the same number)."""
        return self.num_timesteps * self.ranks.world_size

    def _on_training_start(self) -> None:
        self.ranks = current_ranks()
        self._start, self._start_steps = time.perf_counter(), self.step
        if not self.ranks.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        csv_path = self.run_dir / "episodes.csv"
        if self.resume_step is not None:
            # one more than the checkpoint's step: the checkpointed update logged its losses at it
            self.writer = SummaryWriter(str(self.run_dir), purge_step=self.resume_step + 1)
            _drop_rows_after(csv_path, self.resume_step)
        else:
            self.writer = SummaryWriter(str(self.run_dir))
        new = not csv_path.exists()
        self._csv = open(csv_path, "a", newline="")  # noqa: SIM115 (closed at training end)
        self._rows = csv.writer(self._csv)
        if new:
            self._rows.writerow(EPISODE_FIELDS)
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
        tags = loss_tags(self.model)

        def record(key: str, value: Any, exclude: str | tuple[str, ...] | None = None) -> None:
            original(key, value, exclude)
            if self.writer is not None and (key in tags or key.startswith(OWN_NAME_PREFIXES)):
                self.writer.add_scalar(tags.get(key, key), float(value), self.step)

        def unhook() -> None:
            if had_own:
                logger.record = original  # type: ignore[method-assign]
            else:
                del logger.record  # the class's method again

        logger.record = record  # type: ignore[method-assign]
        self._unhook = unhook

    def _on_step(self) -> bool:
        dones = np.asarray(self.locals.get("dones", []))
        for done, info in zip(dones, self.locals.get("infos", []), strict=False):
            if done:
                episode = info.get("episode", {})
                ret, length = float(episode.get("r", np.nan)), int(episode.get("l", -1))
                self._pending.append((self.step, ret, length, float(info.get("success", False))))
        if self.ranks.world_size == 1:
            self._write_pending([self._pending])
        return True

    def _write_pending(self, per_rank: list[list[tuple[int, float, int, float]]]) -> None:
        self._pending = []
        if self.writer is None:
            return
        for step, ret, length, success in sorted(e for episodes in per_rank for e in episodes):
            self.successes.append(success)
            self.writer.add_scalar("charts/episodic_return", ret, step)
            self.writer.add_scalar("charts/episodic_length", length, step)
            self.writer.add_scalar("charts/episodic_success", success, step)
            self.writer.add_scalar("charts/success_rate", np.mean(self.successes), step)
            self._rows.writerow((step, ret, length, int(success)))

    def _on_rollout_end(self) -> None:
        if self.ranks.world_size > 1:
            gathered: list[Any] | None = [None] * self.ranks.world_size if self.ranks.is_main else None
            dist.gather_object(self._pending, gathered, dst=0)
            self._write_pending(gathered or [])
        if self.writer is None:
            return
        elapsed = time.perf_counter() - self._start
        if elapsed > 0:
            self.writer.add_scalar("charts/SPS", (self.step - self._start_steps) / elapsed, self.step)
        self.flush()

    def flush(self) -> None:
        """Write what is logged so far to disk (a live TensorBoard sees it; a killed run keeps it)."""
        if self.writer is not None:
            self.writer.flush()
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


def _drop_rows_after(csv_path: Path, step: int) -> None:
    """Keep the rows of ``csv_path`` (episodes, measurements) logged at or before ``step`` (first column)."""
    if not csv_path.exists():
        return
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [row for row in rows[1:] if int(row[0]) <= step]
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows(kept)


class EveryNUpdates(BaseCallback):
    """Acts on the policy after 0, ``every``, 2 ``every``... PPO updates and after the last one.

    Each action happens when the rollout after that update ends: the policy has then run its
    first forward, which a ``torchrun`` job needs before rank 0 may run one alone.  Updates are
    counted from the frames, so a resumed run continues the count.  Subclasses implement
    :meth:`act` (called with the number of updates done) and may close what they opened in
    :meth:`close`.

    :param every: updates between two actions.
    """

    def __init__(self, every: int) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be at least 1 update, got {every}")
        self.every = every
        self._rollouts = 0
        self._last: int | None = None
        self.ranks = current_ranks()

    @property
    def step(self) -> int:
        """Frames so far over all ranks."""
        return self.num_timesteps * self.ranks.world_size

    def _on_step(self) -> bool:
        return True

    def _rollouts_done(self) -> int:
        counted = getattr(self.model, "n_rollouts", None)  # glam_algorithms' rollouts have no fixed size
        if counted is not None:
            return int(counted)
        per_rollout = getattr(self.model, "n_steps", 0) * self.model.n_envs
        return self.num_timesteps // per_rollout if per_rollout else self._rollouts

    def _on_rollout_end(self) -> None:
        self._rollouts += 1
        updates = self._rollouts_done() - 1  # updates done before this rollout was collected
        if updates % self.every == 0:
            self._act(updates)

    def _on_training_end(self) -> None:
        updates = self._rollouts_done()  # learn() ends with the update of its last rollout
        if updates and self._last != updates:
            self._act(updates)
        self.close()

    def _act(self, updates: int) -> None:
        self.act(updates)
        self._last = updates

    def act(self, updates: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the callback opened (called at the end of training)."""


class EpisodeRecorder(EveryNUpdates):
    """Every ``every`` updates, plays one seeded episode of the current policy and writes it
    to TensorBoard: ``episode/frames``, an animated GIF of the frames captioned with the
    chosen action and its probability (TensorBoard's Images tab, one per recording, with
    the step slider), and ``episode/steps``, a text table of every step's observation,
    action probabilities, value estimate and reward.  ``episode/success`` and
    ``episode/length`` give the recorded episode's outcome.

    The episodes are those of the policy after 0, ``every``, 2 ``every``... updates (each
    recorded when the rollout after that update ends, since the policy has then run its
    first forward, which a ``torchrun`` job needs before rank 0 may run one alone) and
    after the last update; all play the same seed, so they differ only by the policy.
    Under ``torchrun``, rank 0 alone records.

    :param env_id: the BabyAI-Text id to play (e.g. the training env's).
    :param every: updates between recordings.
    :param log_dir: TensorBoard folder to write to (e.g. the run's); ``None``: the
        TensorBoard output of SB3's logger (``PPO(..., tensorboard_log=...)``).
    :param seed: the recorded episode's seed.
    :param env_kwargs: extra ``gym.make`` arguments.
    :param deterministic: record the most probable actions instead of sampling.
    :param max_steps: cut the recorded episode after this many steps (``None``: the env's limit).
    """

    def __init__(
        self,
        env_id: str,
        every: int = 10,
        log_dir: str | Path | None = None,
        seed: int = 0,
        env_kwargs: dict[str, Any] | None = None,
        deterministic: bool = False,
        max_steps: int | None = None,
    ) -> None:
        super().__init__(every)
        self.env_id = env_id
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.seed = seed
        self.env_kwargs = env_kwargs
        self.deterministic = deterministic
        self.max_steps = max_steps
        self.writer: SummaryWriter | None = None
        self._own_writer = False

    def _init_callback(self) -> None:
        self.ranks = current_ranks()
        if not self.ranks.is_main:
            return
        if self.log_dir is not None:
            self.writer = SummaryWriter(str(self.log_dir))
            self._own_writer = True
            return
        from stable_baselines3.common.logger import TensorBoardOutputFormat

        formats = [f for f in self.logger.output_formats if isinstance(f, TensorBoardOutputFormat)]
        if not formats:
            raise ValueError(
                "EpisodeRecorder has no TensorBoard to write to: pass log_dir=..., or give the model "
                "tensorboard_log=... (SB3's TensorBoard output)"
            )
        self.writer = formats[0].writer

    def act(self, updates: int) -> None:
        self.record(updates)

    def close(self) -> None:
        if self._own_writer and self.writer is not None:
            self.writer.close()
            self.writer = None

    def record(self, updates: int) -> None:
        """Play the episode with the current policy and write it at the current step."""
        if self.writer is None:
            return
        from glam_experiments.recording import record_episodes
        from glam_experiments.viewer import gif_bytes

        policy = self.model.policy
        was_training = policy.training
        (episode,) = record_episodes(
            policy,
            self.env_id,
            episodes=1,
            seed=self.seed,
            env_kwargs=self.env_kwargs,
            deterministic=self.deterministic,
            max_steps=self.max_steps,
        )
        policy.train(was_training)  # not set_training_mode: under torchrun that also counts an update
        step = self.step
        _add_gif(self.writer, "episode/frames", gif_bytes([episode]), step)
        self.writer.add_text("episode/steps", steps_table(episode, updates), step)
        self.writer.add_scalar("episode/success", float(episode.success), step)
        self.writer.add_scalar("episode/length", episode.length, step)
        self.writer.flush()


class GroundingLogger(EveryNUpdates):
    """The grounding diagnostics (:mod:`glam_experiments.diagnostics`) of the policy being
    trained, after 0, ``every``, 2 ``every``... updates and after the last: on a fixed set of
    states along the BabyAI bot's paths, ``grounding/bot_agreement`` beside
    ``grounding/constant_agreement`` (the best constant action's), ``grounding/agreement_gain``,
    ``grounding/state_dependence``, ``grounding/value_std`` and ``grounding/value_mean``;
    ``probes/<probe>/<action>``, the probabilities on GLAM-style probe observations; and one
    row per measurement in ``<run_dir>/grounding.csv``.  A policy that ignores what it sees
    shows as a state dependence near 0 and an agreement gain near 0 from the first updates.

    The policy runs without gradient and without sampling: the training run is the same with
    and without this callback.  Under ``torchrun``, rank 0 alone measures (each measurement
    is made when a rollout ends, after every rank's first forward).

    :param env_id: the level whose bot states are measured (e.g. the training env's).
    :param every: updates between measurements.
    :param run_dir: the run's log folder.
    :param num_states: bot states measured.
    :param seed: seeds the bot's episodes (keep it apart from the training envs' seeds).
    :param env_kwargs: extra ``gym.make`` arguments.
    :param probes: also log the probe observations (levels with English GoTo/PickUp missions; on
        other levels a warning says they are left out and the rest is measured).
    :param resume_step: continue an interrupted run whose last checkpoint was taken at this (global)
        step: ``grounding.csv`` drops the killed run's rows after it, which the resumed run measures
        again (TensorBoard hides them already: :class:`CleanRLLogger`'s ``purge_step``).
    """

    FIELDS = (
        "frames",
        "updates",
        "bot_agreement",
        "constant_agreement",
        "agreement_gain",
        "state_dependence",
        "value_mean",
        "value_std",
    )

    def __init__(
        self,
        env_id: str,
        every: int,
        run_dir: str | Path,
        num_states: int = 200,
        seed: int = 100_000,
        env_kwargs: dict[str, Any] | None = None,
        probes: bool = True,
        resume_step: int | None = None,
    ) -> None:
        super().__init__(every)
        self.resume_step = resume_step
        self.env_id = env_id
        self.run_dir = Path(run_dir)
        self.num_states = num_states
        self.seed = seed
        self.env_kwargs = env_kwargs
        self.use_probes = probes
        self.writer: SummaryWriter | None = None
        self.history: list[dict[str, Any]] = []

    def _init_callback(self) -> None:
        from babyai_text.observation import decode_observation
        from glam_experiments.diagnostics import BotStates, probe_observations

        self.ranks = current_ranks()
        if not self.ranks.is_main:
            return
        self.states = BotStates.collect(self.env_id, self.num_states, seed=self.seed, env_kwargs=self.env_kwargs)
        self.probes = None
        if self.use_probes:
            try:
                self.probes = probe_observations(self.env_id, self.seed, self.env_kwargs)
            except ValueError as err:  # the probes are templates for English GoTo/PickUp missions
                warnings.warn(f"GroundingLogger logs no probe prompts: {err}", stacklevel=2)
        first = decode_observation({k: v[0] for k, v in self.states.obs.items()})
        self.action_names = first.action_names
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.resume_step is not None:
            _drop_rows_after(self.run_dir / "grounding.csv", self.resume_step)
        self.writer = SummaryWriter(str(self.run_dir))

    def act(self, updates: int) -> None:
        self.measure(updates)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def measure(self, updates: int) -> None:
        """Measure the current policy and log it at the current step."""
        if self.writer is None:
            return
        from glam_experiments.diagnostics import measure

        policy = self.model.policy
        was_training = policy.training
        policy.train(False)  # not set_training_mode: under torchrun that also counts an update
        try:
            result = measure(policy, self.states, probes=self.probes)
        finally:
            policy.train(was_training)
        step = self.step
        row = {"frames": step, "updates": updates, **result.as_dict()}
        self.history.append(row)
        for key in self.FIELDS[2:]:
            if row[key] is not None:
                self.writer.add_scalar(f"grounding/{key}", row[key], step)
        for probe, probs in result.probes.items():
            for name, p in zip(self.action_names, probs, strict=True):
                self.writer.add_scalar(f"probes/{probe}/{name}", p, step)
        self.writer.flush()
        csv_path = self.run_dir / "grounding.csv"
        new = not csv_path.exists()
        with open(csv_path, "a", newline="") as f:
            rows = csv.writer(f)
            if new:
                rows.writerow(self.FIELDS)
            rows.writerow(["" if row[k] is None else row[k] for k in self.FIELDS])


class CriticWarmup(BaseCallback):
    """TWOSOME's critic warm-up: for the first ``updates`` PPO updates only the value head learns.

    Before each of those updates every optimizer group that holds no value-head parameter (the
    LM's) trains at rate 0 (its ``lr_scale``; Adam's moments still follow the gradients); from the
    next update on, and when training ends, the groups get their own scales back.  Counted from
    the model's frames, so a resumed run keeps its place.

    :param updates: the updates of the warm-up.
    """

    def __init__(self, updates: int) -> None:
        super().__init__()
        if updates < 0:
            raise ValueError(f"updates must be at least 0, got {updates}")
        self.updates = updates
        self._scales: list[Any] | None = None

    def _on_step(self) -> bool:
        return True

    def _groups(self) -> list[dict[str, Any]]:
        """The optimizer groups the warm-up holds still: those without a value-head parameter."""
        policy = self.model.policy
        value = {id(p) for p in policy.value_net.parameters()}
        return [g for g in policy.optimizer.param_groups if not any(id(p) in value for p in g["params"])]

    def _on_rollout_end(self) -> None:
        rollout = self.model.n_steps * self.model.n_envs  # this rank's frames per update
        warming = self.model.num_timesteps <= self.updates * rollout  # the update about to run is one of the first
        groups = self._groups()
        if warming and self._scales is None:
            self._scales = [g.get(LR_SCALE) for g in groups]
            for group in groups:
                group[LR_SCALE] = 0.0
        elif not warming:
            self._restore()
        self.logger.record("train/critic_warmup", float(warming))

    def _on_training_end(self) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._scales is None:
            return
        for group, scale in zip(self._groups(), self._scales, strict=True):
            if scale is None:
                group.pop(LR_SCALE, None)
            else:
                group[LR_SCALE] = scale
        self._scales = None


def steps_table(episode: Any, updates: int | None = None) -> str:
    """A Markdown table of an :class:`~glam_experiments.recording.EpisodeRecord`, one row per step."""
    names = episode.steps[0].action_names if episode.steps else ()
    head = f"{episode.env_id}, seed {episode.seed}: {'success' if episode.success else 'failure'} in "
    head += f"{episode.length} steps, return {episode.episode_return:.2f}"
    if updates is not None:
        head = f"after {updates} updates — " + head
    lines = [head, "", f"mission: {episode.steps[0].mission if episode.steps else ''}", ""]
    lines.append("| step | observation | " + " | ".join(f"p({n})" for n in names) + " | action | value | reward |")
    lines.append("|" + "---|" * (len(names) + 5))
    for i, s in enumerate(episode.steps):
        probs = [f"**{p:.2f}**" if a == s.action else f"{p:.2f}" for a, p in enumerate(s.probabilities)]
        value = "–" if s.value is None else f"{s.value:.3f}"
        obs = s.observation.replace("\n", "; ").replace("|", "/")
        lines.append(f"| {i + 1} | {obs} | " + " | ".join(probs) + f" | {names[s.action]} | {value} | {s.reward:.2f} |")
    return "\n".join(lines)


def _add_gif(writer: SummaryWriter, tag: str, gif: bytes, step: int) -> None:
    """An animated GIF in TensorBoard's Images tab (how ``SummaryWriter.add_video`` stores its
    GIFs, without the moviepy it needs to encode them)."""
    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary

    width, height = Image.open(io.BytesIO(gif)).size
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
