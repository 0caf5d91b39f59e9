"""GiGPO and GRPO: PPO's clipped objective on critic-free group advantages (SB3-style).

Each rollout is ``n_rounds`` rounds.  In a round, the VecEnv's envs are reset together,
envs ``g*G .. g*G+G-1`` (group ``g``) with one seed drawn for that group, and each env
plays one episode to its end; an env whose episode ended waits (its steps are neither
scored nor stored) until every env of the round is done.  The round's episodes then get
their advantages (:mod:`glam_algorithms.gigpo.advantages`) and the policy is trained with
PPO's clipped surrogate, an optional entropy bonus and an optional KL penalty towards the
policy that training started from — and no value loss: the policy's value head, if it has
one, is left untrained.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from glam_algorithms.gigpo.buffer import EpisodeGroupBuffer
from glam_algorithms.gigpo.reference import ReferenceParameters
from glam_algorithms.progress_bar import FramesProgressBar
from glam_algorithms.ranks import rank_and_world

SelfGiGPO = TypeVar("SelfGiGPO", bound="GiGPO")

#: the rounds' initial states come from seeds in this range, above the small seeds evaluations conventionally use
SEED_RANGE = (1_000_000, 2**31 - 1)

StepKey = Callable[[Any], list[Hashable]]


class EnvNotReseedableError(ValueError):
    """Envs reset with the same seed did not start from the same observation."""


def _take(obs: np.ndarray | dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
    if isinstance(obs, dict):
        return {k: v[idx] for k, v in obs.items()}
    return obs[idx]


def _distributed() -> bool:
    return rank_and_world()[1] > 1


def _all_reduce(value: int, op: dist.ReduceOp.RedOpType) -> int:
    """``value`` reduced over the ranks (on the GPU under NCCL, which reduces nothing else)."""
    tensor = torch.tensor([value], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=op)
    return int(tensor.item())


def observation_bytes(obs: Any) -> list[Hashable]:
    """One key per observation of a batch: its raw values (every key of a dict observation)."""
    parts = [obs[k] for k in sorted(obs)] if isinstance(obs, dict) else [obs]
    arrays = [p.detach().cpu().numpy() if isinstance(p, torch.Tensor) else np.asarray(p) for p in parts]
    return [b"".join(a[i].tobytes() for a in arrays) for i in range(len(arrays[0]))]


def default_step_key(policy: torch.nn.Module) -> StepKey:
    """What makes two steps the same state for GiGPO: the text a language-model policy reads (its prompt
    and the candidate actions: :meth:`llm_policy.LLMPolicy.prompts`), else the raw observation."""
    prompts = getattr(policy, "prompts", None)
    if callable(prompts):

        def prompt_keys(obs: Any) -> list[Hashable]:
            texts, candidates = prompts(obs)
            return [(text, tuple(c)) for text, c in zip(texts, candidates, strict=True)]

        return prompt_keys
    return observation_bytes


class GiGPO(PPO):
    """Group-in-Group Policy Optimization (Feng et al., 2025): PPO's clipped objective on the advantage
    ``A = A^E + step_coef * A^S`` of episode groups and of step groups (identical observations inside an
    episode group), with no critic.  ``step_coef=0`` is GRPO (:class:`GRPO`).

    Works with any SB3 ``ActorCriticPolicy`` (:class:`llm_policy.LLMPolicy`, ``"MultiInputPolicy"``...)
    and any VecEnv whose envs reset reproducibly from a seed (``reset(seed=...)``: BabyAI-Text's do).
    ``learn(total_timesteps)`` counts the frames the envs played (waiting envs play none).  Under
    ``torch.distributed`` every rank plays its own groups and runs as many minibatches as the rank with
    the most steps, so that the policy's gradient averaging (:class:`llm_policy.distributed.RankSync`)
    stays in step; the frames of all ranks are counted together.

    :param policy: the policy (class or SB3 name).
    :param env: the training VecEnv (``n_envs`` a multiple of ``group_size``).
    :param learning_rate: the optimizer's rate (an :class:`~llm_policy.LLMPolicy`'s LM has its own,
        ``lm_learning_rate``), or a schedule.
    :param group_size: ``G``, episodes from one initial state (at least 2).
    :param n_rounds: rounds per rollout (each ``n_envs / G`` groups).
    :param batch_size: steps per minibatch (the last ones may be a little smaller: a rollout's size varies).
    :param n_epochs: passes over each rollout.
    :param gamma: discount of the step returns that GiGPO's step groups compare (episode returns are
        undiscounted sums, as GRPO's).
    :param step_coef: ``omega``, the weight of the step-group advantage (GiGPO: 1; 0: GRPO).
    :param std_normalize: divide by the group's standard deviation (GRPO, GiGPO's default); ``False``: only
        subtract the group's mean (rewards keep their scale).
    :param clip_range: PPO's clipping of the probability ratio (or a schedule).
    :param ent_coef: weight of the entropy bonus.
    :param kl_coef: weight of the KL divergence from the policy at the start of training (its trainable
        parameters' values at the first ``learn``), exact over the actions of a ``Discrete`` space; 0: none.
    :param max_grad_norm: gradient-norm clip.
    :param target_kl: stop an update's epochs once the approximate KL exceeds it (single process only).
    :param step_key: the key of a batch of observations' states for GiGPO's step groups (a function of
        the observation tensors, one hashable per observation); ``None``: :func:`default_step_key`.
    :param max_episode_steps: a round that lasts longer raises an error (an env that never ends an
        episode would otherwise keep the rollout going forever).
    :param stats_window_size: SB3's episode-statistics window.
    :param tensorboard_log: SB3's TensorBoard folder.
    :param policy_kwargs: keyword arguments of the policy.
    :param verbose: SB3's verbosity.
    :param seed: seeds torch, the envs and the rounds' initial states.
    :param device: SB3's device.
    :param _init_setup_model: build the policy now (SB3's loading passes ``False``).
    """

    #: what SB3's ``save`` leaves out beside PPO's own exclusions
    _extra_excluded: ClassVar[set[str]] = {"_round_rng", "_step_key_fn"}

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        group_size: int = 8,
        n_rounds: int = 1,
        batch_size: int = 64,
        n_epochs: int = 4,
        gamma: float = 0.95,
        step_coef: float = 1.0,
        std_normalize: bool = True,
        clip_range: float | Schedule = 0.2,
        ent_coef: float = 0.0,
        kl_coef: float = 0.0,
        max_grad_norm: float = 0.5,
        target_kl: float | None = None,
        step_key: StepKey | None = None,
        max_episode_steps: int = 10_000,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: torch.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        with warnings.catch_warnings():
            # PPO warns that n_steps * n_envs is not a multiple of batch_size: there is no fixed n_steps here
            warnings.filterwarnings("ignore", message="You have specified a mini-batch size")
            super().__init__(
                policy,
                env,
                learning_rate=learning_rate,
                n_steps=1,
                batch_size=batch_size,
                n_epochs=n_epochs,
                gamma=gamma,
                gae_lambda=1.0,
                clip_range=clip_range,
                normalize_advantage=False,
                ent_coef=ent_coef,
                vf_coef=0.0,
                max_grad_norm=max_grad_norm,
                target_kl=target_kl,
                stats_window_size=stats_window_size,
                tensorboard_log=tensorboard_log,
                policy_kwargs=policy_kwargs,
                verbose=verbose,
                seed=seed,
                device=device,
                _init_setup_model=False,
            )
        #: no fixed rollout length: each rollout is ``n_rounds`` rounds of whole episodes
        self.n_steps = 0
        self.group_size = group_size
        self.n_rounds = n_rounds
        self.step_coef = step_coef
        self.std_normalize = std_normalize
        self.kl_coef = kl_coef
        self.step_key = step_key
        self.max_episode_steps = max_episode_steps
        #: rollouts collected so far (saved with the model: a resumed run continues the count)
        self.n_rollouts = 0
        #: rollouts not trained on (no advantage, entropy or KL term to learn from)
        self.n_skipped_updates = 0
        self.reference: ReferenceParameters | None = None
        self.reference_taken = False
        self._frames_remainder = 0
        self._check_settings()
        if self.env is not None and _init_setup_model:
            self._check_env(self.env)
        if _init_setup_model:
            self._setup_model()

    # --- set-up --------------------------------------------------------------------------

    def _check_settings(self) -> None:
        if self.group_size < 2:
            raise ValueError(
                f"group_size must be at least 2 (episodes compared with each other), got {self.group_size}"
            )
        for name in ("n_rounds", "batch_size", "n_epochs", "max_episode_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")
        if self.kl_coef > 0 and not isinstance(self.action_space, spaces.Discrete):
            raise ValueError(
                f"kl_coef > 0 needs a Discrete action space (the KL is computed exactly over the actions); got "
                f"{self.action_space}. Pass kl_coef=0"
            )

    def _check_env(self, env: VecEnv) -> None:
        if env.num_envs % self.group_size:
            raise ValueError(
                f"the VecEnv has {env.num_envs} envs, not a multiple of group_size={self.group_size}: each group of "
                f"{self.group_size} envs plays from one initial state. Use n_envs = k * {self.group_size}, or a "
                "group_size that divides n_envs"
            )
        base = env.unwrapped if isinstance(env, VecEnvWrapper) else env
        if not isinstance(getattr(base, "_seeds", None), list):
            raise EnvNotReseedableError(
                f"{type(base).__name__} has no per-env reset seeds (SB3's VecEnv._seeds), so groups cannot start from "
                "one initial state: use SB3's DummyVecEnv or SubprocVecEnv"
            )

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self._round_rng = np.random.default_rng(self.seed)
        self.policy = self.policy_class(
            self.observation_space, self.action_space, self.lr_schedule, use_sde=self.use_sde, **self.policy_kwargs
        ).to(self.device)
        self.clip_range = FloatSchedule(self.clip_range)
        self.rollout_buffer = EpisodeGroupBuffer(  # type: ignore[assignment]
            self.group_size, self.gamma, self.step_coef, self.std_normalize, self.device
        )
        self._step_key_fn = self.step_key or default_step_key(self.policy)
        if self.kl_coef > 0:
            self.reference = ReferenceParameters(self.policy)

    def set_random_seed(self, seed: int | None = None) -> None:
        super().set_random_seed(seed)
        if seed is not None:
            self._round_rng = np.random.default_rng(seed)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), *self._extra_excluded, "reference"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, variables = super()._get_torch_save_params()
        if self.reference is not None and self.reference_taken:  # before the first learn there is none yet
            state_dicts = [*state_dicts, "reference"]
        return state_dicts, variables

    def set_parameters(
        self,
        load_path_or_dict: str | dict[str, Any],
        exact_match: bool = True,
        device: torch.device | str = "auto",
    ) -> None:
        """SB3's, and the KL penalty's reference when the saved agent has one (a PPO agent, or a GiGPO agent that
        has not trained, has none: the reference is then taken at the first ``learn``)."""
        params = load_path_or_dict
        if not isinstance(params, dict):
            _, params, _ = load_from_zip_file(load_path_or_dict, device=device, load_data=False)
        if "reference" in params:
            if self.reference is None:  # trained with a KL penalty, loaded into a model without one
                params = {k: v for k, v in params.items() if k != "reference"}
            else:
                self.reference_taken = True
        super().set_parameters(params, exact_match=exact_match, device=device)

    def _init_callback(self, callback: MaybeCallback, progress_bar: bool = False) -> BaseCallback:
        made = super()._init_callback(callback, progress_bar=False)
        if progress_bar:  # SB3's bar would count the waiting envs' steps as frames
            made = CallbackList([made, FramesProgressBar()])
            made.init_callback(self)
        return made

    def _setup_learn(self, total_timesteps: int, callback: MaybeCallback = None, *args: Any, **kwargs: Any) -> Any:
        assert self.env is not None
        self._check_env(self.env)
        out = super()._setup_learn(total_timesteps, callback, *args, **kwargs)
        if self.reference is not None and not self.reference_taken:
            sync = getattr(self.policy, "rank_sync", None)
            if sync is not None:  # every rank's reference is rank 0's start
                sync.ensure_broadcast()
            self.reference.take(self.policy)
            self.reference_taken = True
        return out

    # --- rollouts ------------------------------------------------------------------------

    def _round_seeds(self, n_envs: int) -> list[int]:
        groups = self._round_rng.integers(*SEED_RANGE, size=n_envs // self.group_size)
        return [int(groups[i // self.group_size]) for i in range(n_envs)]

    def _check_same_start(self, obs: Any, seeds: list[int]) -> None:
        parts = obs.values() if isinstance(obs, dict) else [obs]
        for start in range(0, len(seeds), self.group_size):
            for part in parts:
                group = np.asarray(part[start : start + self.group_size])
                if not all(np.array_equal(group[0], other) for other in group[1:]):
                    raise EnvNotReseedableError(
                        f"envs {start}..{start + self.group_size - 1}, reset with the same seed {seeds[start]}, "
                        "started from different observations: the env does not reset reproducibly from its seed "
                        "(gymnasium's reset(seed=...)), so their episodes cannot be compared. Seed the env's "
                        "randomness from reset's seed (self.np_random), or train with PPO"
                    )

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: Any,
        n_rollout_steps: int,
    ) -> bool:
        """``n_rounds`` rounds of whole episodes into ``rollout_buffer``, then their advantages
        (``n_rollout_steps`` is SB3's fixed rollout length, which this algorithm does not have)."""
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        callback.on_rollout_start()
        start = self.num_timesteps
        for _ in range(self.n_rounds):
            if not self._play_round(env, callback, rollout_buffer):
                return False
            rollout_buffer.end_round()
        self._count_frames(start)
        rollout_buffer.finish()
        if self.reference is not None:
            self._reference_log_probs(rollout_buffer)
        for key, value in rollout_buffer.stats.items():
            self.logger.record(key, value)
        self.n_rollouts += 1
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _play_round(self, env: VecEnv, callback: BaseCallback, rollout_buffer: EpisodeGroupBuffer) -> bool:
        n_envs = env.num_envs
        seeds = self._round_seeds(n_envs)
        base = env.unwrapped if isinstance(env, VecEnvWrapper) else env
        base._seeds = seeds  # type: ignore[attr-defined]  # SB3's VecEnvs use them at the next reset only
        obs = env.reset()
        self._check_same_start(obs, seeds)
        playing = np.ones(n_envs, dtype=bool)
        steps = 0
        while playing.any():
            if steps == self.max_episode_steps:
                raise RuntimeError(
                    f"an episode of this round is still running after max_episode_steps={self.max_episode_steps} "
                    "steps: bound the env's episodes (gymnasium's TimeLimit), or raise max_episode_steps"
                )
            idx = np.flatnonzero(playing)
            part = _take(obs, idx)
            with torch.no_grad():
                obs_tensor = obs_as_tensor(part, self.device)  # type: ignore[arg-type]
                played, _, log_probs = self.policy(obs_tensor)
                keys = self._step_key_fn(obs_tensor) if self.step_coef != 0.0 else None
            played = played.cpu().numpy()
            actions = np.zeros((n_envs, *played.shape[1:]), dtype=played.dtype)
            actions[idx] = played
            clipped = actions
            if isinstance(self.action_space, spaces.Box):
                clipped = np.clip(actions, self.action_space.low, self.action_space.high)
            new_obs, all_rewards, all_dones, all_infos = env.step(clipped)
            self.num_timesteps += len(idx)
            # what callbacks see: the envs that played this step (a waiting env's steps are not the run's)
            dones = np.zeros(n_envs, dtype=bool)
            dones[idx] = all_dones[idx]
            rewards = np.zeros(n_envs, dtype=np.float32)
            rewards[idx] = all_rewards[idx]
            infos = [info if playing[i] else {} for i, info in enumerate(all_infos)]
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer([all_infos[i] for i in idx], all_dones[idx])
            flat = played.reshape(-1) if isinstance(self.action_space, spaces.Discrete) else played
            rollout_buffer.add(part, flat, all_rewards[idx], log_probs.cpu().numpy(), idx, keys)
            playing[idx[all_dones[idx]]] = False
            obs = new_obs
            steps += 1
        self._last_obs = obs  # type: ignore[assignment]
        self._last_episode_starts = np.ones(n_envs, dtype=bool)
        return True

    def _count_frames(self, start: int) -> None:
        """Every rank counts the frames of all ranks (divided by their number, as SB3's ``learn`` expects), so
        that all stop after the same rollout."""
        if not _distributed():
            return
        world = dist.get_world_size()
        total = _all_reduce(self.num_timesteps - start, dist.ReduceOp.SUM) + self._frames_remainder
        self.num_timesteps = start + total // world
        self._frames_remainder = total % world

    def _reference_log_probs(self, rollout_buffer: EpisodeGroupBuffer) -> None:
        assert self.reference is not None
        out = []
        with torch.no_grad(), self.reference.swapped_in(self.policy):
            steps = len(rollout_buffer.actions)
            for idx in np.array_split(np.arange(steps), max(1, math.ceil(steps / self.batch_size))):
                distribution = self.policy.get_distribution(rollout_buffer.observations_at(idx))
                out.append(distribution.distribution.logits.float().cpu().numpy())
        rollout_buffer.reference_log_probs = np.concatenate(out)

    # --- update --------------------------------------------------------------------------

    def _n_minibatches(self, steps: int) -> int:
        most = _all_reduce(steps, dist.ReduceOp.MAX) if _distributed() else steps
        return max(1, math.ceil(most / self.batch_size))

    def _has_signal(self, buffer: EpisodeGroupBuffer) -> bool:
        """Whether the loss can have a gradient on some rank: a non-zero advantage, or an entropy or KL term.  An
        update without one would still move the policy (Adam's momentum from earlier updates), on no evidence."""
        if self.ent_coef != 0.0 or self.kl_coef != 0.0:
            return True
        signal = int(np.any(buffer.advantages != 0.0))
        return bool(_all_reduce(signal, dist.ReduceOp.MAX) if _distributed() else signal)

    def train(self) -> None:
        """PPO's clipped surrogate (and entropy bonus, and KL penalty) over ``n_epochs`` passes; no value loss.
        A rollout whose groups all had equal returns (every advantage 0) on every rank is not trained on."""
        buffer: EpisodeGroupBuffer = self.rollout_buffer  # type: ignore[assignment]
        self.logger.record("train/rollout_steps", len(buffer.actions))
        if not self._has_signal(buffer):
            self.n_skipped_updates += 1
            self.logger.record("train/skipped_updates", self.n_skipped_updates)
            return
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        n_minibatches = self._n_minibatches(len(buffer.actions))
        pg_losses, entropy_losses, kls, clip_fractions, approx_kls, losses = [], [], [], [], [], []
        continue_training = True
        for epoch in range(self.n_epochs):
            for batch in buffer.minibatches(n_minibatches, self._round_rng):
                actions = batch.actions
                if isinstance(self.action_space, spaces.Discrete):
                    actions = actions.long().flatten()
                distribution = self.policy.get_distribution(batch.observations)
                log_prob = distribution.log_prob(actions)
                entropy = distribution.entropy()
                ratio = torch.exp(log_prob - batch.old_log_prob)
                advantages = batch.advantages
                clipped = torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
                surrogate = torch.min(advantages * ratio, advantages * clipped)
                policy_loss = -surrogate.mean()
                entropy_loss = -torch.mean(-log_prob) if entropy is None else -torch.mean(entropy)
                loss = policy_loss + self.ent_coef * entropy_loss
                if batch.reference_log_probs is not None:
                    log_p = distribution.distribution.logits
                    kl = (log_p.exp() * (log_p - batch.reference_log_probs)).sum(-1).mean()
                    loss = loss + self.kl_coef * kl
                    kls.append(kl.item())
                pg_losses.append(policy_loss.item())
                entropy_losses.append(entropy_loss.item())
                clip_fractions.append(torch.mean((torch.abs(ratio - 1) > clip_range).float()).item())
                losses.append(loss.item())
                with torch.no_grad():
                    log_ratio = log_prob - batch.old_log_prob
                    approx_kl = torch.mean((torch.exp(log_ratio) - 1) - log_ratio).cpu().numpy()
                approx_kls.append(float(approx_kl))
                if self.target_kl is not None and approx_kl > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl:.2f}")
                    break
                self.policy.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
            if not continue_training:
                break
        self._n_updates += self.n_epochs
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kls))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", np.mean(losses))
        if kls:
            self.logger.record("train/reference_kl", np.mean(kls))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)

    def learn(
        self: SelfGiGPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "GiGPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfGiGPO:
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)


class GRPO(GiGPO):
    """GRPO for multi-step agents: GiGPO without its step groups (``step_coef=0``), each episode's return
    compared with its group's and given to all its steps.  The parameters are :class:`GiGPO`'s but
    ``step_coef`` and ``step_key``."""

    def __init__(self, policy: str | type[ActorCriticPolicy], env: GymEnv | str, **kwargs: Any) -> None:
        for name in ("step_coef", "step_key"):
            if name in kwargs:
                raise TypeError(f"GRPO has no {name} (it is GiGPO's): use GiGPO")
        super().__init__(policy, env, step_coef=0.0, **kwargs)

    def learn(
        self: SelfGiGPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "GRPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfGiGPO:
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)


__all__ = ["GRPO", "SEED_RANGE", "EnvNotReseedableError", "GiGPO", "default_step_key", "observation_bytes"]
