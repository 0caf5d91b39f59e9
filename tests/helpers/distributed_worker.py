"""One rank of the multi-process tests (``tests/test_distributed.py`` launches it with ``torchrun``).

    torchrun --nproc_per_node=2 tests/helpers/distributed_worker.py MODEL_DIR OUT_DIR MODE

MODE ``train``: stock PPO on 2 envs per rank over a tiny model; dumps each rank's weights
before the first forward, the first rollout (buffer and the weights it was collected
with), the weights after its update, and after two more updates.  ``fail``: rank 1
raises after its first rollout.  ``target_kl``: PPO with ``target_kl`` set.  ``clone``:
``gigpo``: GiGPO (with a KL penalty) on envs whose episodes are cut at a different length on
each rank, so that the ranks' rollouts differ in size; dumps each rank's weights and frame counts.
``clone``: behaviour cloning of the first :data:`CLONE_EPISODES` episodes of the Minari dataset
:data:`CLONE_DATASET` (under ``$MINARI_DATASETS_PATH``), one minibatch of all their steps;
dumps each rank's weights before and after, and the metrics.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from torch.distributed.elastic.multiprocessing.errors import record

from glam_experiments.configs import LLMPPOConfig
from glam_experiments.distributed import check_same_updates, close_ranks, init_ranks, rank_seed
from glam_experiments.envs import make_text_vec_env

N_ENVS, N_STEPS, SEED = 2, 4, 3
CONFIG = LLMPPOConfig(
    finetune="full",
    pretrained=False,  # random weights that differ per rank until rank 0's are broadcast
    n_envs=N_ENVS,
    n_steps=N_STEPS,
    batch_size=N_ENVS * N_STEPS,  # one minibatch: the whole rollout
    n_epochs=1,
    normalize_advantage=False,
    lm_learning_rate=1e-3,
    learning_rate=1e-3,
)
ENV_ID = "BabyAI-Text-GoToS5N2-v0"
CLONE_DATASET = "babyai-text/test-bot-v0"
CLONE_ARGS = {"epochs": 2, "batch_size": 10_000, "val_fraction": 0.0, "seed": SEED, "lm_learning_rate": 1e-3}


def state(model: PPO) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}


class DumpFirstRollout(BaseCallback):
    def __init__(self, out: Path, rank: int, fail: bool) -> None:
        super().__init__()
        self.out, self.rank, self.fail = out, rank, fail

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.fail and self.rank == 1:
            raise RuntimeError("rank 1 failed on purpose")
        buf = self.model.rollout_buffer
        rollout = {
            "observations": {k: v.copy() for k, v in buf.observations.items()},
            **{k: getattr(buf, k).copy() for k in ("actions", "rewards", "returns", "advantages", "values")},
            **{k: getattr(buf, k).copy() for k in ("log_probs", "episode_starts")},
            "weights": state(self.model),
        }
        torch.save(rollout, self.out / f"rollout{self.rank}.pt")


@record
def main(model_dir: str, out: Path, mode: str) -> None:
    ranks = init_ranks("cpu")
    torch.set_num_threads(1)
    seed = rank_seed(SEED, N_ENVS, ranks)
    env = make_text_vec_env(ENV_ID, N_ENVS, seed)
    config = replace(CONFIG, model=model_dir)
    model = config.make(env, seed=seed, **({"target_kl": 0.01} if mode == "target_kl" else {}))
    if mode.startswith("clone"):  # clone:<episodes>
        from glam_algorithms.bc import behaviour_clone
        from glam_experiments.demonstrations import load_demonstrations

        dataset = load_demonstrations(CLONE_DATASET)
        model.policy.rank_sync.ensure_broadcast()  # rank 0's random weights: the ones the test starts from
        torch.save(state(model), out / f"constructed{ranks.rank}.pt")
        episodes = int(mode.split(":")[1])
        history = behaviour_clone(model, dataset, episodes=episodes, progress=False, **CLONE_ARGS)
        torch.save({"weights": state(model), "history": history}, out / f"cloned{ranks.rank}.pt")
        close_ranks()
        return
    if mode == "gigpo":
        # episodes of 4 steps on rank 0 and 7 on rank 1: rollouts of different sizes, as the same minibatch count
        env = make_text_vec_env(ENV_ID, N_ENVS, seed, env_kwargs={"max_steps": 4 + 3 * ranks.rank})
        config = replace(config, algo="gigpo", group_size=N_ENVS, batch_size=3, kl_coef=0.1)
        model = config.make(env, seed=seed)
        check_same_updates(model, ranks)
        model.learn(3 * 7 * N_ENVS)
        counts = {"frames": model.num_timesteps, "rollouts": model.n_rollouts, "steps": len(model.rollout_buffer)}
        torch.save({"weights": state(model), **counts}, out / f"gigpo{ranks.rank}.pt")
        close_ranks()
        return
    check_same_updates(model, ranks)
    torch.save(state(model), out / f"constructed{ranks.rank}.pt")
    model.learn(N_STEPS * N_ENVS, callback=DumpFirstRollout(out, ranks.rank, fail=mode == "fail"))
    torch.save(state(model), out / f"update1_{ranks.rank}.pt")
    model.learn(2 * N_STEPS * N_ENVS, reset_num_timesteps=False)
    torch.save(state(model), out / f"update3_{ranks.rank}.pt")
    close_ranks()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3])
