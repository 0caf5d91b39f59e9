"""Each agent's training configuration, defined once.

The main job, the example scripts (whose command-line flags are these fields), the
equal-frames comparison, the benchmarks and the rl-zoo3 hyperparameter files all start
from these dataclasses; a test checks that ``hyperparams/*.yml`` says the same.  (DRRN's
configuration is its script's, ``examples/train_drrn.py``: nothing else trains DRRN.)

- :class:`LLMPPOConfig`: stock SB3 PPO with :class:`llm_policy.LLMPolicy`.  Its defaults are
  the CPU recipe of the main job (SmolLM2-135M, top-2 blocks at 3e-5, one-observation
  prompts, a critic on detached standardised features at 1e-3, rewards ×20, 8 envs × 16
  steps, 4 epochs of minibatch 64); :data:`GLAM_LLM_PPO` is the paper's.
- :class:`SymbolicPPOConfig`: BabyAI's Symbolic-PPO (FiLM CNN + LSTM, rewards ×20).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from babyai_text.prompt import PromptTemplate
from glam_algorithms.bc import BCEpoch, behaviour_clone
from glam_experiments.cli import UsageError, require_at_least
from glam_experiments.envs import make_text_vec_env

#: the algorithms :class:`LLMPPOConfig` can train the LLM policy with
ALGOS = ("ppo", "grpo", "gigpo")


@dataclass
class PPOConfig:
    """The PPO settings all PPO agents share (SB3's names)."""

    n_envs: int = 8
    n_steps: int = 16
    """env-steps per env and rollout"""
    batch_size: int = 64
    n_epochs: int = 4
    learning_rate: float = 1e-4
    gamma: float = 0.99
    gae_lambda: float = 0.99
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    normalize_advantage: bool = False
    """GLAM's PPO does not normalise advantages"""

    def check(self) -> None:
        """Refuse settings that cannot run, naming the field and its flag (not an IndexError deep in SB3);
        ``make`` calls it, and the scripts call it after parsing (tyro would box an error raised while parsing).

        :raises glam_experiments.cli.UsageError: e.g. ``n_envs (--n-envs) must be at least 1, got 0``.
        """
        require_at_least({"n_envs": self.n_envs, "n_steps": self.n_steps, "batch_size": self.batch_size})
        require_at_least({"n_epochs": self.n_epochs})

    def ppo_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of SB3's ``PPO`` (everything but ``n_envs``)."""
        names = {f.name for f in fields(PPOConfig)} - {"n_envs"}
        return {k: v for k, v in asdict(self).items() if k in names}


@dataclass
class LLMPPOConfig(PPOConfig):
    """PPO with a language model as the policy (GLAM); defaults: the main job's CPU recipe, chosen by
    the recipe study (docs/studies/grounding.md): the references' critic — detached, standardised features at
    10x the LM's rate (PPO's ``learning_rate`` is the value head's) — rewards x20, the LM at 3e-5."""

    learning_rate: float = 1e-3
    """the value head's rate, above the LM's ``lm_learning_rate`` (TWOSOME and POAD train the critic 10-50x faster)"""

    model: str = "SmolLM2-135M-Instruct"
    """built-in model, local directory or hub id"""
    pretrained: bool = True
    """False: same architecture with random weights (GLAM's NPAE baseline)"""
    finetune: str = "top_k"
    """full | lora | top_k | frozen"""
    top_k: int = 2
    """blocks trained with finetune top_k"""
    lm_learning_rate: float | None = 3e-5
    """the LM's rate (two trained blocks tolerate more than LLMPolicy's full-model default of 1e-6;
    docs/studies/grounding.md#recipe-study)"""
    prompt_history: int | None = 1
    """observations in the prompt (GLAM: 3); one makes the prompts, and so PPO's steps, shorter (docs/benchmarks.md)"""
    chat_template: bool = False
    """the prompt in the model's chat format (actions in the system turn, each action the assistant's answer);
    False: GLAM's plain prompt"""
    micro_batch_size: int | None = None
    """chunks of a PPO minibatch recomputed in the backward pass (less memory, same gradients)"""
    normalization: str = "sum"
    """action score: sum of token log-probabilities (GLAM), or 'token' / 'word' normalised (TWOSOME)"""
    value_features: str = "detached"
    """detached: the value head reads the LM without gradient into it (TWOSOME, POAD); shared: GLAM's"""
    value_input_norm: bool = True
    """standardise the value head's input per feature (running statistics of the update batches)"""
    reward_scale: float = 20.0
    """rewards multiplied by this in training (GLAM, BabyAI); success is read from info"""
    normalize_reward: bool = False
    """divide the (scaled) rewards by a running sd of the discounted return (SB3's VecNormalize): value targets
    of about unit scale whatever the rewards' (POAD normalises its value targets)"""
    critic_warmup: int = 0
    """PPO updates at the start in which only the value head learns, the LM's rate held at 0 (TWOSOME's critic
    warm-up): the advantages the LM first learns from come from a critic that has seen some returns"""
    algo: str = "ppo"
    """ppo (SB3's, with the value head as critic) | grpo | gigpo (critic-free group advantages,
    glam_algorithms: n_steps, gae_lambda, vf_coef and normalize_advantage are PPO's only)"""
    group_size: int = 8
    """grpo / gigpo: episodes played from one initial state (n_envs a multiple of it)"""
    n_rounds: int = 1
    """grpo / gigpo: rounds of n_envs episodes per update"""
    step_coef: float = 1.0
    """gigpo: weight of the step-group advantage (anchor states)"""
    std_normalize: bool = True
    """grpo / gigpo: divide by the groups' standard deviation (else only subtract their mean)"""
    kl_coef: float = 0.0
    """grpo / gigpo: weight of the KL divergence from the policy training started from"""

    def check(self) -> None:
        super().check()
        require_at_least(
            {"top_k": self.top_k, "prompt_history": self.prompt_history, "micro_batch_size": self.micro_batch_size}
        )
        require_at_least({"critic_warmup": self.critic_warmup, "kl_coef": self.kl_coef}, minimum=0)
        require_at_least({"group_size": self.group_size}, minimum=2)
        require_at_least({"n_rounds": self.n_rounds})
        if self.algo not in ALGOS:
            raise UsageError(f"algo (--algo) must be one of {', '.join(ALGOS)}, got {self.algo!r}")
        if self.algo != "ppo" and self.critic_warmup:
            raise UsageError(f"--critic-warmup {self.critic_warmup} warms up PPO's critic: --algo {self.algo} has none")
        if self.algo != "ppo" and self.n_envs % self.group_size:
            raise UsageError(
                f"--n-envs {self.n_envs} is not a multiple of --group-size {self.group_size}: each group of "
                f"{self.group_size} envs plays from one initial state"
            )

    def make_env(self, env_id: str, seed: int = 0) -> VecEnv:
        """``n_envs`` training envs of ``env_id`` seeded ``seed..seed+n_envs-1``, rewards as these settings say."""
        env = make_text_vec_env(env_id, self.n_envs, seed, self.reward_scale)
        return VecNormalize(env, norm_obs=False, norm_reward=True, gamma=self.gamma) if self.normalize_reward else env

    def callbacks(self) -> list[BaseCallback]:
        """What these settings need of ``learn`` beside the policy (the critic warm-up): every script passes them."""
        from glam_experiments.callbacks import CriticWarmup

        return [CriticWarmup(self.critic_warmup)] if self.critic_warmup else []

    def make(self, env: VecEnv, seed: int | None = None, **overrides: Any) -> PPO:
        """Stock SB3 ``PPO(LLMPolicy, env)`` with these settings, or :class:`glam_algorithms.GRPO` /
        :class:`~glam_algorithms.GiGPO` (subclasses of ``PPO``) with ``algo``."""
        self.check()
        from llm_policy import LLMPolicy

        if self.algo == "ppo":
            kwargs = {**self.ppo_kwargs(), **overrides}
            return PPO(LLMPolicy, env, seed=seed, policy_kwargs=self.policy_kwargs(), **kwargs)
        from glam_algorithms import GRPO, GiGPO

        kwargs = {**self.group_kwargs(), **overrides}
        algo = GRPO if self.algo == "grpo" else GiGPO
        return algo(LLMPolicy, env, seed=seed, policy_kwargs=self.policy_kwargs(), **kwargs)

    def group_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`glam_algorithms.GiGPO` (of GRPO without ``step_coef``)."""
        names = ["learning_rate", "batch_size", "n_epochs", "gamma", "clip_range", "ent_coef", "max_grad_norm"]
        names += ["group_size", "n_rounds", "std_normalize", "kl_coef"]
        kwargs = {name: getattr(self, name) for name in names}
        if self.algo == "gigpo":
            kwargs["step_coef"] = self.step_coef
        return kwargs

    def policy_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`llm_policy.LLMPolicy`."""
        return {
            "model": self.model,
            "pretrained": self.pretrained,
            "finetune": self.finetune,
            "top_k": self.top_k,
            "lm_learning_rate": self.lm_learning_rate,
            "micro_batch_size": self.micro_batch_size,
            "normalization": self.normalization,
            "value_features": self.value_features,
            "value_input_norm": self.value_input_norm,
            "prompt_template": PromptTemplate(history=self.prompt_history),
            "chat_template": self.chat_template,
        }


#: GLAM's settings for Flan-T5-large (780M), 1.5M frames on 8 A100s: full fine-tuning at
#: 1e-6, 3-observation prompts, 32 envs × 40 steps per update.
GLAM_LLM_PPO = LLMPPOConfig(
    finetune="full",
    learning_rate=1e-6,
    lm_learning_rate=1e-6,
    value_features="shared",
    value_input_norm=False,
    prompt_history=None,
    n_envs=32,
    n_steps=40,
)


#: The group-advantage study's recipe (docs/studies/group_advantages.md#group-advantages-study): GiGPO on groups
#: of 8 episodes (8 envs per process), no critic, the LM's top two blocks at 1e-4.
GIGPO_LLM = LLMPPOConfig(algo="gigpo", lm_learning_rate=1e-4)


@dataclass
class SymbolicPPOConfig(PPOConfig):
    """BabyAI's Symbolic-PPO: FiLM CNN over the symbolic view conditioned on the mission."""

    n_steps: int = 128
    batch_size: int = 256
    normalize_advantage: bool = True
    recurrent: bool = True
    """sb3-contrib RecurrentPPO with an LSTM (as the original); False: stock PPO"""
    lstm_hidden_size: int = 128
    reward_scale: float = 20.0
    """BabyAI's ×20 reward scaling (a wrapper; success is read from info)"""
    head: tuple[int, ...] = (64,)
    """hidden sizes of the actor and critic heads above the extractor"""

    def policy(self) -> str:
        return "MultiInputLstmPolicy" if self.recurrent else "MultiInputPolicy"

    def make(self, env: VecEnv, seed: int | None = None) -> PPO:
        """Stock SB3 PPO, or sb3-contrib's RecurrentPPO, with these settings (``env``'s rewards
        must already be scaled by :attr:`reward_scale`, see :func:`glam_experiments.envs.make_text_vec_env`)."""
        self.check()
        algo: type[PPO] = PPO
        if self.recurrent:
            from sb3_contrib import RecurrentPPO

            algo = RecurrentPPO
        return algo(self.policy(), env, seed=seed, policy_kwargs=self.policy_kwargs(), **self.ppo_kwargs())

    def policy_kwargs(self) -> dict[str, Any]:
        from glam_baselines import BabyAIFeaturesExtractor

        kwargs: dict[str, Any] = {"features_extractor_class": BabyAIFeaturesExtractor, "net_arch": list(self.head)}
        if self.recurrent:
            kwargs["lstm_hidden_size"] = self.lstm_hidden_size
        return kwargs


@dataclass
class Cloning:
    """What to clone before PPO: :func:`glam_algorithms.bc.behaviour_clone`'s choices that are not the model's.

    :param dataset_id: the Minari dataset of demonstrations.
    :param episodes: its first N episodes (``None``: all).
    :param epochs: passes over them.
    :param learning_rate: the LM's rate while cloning (``None``: PPO's).
    :param value_coef: weight of the value head's fit to the demonstrations' returns (0: not fitted, so
        PPO's critic starts from scratch rather than from the bot's returns).
    """

    dataset_id: str
    episodes: int | None = None
    epochs: int = 3
    learning_rate: float | None = None
    value_coef: float = 0.0

    def run(
        self, model: OnPolicyAlgorithm, seed: int, reward_scale: float, run_dir: str | Path | None = None
    ) -> list[BCEpoch]:
        """:func:`glam_algorithms.bc.behaviour_clone` of ``model`` (in place) on the dataset, loaded by id."""
        from glam_experiments.demonstrations import load_demonstrations  # minari, only when cloning

        return behaviour_clone(
            model,
            load_demonstrations(self.dataset_id),
            epochs=self.epochs,
            seed=seed,
            episodes=self.episodes,
            lm_learning_rate=self.learning_rate,
            value_coef=self.value_coef,
            reward_scale=reward_scale,
            run_dir=run_dir,
        )


__all__ = ["ALGOS", "GIGPO_LLM", "GLAM_LLM_PPO", "Cloning", "LLMPPOConfig", "PPOConfig", "SymbolicPPOConfig"]
