"""Behaviour cloning of an SB3 policy (e.g. :class:`llm_policy.LLMPolicy`) from a Minari dataset.

The loss is the cross-entropy between the policy's action distribution and the demonstrated
action, computed through ``policy.evaluate_actions`` — the call PPO's update makes — so that
PPO, started after cloning, continues on exactly the distribution that was cloned.  The
policy's own optimizer takes the steps (with :class:`~llm_policy.LLMPolicy` its two parameter
groups: the LM's rate and the value head's).  The value head is fitted to the
demonstrations' discounted returns only when asked (``value_coef``): by default PPO's critic
starts from scratch on the cloned policy.  The model stays a stock SB3 ``PPO``:
``model.save``, ``PPO.load`` and ``model.learn`` work as before.

    config = LLMPPOConfig()
    dataset = minari.load_dataset("babyai-text/GoToS5N2/bot-v0")   # python -m glam_experiments.demonstrations
    model = config.make(config.make_env("BabyAI-Text-GoToS5N2-v0"))
    history = behaviour_clone(model, dataset, epochs=3, reward_scale=config.reward_scale, run_dir="runs/bc")
    model.learn(2048)                                     # PPO from the cloned policy

See ``docs/behaviour_cloning.md``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from glam_algorithms.gigpo.advantages import discounted_returns
from glam_algorithms.ranks import rank_and_world

Observations = dict[str, np.ndarray] | np.ndarray


@dataclass
class Demonstrations:
    """The decision steps of some episodes, as flat arrays (one row per step).

    :param observations: the observation each action was taken in (a dict of arrays for a Dict space).
    :param actions: the demonstrated actions.
    :param returns: the discounted return from each step to the end of its episode (the value head's target).
    :param episodes: the dataset's id of each step's episode.
    """

    observations: Observations
    actions: np.ndarray
    returns: np.ndarray
    episodes: np.ndarray

    def __len__(self) -> int:
        return len(self.actions)

    def take(self, rows: np.ndarray) -> Demonstrations:
        """The steps at ``rows``."""
        observations = take_rows(self.observations, rows)
        return Demonstrations(observations, self.actions[rows], self.returns[rows], self.episodes[rows])


def take_rows(observations: Observations, rows: np.ndarray | slice) -> Observations:
    """The ``rows`` of a batch of observations (each key's, for a dict observation)."""
    if isinstance(observations, dict):
        return {key: value[rows] for key, value in observations.items()}
    return observations[rows]


def concatenate_rows(parts: list[Observations]) -> Observations:
    """Batches of observations one after the other (each key's, for dict observations)."""
    if isinstance(parts[0], dict):
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}  # type: ignore[index]
    return np.concatenate(parts)  # type: ignore[arg-type]


def demonstration_steps(episodes: Iterable[Any], gamma: float = 0.99, reward_scale: float = 1.0) -> Demonstrations:
    """Flatten Minari episodes into decision steps.

    An episode of ``T`` actions holds ``T + 1`` observations: the last is the final one, in
    which no action was taken, and is left out.

    :param episodes: Minari ``EpisodeData`` (``dataset.iterate_episodes()``).
    :param gamma: discount of the returns (PPO's ``gamma``, so that the value head learns what PPO's critic estimates).
    :param reward_scale: multiply the rewards first (PPO trains on ``reward_scale`` times the env's rewards).
    :raises ValueError: no episode has a step.
    """
    observations: list[Observations] = []
    actions, returns, ids = [], [], []
    for episode in episodes:
        steps = len(episode.actions)
        if steps == 0:
            continue
        observations.append(take_rows(episode.observations, slice(0, steps)))
        actions.append(np.asarray(episode.actions, dtype=np.int64).reshape(steps))
        returns.append(discounted_returns(np.asarray(episode.rewards) * reward_scale, gamma).astype(np.float32))
        ids.append(np.full(steps, episode.id, dtype=np.int64))
    if not actions:
        raise ValueError("the demonstrations hold no step (every episode is empty)")
    return Demonstrations(
        concatenate_rows(observations), np.concatenate(actions), np.concatenate(returns), np.concatenate(ids)
    )


def _describe(space: spaces.Space) -> str:
    """A short description of a space (a Box's repr lists every bound)."""
    if isinstance(space, spaces.Dict):
        return "Dict(" + ", ".join(f"{k}: {_describe(s)}" for k, s in space.spaces.items()) + ")"
    if isinstance(space, spaces.Box):
        return f"Box{tuple(space.shape)} {space.dtype}"
    return str(space)


def check_demonstrations(dataset: Any, observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """Refuse a dataset the policy cannot learn from: no steps, or other spaces than the policy's.

    :param dataset: a ``minari.MinariDataset``.
    :param observation_space: the policy's (the env's) observation space.
    :param action_space: the policy's action space.
    :raises ValueError: naming the dataset and what differs.
    """
    name = getattr(dataset, "id", "the dataset")
    if dataset.total_episodes == 0 or dataset.total_steps == 0:
        raise ValueError(
            f"dataset {name!r} holds no demonstrations ({dataset.total_episodes} episodes, {dataset.total_steps} "
            "steps): record some first (docs/behaviour_cloning.md)"
        )
    for what, theirs, ours in (
        ("observation", dataset.observation_space, observation_space),
        ("action", dataset.action_space, action_space),
    ):
        if theirs != ours:
            raise ValueError(
                f"dataset {name!r} was recorded with another {what} space than the env's: {_describe(theirs)} "
                f"(dataset) vs {_describe(ours)} (env); clone on an env of the dataset's kind "
                f"(its env: {_dataset_env_id(dataset)})"
            )


def _dataset_env_id(dataset: Any) -> str | None:
    spec = getattr(dataset, "env_spec", None)
    return spec.id if spec is not None else None


def split_episodes(episode_ids: np.ndarray, val_fraction: float, rng: np.random.Generator) -> tuple[list, list]:
    """Shuffle episode ids and hold out ``val_fraction`` of them (at least one when the fraction is
    positive, and never all): validation measures agreement on episodes never trained on.

    :return: (training ids, validation ids), each sorted.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    shuffled = rng.permutation(episode_ids)
    held = 0 if val_fraction == 0 else min(len(shuffled) - 1, max(1, round(val_fraction * len(shuffled))))
    return sorted(shuffled[held:].tolist()), sorted(shuffled[:held].tolist())


@dataclass
class BCEpoch:
    """Metrics after an epoch of behaviour cloning (epoch 0: before any step).

    :param epoch: epochs done.
    :param steps: demonstration steps trained on so far (the TensorBoard step).
    :param loss: mean cross-entropy over the epoch's minibatches (``None`` at epoch 0).
    :param accuracy: fraction of the epoch's training steps whose most probable action was the demonstrated one.
    :param value_loss: mean squared error of the value head on the returns (``None``: not fitted or epoch 0).
    :param val_loss: cross-entropy on the held-out episodes (``None``: none held out).
    :param val_accuracy: the held-out steps' agreement (argmax == demonstrated action).
    """

    epoch: int
    steps: int
    loss: float | None
    accuracy: float | None
    value_loss: float | None
    val_loss: float | None
    val_accuracy: float | None


def _batches(n: int, batch_size: int, order: np.ndarray | None = None) -> Iterator[np.ndarray]:
    rows = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        yield rows[start : start + batch_size]


def _all_log_probs(policy: Any, obs: Any, n_actions: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Values ``(batch, 1)`` and log-probabilities of every action ``(batch, n_actions)`` from one
    ``policy.evaluate_actions`` call: PPO's scoring path, asked for every action at once (the
    categorical distribution broadcasts actions of shape ``(n_actions, batch)``)."""
    every_action = torch.arange(n_actions, device=policy.device).unsqueeze(1).expand(-1, batch)
    values, log_probs, _ = policy.evaluate_actions(obs, every_action)
    return values, log_probs.T


def _lm_group(policy: Any) -> dict[str, Any]:
    """The optimizer's parameter group that trains the LM (``LLMPolicy``), else the first trained group."""
    module = getattr(policy, "lm", policy)
    trained = {id(p) for p in module.parameters() if p.requires_grad}
    for group in policy.optimizer.param_groups:
        if any(id(p) in trained for p in group["params"]):
            return group
    raise ValueError("the policy's optimizer trains none of its language model's weights")


#: The parameter-group key of a rate's scale, the protocol of :mod:`llm_policy.optimizer` (spelled out
#: here so that the algorithms do not import a policy package; a test checks the two agree).
LR_SCALE = "lr_scale"


def _group_rate(group: dict[str, Any]) -> float:
    """A group's effective rate: SB3 writes one base rate (PPO's schedule) into every group, and
    an optimizer of :mod:`llm_policy.optimizer` scales the LM's by its ``lr_scale`` in each step."""
    return float(group["lr"] * group.get(LR_SCALE, 1.0))


def behaviour_clone(
    model: OnPolicyAlgorithm,
    dataset: Any,
    epochs: int = 3,
    batch_size: int = 32,
    val_fraction: float = 0.1,
    seed: int = 0,
    episodes: int | None = None,
    lm_learning_rate: float | None = None,
    value_coef: float = 0.0,
    reward_scale: float = 1.0,
    run_dir: str | Path | None = None,
    progress: bool = True,
) -> list[BCEpoch]:
    """Train ``model``'s policy to take the dataset's actions (in place), then return its metrics per epoch.

    Each minibatch minimises ``-log pi(a_demo | s) + value_coef * (V(s) - G)^2`` with the policy's
    optimizer, its gradient clipped to ``model.max_grad_norm`` as PPO clips it; ``G`` is the
    discounted return (``model.gamma``) of the demonstration from ``s`` on.

    Under ``torchrun`` (a process group of several ranks; every rank calls this with the same
    arguments and ``seed``) the cloning is data parallel: each rank takes an equal share of the
    steps (up to ``world size - 1`` steps are left out so that the shares are equal) and
    ``batch_size / world size`` of each minibatch; :class:`llm_policy.LLMPolicy` averages the
    gradients over the ranks, so every rank ends with the same policy.  Only rank 0 logs.

    :param model: an SB3 on-policy algorithm (``PPO``) whose env has the dataset's spaces.
    :param dataset: a ``minari.MinariDataset`` of demonstrations.
    :param epochs: passes over the training episodes' steps.
    :param batch_size: steps per gradient step (with ``LLMPolicy.micro_batch_size``, scored in chunks).
    :param val_fraction: episodes held out (chosen with ``seed``) to measure the agreement of the
        most probable action with the demonstrated one after each epoch; 0: none.
    :param seed: seed of the held-out split and of the minibatch order.
    :param episodes: use the dataset's first ``episodes`` episodes only (``None``: all).
    :param lm_learning_rate: the LM's learning rate while cloning (the value head's is scaled
        alike); ``None``: the rates of the policy's optimizer, PPO's.  PPO's next update sets its own again.
    :param value_coef: weight of the value loss; 0 (the default): the value head is not fitted, and PPO's
        critic learns the cloned policy's own values.  Fitted to the demonstrator's returns, the critic
        overestimates a policy that imitates it imperfectly and PPO's first updates push away from the
        cloned actions
        (docs/studies/learning_from_the_bot.md#learning-from-the-bot-cloning-ppo-and-drrns-replay-buffer).
    :param reward_scale: the factor PPO's env multiplies rewards by (the value head's targets are in PPO's units).
    :param run_dir: write TensorBoard scalars here (``losses/bc_*``, ``charts/bc_*``); ``None``: none.
    :param progress: show a progress bar (on rank 0 under torchrun).
    :return: the metrics before training (epoch 0) and after each epoch (over all ranks under torchrun).
    :raises ValueError: an empty dataset, spaces other than the model's, a frozen policy, bad arguments.
    """
    policy = model.policy
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be at least 1, got {epochs} and {batch_size}")
    if episodes is not None and episodes < 1:
        raise ValueError(f"episodes must be at least 1 (or None for all), got {episodes}")
    if getattr(policy, "finetune", None) == "frozen":
        raise ValueError("the policy's language model is frozen (finetune='frozen'): cloning cannot change its actions")
    check_demonstrations(dataset, model.observation_space, model.action_space)
    n_actions = int(model.action_space.n)

    rank, world = rank_and_world()
    val_world = 1  # ranks sharing the held-out steps
    rng = np.random.default_rng(seed)
    ids = np.asarray(dataset.episode_indices)
    if episodes is not None and episodes > len(ids):
        raise ValueError(
            f"episodes={episodes} but the dataset holds {len(ids)}: record more (python -m "
            "glam_experiments.demonstrations --episodes N --overwrite) or ask for fewer"
        )
    train_ids, val_ids = split_episodes(ids[: episodes or None], val_fraction, rng)
    train = demonstration_steps(dataset.iterate_episodes(train_ids), model.gamma, reward_scale)
    val = demonstration_steps(dataset.iterate_episodes(val_ids), model.gamma, reward_scale) if val_ids else None
    if world > 1:
        # data parallel: each rank clones its own equal share of the steps (LLMPolicy averages the
        # gradients over the ranks after every backward pass, so every rank takes the same steps)
        if len(train) < world:
            raise ValueError(f"{len(train)} training steps cannot be shared by {world} ranks: clone more episodes")
        train = train.take(np.arange(len(train) - len(train) % world)[rank::world])
        if val is not None and len(val) >= world:  # (fewer held-out steps than ranks: each rank measures them all)
            val, val_world = val.take(np.arange(len(val) - len(val) % world)[rank::world]), world
        batch_size = max(1, batch_size // world)
        progress = progress and rank == 0
        run_dir = run_dir if rank == 0 else None

    def tensors(part: Demonstrations) -> tuple[Any, torch.Tensor, torch.Tensor]:
        obs, _ = policy.obs_to_tensor(part.observations)
        device = policy.device
        return obs, torch.as_tensor(part.actions, device=device), torch.as_tensor(part.returns, device=device)

    def validate() -> tuple[float | None, float | None]:
        if val is None:
            return None, None
        policy.set_training_mode(False)
        loss, correct = 0.0, 0
        with torch.no_grad():
            for rows in _batches(len(val), batch_size):
                obs, actions, _ = tensors(val.take(rows))
                _, log_probs = _all_log_probs(policy, obs, n_actions, len(rows))
                loss += F.nll_loss(log_probs, actions, reduction="sum").item()
                correct += (log_probs.argmax(dim=1) == actions).sum().item()
        policy.set_training_mode(True)
        loss, correct, n = _sum_over_ranks([loss, correct, len(val)], val_world, policy.device)
        return loss / n, correct / n

    writer = SummaryWriter(str(run_dir)) if run_dir is not None else None

    def log(step: int, scalars: dict[str, float | None]) -> None:
        if writer is not None:
            for tag, value in scalars.items():
                if value is not None:
                    writer.add_scalar(tag, value, step)

    # every group is scaled alike, so the value head keeps its ratio to the LM's rate
    lm_rate = _group_rate(_lm_group(policy))
    factor = 1.0
    if lm_learning_rate is not None:
        if lm_rate <= 0:
            raise ValueError("the policy's LM learning rate is 0: lm_learning_rate cannot be reached by scaling it")
        factor = lm_learning_rate / lm_rate
    base_rates = [group["lr"] for group in policy.optimizer.param_groups]
    bar = tqdm(total=epochs * len(train) * world, desc="behaviour cloning", unit="step", disable=not progress)
    history: list[BCEpoch] = []
    done = 0
    try:
        for group in policy.optimizer.param_groups:
            group["lr"] *= factor
        val_loss, val_accuracy = validate()
        history.append(BCEpoch(0, 0, None, None, None, val_loss, val_accuracy))
        log(0, {"losses/bc_val_loss": val_loss, "charts/bc_val_accuracy": val_accuracy})
        start = time.perf_counter()
        policy.set_training_mode(True)
        for epoch in range(1, epochs + 1):
            sums = {"loss": 0.0, "value_loss": 0.0, "correct": 0.0}
            for rows in _batches(len(train), batch_size, rng.permutation(len(train))):
                obs, actions, returns = tensors(train.take(rows))
                values, log_probs = _all_log_probs(policy, obs, n_actions, len(rows))
                bc_loss = F.nll_loss(log_probs, actions)
                value_loss = F.mse_loss(values.flatten(), returns)
                loss = bc_loss + value_coef * value_loss if value_coef else bc_loss
                policy.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), model.max_grad_norm)
                policy.optimizer.step()

                accuracy = (log_probs.argmax(dim=1) == actions).float().mean().item()
                done += len(rows) * world
                sums["loss"] += bc_loss.item() * len(rows)
                sums["value_loss"] += value_loss.item() * len(rows)
                sums["correct"] += accuracy * len(rows)
                log(
                    done,
                    {
                        "losses/bc_loss": bc_loss.item(),
                        "losses/bc_value_loss": value_loss.item() if value_coef else None,
                        "charts/bc_accuracy": accuracy,
                        "charts/bc_learning_rate": lm_rate * factor,
                        "charts/bc_SPS": done / (time.perf_counter() - start),
                    },
                )
                bar.update(len(rows) * world)
                bar.set_postfix(epoch=epoch, loss=f"{bc_loss.item():.3f}", acc=f"{accuracy:.2f}")
            val_loss, val_accuracy = validate()
            sums["loss"], sums["value_loss"], sums["correct"], n = _sum_over_ranks(
                [sums["loss"], sums["value_loss"], sums["correct"], len(train)], world, policy.device
            )
            history.append(
                BCEpoch(
                    epoch,
                    done,
                    loss=sums["loss"] / n,
                    accuracy=sums["correct"] / n,
                    value_loss=sums["value_loss"] / n if value_coef else None,
                    val_loss=val_loss,
                    val_accuracy=val_accuracy,
                )
            )
            log(done, {"losses/bc_val_loss": val_loss, "charts/bc_val_accuracy": val_accuracy})
            if writer is not None:
                writer.flush()
            if val_accuracy is not None and progress:
                bar.write(
                    f"epoch {epoch}: accuracy {sums['correct'] / n:.3f} on training steps, {val_accuracy:.3f} held out"
                )
    finally:
        bar.close()
        policy.set_training_mode(False)
        for group, rate in zip(policy.optimizer.param_groups, base_rates, strict=True):
            group["lr"] = rate
        if writer is not None:
            writer.close()
    return history


def _sum_over_ranks(values: list[float], world: int, device: torch.device) -> list[float]:
    if world == 1:
        return values
    total = torch.tensor(values, dtype=torch.float64, device=device)  # on the policy's device: NCCL needs CUDA
    dist.all_reduce(total)
    return total.tolist()


def accuracy_floor(actions: np.ndarray, n_actions: int) -> float:
    """The agreement of the best constant action (the most frequent demonstrated one): what a policy
    that ignores the observation reaches, the floor a cloned policy's accuracy should beat."""
    return float(np.bincount(actions, minlength=n_actions).max() / max(1, len(actions)))


__all__ = [
    "BCEpoch",
    "Demonstrations",
    "accuracy_floor",
    "behaviour_clone",
    "check_demonstrations",
    "demonstration_steps",
    "split_episodes",
]
