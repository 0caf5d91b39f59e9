"""Train the GLAM agent (a language model as the policy) with stock SB3 PPO, CleanRL-style.

    python examples/train_llm_ppo.py --env-id BabyAI-Text-GoToS5N2-v0 [--finetune full] [--npae]
    torchrun --nproc_per_node=2 examples/train_llm_ppo.py --total-timesteps 4096
    python examples/train_llm_ppo.py --checkpoint-every 10 ...   # killed? then:
    python examples/train_llm_ppo.py --resume runs/<run name> ...  # same flags
    python examples/train_llm_ppo.py --record-every 4   # an episode of the policy in TensorBoard every 4 updates
    python examples/train_llm_ppo.py --grounding-every 2  # bot agreement, state dependence, probes every 2 updates
    python examples/train_llm_ppo.py --init-from runs/<cloning run>/model.zip  # PPO from a cloned policy

The flags are the fields of :class:`glam_experiments.configs.LLMPPOConfig` (the main job's
CPU recipe by default) plus the run's own.  Logs ``charts/*`` and ``losses/*`` to
TensorBoard under ``runs/<run name>/`` and every episode to ``episodes.csv``.

Under ``torchrun`` every rank runs this script with its own ``--n-envs`` envs (seeds
offset by rank) and one policy is trained (:mod:`glam_experiments.distributed`);
``--total-timesteps`` counts the frames of all ranks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import tyro
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from torch.distributed.elastic.multiprocessing.errors import record

from glam_experiments.callbacks import EpisodeRecorder, GroundingLogger
from glam_experiments.checkpoints import load_checkpoint, read_state
from glam_experiments.cli import UsageError, require_at_least, run_command
from glam_experiments.configs import LLMPPOConfig
from glam_experiments.distributed import close_ranks, init_ranks, rank_seed
from glam_experiments.training import check_resume, new_run_dir, record_flags, train

#: flags that may differ on --resume: they change where and how a run is watched, not what it trains
RESUME_FREE = frozenset(
    {"resume", "run_dir", "save_model", "torch_threads", "device", "checkpoint_every", "record_every"}
    | {"grounding_every", "grounding_states"}
)


@dataclass
class Args(LLMPPOConfig):
    env_id: str = "BabyAI-Text-GoToS5N2-v0"
    """a BabyAI-Text id"""
    npae: bool = False
    """same architecture with random weights (GLAM's NPAE baseline)"""
    total_timesteps: int = 2048
    """frames of the whole run (all ranks together under torchrun)"""
    seed: int = 1
    run_dir: Path = Path("runs")
    save_model: bool = False
    """save the agent to <run_dir>/<run_name>/model.zip"""
    torch_threads: int | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: one GPU per rank when CUDA is available"""
    checkpoint_every: int | None = None
    """write a checkpoint every N rollouts (and at the end) into <run folder>/checkpoints"""
    resume: Path | None = None
    """a run folder (runs/<run name>) to continue from its last checkpoint, to --total-timesteps"""
    record_every: int | None = None
    """every N updates, one seeded episode of the current policy into TensorBoard (episode/frames, episode/steps)"""
    grounding_every: int | None = None
    """every N updates, bot agreement, state dependence, value spread and probe prompts into TensorBoard
    (grounding/*, probes/*) and grounding.csv"""
    grounding_states: int = 200
    """bot states of the grounding diagnostics"""
    init_from: Path | None = None
    """start from this saved agent's weights and optimizer state (e.g. a policy cloned by train_bc.py
    --save-model); these flags must build the same policy (model, fine-tuning, value head), and this run's
    rates apply"""


def check(args: Args) -> bool:
    """Refuse flags that cannot run (one line naming the flag); ``False``: a resumed run that is already complete."""
    args.check()
    require_at_least({"total_timesteps": args.total_timesteps, "grounding_states": args.grounding_states})
    require_at_least(
        {"checkpoint_every": args.checkpoint_every, "record_every": args.record_every}
        | {"grounding_every": args.grounding_every}
    )
    if args.init_from is not None and not args.init_from.is_file():
        raise UsageError(f"--init-from {args.init_from}: no such file (a model.zip saved by --save-model)")
    return args.resume is None or check_resume(args.resume, args, RESUME_FREE)


def main(args: Args) -> PPO | None:
    """Train, or ``None`` for a resumed run that is already complete (flags are checked before torchrun's
    error recording, so a user's mistake stays one line on every rank)."""
    return _train(args) if check(args) else None


@record  # under torchrun, a rank's exception is reported with its traceback
def _train(args: Args) -> PPO:
    ranks = init_ranks(args.device)
    if args.npae:
        args = replace(args, pretrained=False)
    seed = rank_seed(args.seed, args.n_envs, ranks)
    resumed = None
    if args.resume is not None:
        # re-seeded from the frames done: the resumed run does not replay its first episodes
        seed += read_state(args.resume).frames
        env = args.make_env(args.env_id, seed)
        model, resumed = load_checkpoint(args.resume, env, device=ranks.device)
        model.set_random_seed(seed)
        run_dir = args.resume
    else:
        algo = f"npae_{args.algo}" if args.npae else f"llm_{args.algo}"
        run_dir = new_run_dir(args.run_dir, args.env_id, algo, args.seed)
        if ranks.is_main:
            record_flags(run_dir, args)
        env = args.make_env(args.env_id, seed)
        model = args.make(env, seed=seed, device=ranks.device)
        if args.init_from is not None:  # every rank loads the same file: the ranks start alike
            model.set_parameters(str(args.init_from), exact_match=True, device=model.device)
    recorders: list[BaseCallback] = args.callbacks()
    if args.record_every:
        recorders.append(EpisodeRecorder(args.env_id, args.record_every, run_dir, seed=args.seed))
    if args.grounding_every:
        resume_step = resumed.frames if resumed is not None else None
        recorders.append(
            GroundingLogger(args.env_id, args.grounding_every, run_dir, args.grounding_states, resume_step=resume_step)
        )
    train(
        model,
        args.total_timesteps,
        run_dir,
        args.save_model,
        args.torch_threads,
        args.checkpoint_every,
        resumed,
        callbacks=recorders,
    )
    close_ranks()
    return model


if __name__ == "__main__":
    run_command(lambda argv: main(tyro.cli(Args, args=argv)))
