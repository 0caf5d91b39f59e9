"""Any agent of the project from its command-line name: a saved SB3 zip (PPO, RecurrentPPO, DQN, GiGPO /
GRPO; LLMPolicy, Symbolic-PPO, DRRN), ``random``, ``bot`` (minigrid's BabyAIBot), or a language-model name
or directory (zero-shot: an untrained :class:`llm_policy.LLMPolicy`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stable_baselines3.common.vec_env import VecEnv


def load_agent(spec: str, env: VecEnv, llm_kwargs: dict[str, Any] | None = None, seed: int | None = None) -> Any:
    """An object with SB3's ``predict`` for ``spec`` (see the module's docstring).

    :param spec: the agent (see the module's docstring).
    :param env: the envs the agent will play.
    :param llm_kwargs: extra :class:`LLMPolicy` arguments for a zero-shot language model
        (e.g. ``{"prompt_template": PromptTemplate(history=1)}``); saved agents keep theirs.
    :param seed: seeds the random agent's own generator (network agents sample from
        torch's, which :func:`evaluate` seeds); ``None``: unpredictable.
    """
    from glam_baselines import BotAgent, RandomAgent

    if spec == "random":
        return RandomAgent(env.action_space, seed=seed)
    if spec == "bot":
        return BotAgent(env)
    path = Path(spec)
    if spec.endswith(".zip") or (path.exists() and path.is_file()):
        if not path.exists():
            raise FileNotFoundError(f"agent file {spec!r} does not exist")
        return _load_zip(path, env)
    from stable_baselines3.common.utils import get_device

    from llm_policy.models import ModelNotFoundError
    from llm_policy.policy import LLMPolicy

    try:  # an untrained policy: it has SB3's predict, and no algorithm settings to restate
        kwargs = {**(llm_kwargs or {}), "model": spec}
        return LLMPolicy(env.observation_space, env.action_space, lambda _: 0.0, **kwargs).to(get_device("auto"))
    except ModelNotFoundError as err:
        raise ValueError(
            f"unknown agent {spec!r}: not 'random', 'bot', a saved .zip agent, nor a loadable model ({err})"
        ) from None


def _load_zip(path: Path, env: VecEnv) -> Any:
    from sb3_contrib import RecurrentPPO
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.save_util import load_from_zip_file

    # Evaluation never trains: no learning-rate schedule (it may not unpickle elsewhere), and
    # a one-transition replay buffer instead of the saved buffer_size (DQN's default, 1e6
    # BabyAI-Text transitions, is ~10 GB).  Keys the zip lacks (PPO has no buffer) are ignored.
    custom_objects = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "buffer_size": 1}
    data, _, _ = load_from_zip_file(path, load_data=True, custom_objects=custom_objects)
    policy_class = data.get("policy_class") if data else None
    names = {c.__name__ for c in getattr(policy_class, "__mro__", ())}
    if "RecurrentActorCriticPolicy" in names:
        algo = RecurrentPPO
    elif "DQNPolicy" in names:
        algo = DQN
    elif "ActorCriticPolicy" in names and "group_size" in data:
        from glam_algorithms import GiGPO

        algo = GiGPO  # GRPO's zip too (GiGPO with step_coef 0): only the policy is used
    elif "ActorCriticPolicy" in names:
        algo = PPO
    else:
        raise ValueError(f"{path} is not a saved PPO, RecurrentPPO or DQN agent (policy class {policy_class})")
    return algo.load(path, env=env, custom_objects=custom_objects)


__all__ = ["load_agent"]
