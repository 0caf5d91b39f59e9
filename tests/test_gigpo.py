"""GiGPO and GRPO (glam_algorithms): the advantages by hand, the update, SB3's API, LLMPolicy."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from glam_algorithms import GRPO, GiGPO
from glam_algorithms.gigpo import EnvNotReseedableError, discounted_returns, group_advantages
from glam_algorithms.gigpo.advantages import EPS
from glam_algorithms.gigpo.buffer import EpisodeGroupBuffer
from glam_algorithms.gigpo.gigpo import SEED_RANGE, observation_bytes
from glam_experiments.callbacks import CleanRLLogger
from glam_experiments.configs import LLMPPOConfig
from glam_experiments.envs import make_text_vec_env

TEXT_ENV = "BabyAI-Text-GoToS5N2-v0"

# --- advantages, by hand ------------------------------------------------------------------


def test_grpo_advantage_of_a_mixed_group() -> None:
    # returns 1, 0, 1: mean 2/3, sample sd sqrt(1/3)
    out = group_advantages([np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0]), np.array([0.0, 1.0])], gamma=0.9)
    sd = math.sqrt(1 / 3)
    expected = [(1 - 2 / 3) / (sd + EPS), (0 - 2 / 3) / (sd + EPS), (1 - 2 / 3) / (sd + EPS)]
    np.testing.assert_allclose(out.episode, expected)
    # GRPO: the episode's one value on every step, whatever the episode's length
    for advantages, value, length in zip(out.advantages, expected, (3, 2, 2), strict=True):
        np.testing.assert_allclose(advantages, [value] * length)


def test_an_all_equal_group_carries_no_signal() -> None:
    for returns in ([0.0, 0.0, 0.0, 0.0], [0.7, 0.7, 0.7, 0.7]):
        rewards = [np.array([0.0] * (i + 1) + [r]) for i, r in enumerate(returns)]
        keys = [["same"] * len(r) for r in rewards]  # every step in one step group
        out = group_advantages(rewards, keys, gamma=1.0)
        np.testing.assert_array_equal(out.episode, 0.0)
        # undiscounted, every step's return is its episode's: the step group is all-equal too
        for advantages in out.advantages:
            np.testing.assert_array_equal(advantages, 0.0)


def test_gigpo_step_groups_by_hand() -> None:
    # episode 0 visits a, b, a (success 1 at its last step); episode 1 visits a, c (fails); episode 2: b (success 0.5)
    rewards = [np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0]), np.array([0.5])]
    keys = [["a", "b", "a"], ["a", "c"], ["b"]]
    gamma, omega = 0.5, 0.7
    out = group_advantages(rewards, keys, gamma=gamma, step_coef=omega)
    # episode returns 1, 0, 0.5: mean 0.5, sample sd 0.5
    episode = np.array([0.5, -0.5, 0.0]) / (0.5 + EPS)
    np.testing.assert_allclose(out.episode, episode)
    # discounted returns: episode 0: 0.25, 0.5, 1; episode 1: 0, 0; episode 2: 0.5
    np.testing.assert_allclose(discounted_returns(rewards[0], gamma), [0.25, 0.5, 1.0])
    # step group a: (0,0)=0.25, (0,2)=1, (1,0)=0 -> mean 5/12, sd of (0.25, 1, 0)
    a = np.array([0.25, 1.0, 0.0])
    a_rel = (a - a.mean()) / (a.std(ddof=1) + EPS)
    # step group b: (0,1)=0.5, (2,0)=0.5 -> all equal -> 0; c: singleton -> 0
    expected = [
        episode[0] + omega * np.array([a_rel[0], 0.0, a_rel[1]]),
        episode[1] + omega * np.array([a_rel[2], 0.0]),
        episode[2] + omega * np.array([0.0]),
    ]
    for got, want in zip(out.advantages, expected, strict=True):
        np.testing.assert_allclose(got, want)
    assert [s.tolist() for s in out.step_group_sizes] == [[3, 2, 3], [3, 1], [2]]


def test_singleton_step_groups_add_nothing() -> None:
    rewards = [np.array([0.0, 1.0]), np.array([0.0, 0.0, 0.0])]
    keys = [["a", "b"], ["c", "d", "e"]]
    out = group_advantages(rewards, keys, gamma=0.95, step_coef=1.0)
    grpo = group_advantages(rewards, None)
    for gigpo_steps, grpo_steps in zip(out.advantages, grpo.advantages, strict=True):
        np.testing.assert_array_equal(gigpo_steps, grpo_steps)
    for step in out.step:
        np.testing.assert_array_equal(step, 0.0)


def test_mean_only_normalisation_keeps_the_reward_scale() -> None:
    out = group_advantages([np.array([20.0]), np.array([0.0]), np.array([0.0]), np.array([0.0])], std_normalize=False)
    np.testing.assert_allclose(out.episode, [15.0, -5.0, -5.0, -5.0])


def test_bad_groups_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 episodes"):
        group_advantages([np.array([1.0])])
    with pytest.raises(ValueError, match="at least one step"):
        group_advantages([np.array([1.0]), np.array([])])
    with pytest.raises(ValueError, match="one key per step"):
        group_advantages([np.array([1.0]), np.array([0.0])], [["a"], []])


def test_buffer_groups_episodes_by_round_and_env() -> None:
    buffer = EpisodeGroupBuffer(group_size=2, gamma=1.0, step_coef=0.0, std_normalize=False, device=torch.device("cpu"))
    obs = np.zeros((4, 1), dtype=np.float32)
    # round 0, 4 envs: env 0 succeeds at step 2, envs 1-3 end at step 1 with 0, 1, 0
    buffer.add(obs, np.zeros(4), np.array([0.0, 0.0, 1.0, 0.0]), np.zeros(4), np.arange(4), None)
    buffer.add(obs[:1], np.zeros(1), np.array([1.0]), np.zeros(1), np.array([0]), None)
    buffer.end_round()
    # round 1: env 1 alone succeeds (in two steps)
    buffer.add(obs, np.zeros(4), np.zeros(4), np.zeros(4), np.arange(4), None)
    buffer.add(obs[1:2], np.zeros(1), np.array([1.0]), np.zeros(1), np.array([1]), None)
    buffer.end_round()
    buffer.finish()
    # steps in the order added; groups (round, env // 2); returns centred in their group
    expected = [0.5, -0.5, 0.5, -0.5, 0.5, -0.5, 0.5, 0.0, 0.0, 0.5]
    np.testing.assert_allclose(buffer.advantages, expected)
    assert buffer.stats["group/groups"] == 4 and buffer.stats["group/mixed_fraction"] == 0.75


# --- a toy level: reseedable, and learnable in seconds ------------------------------------


class Corridor(gym.Env):
    """Five cells; the agent starts in the middle and must walk to the end the observation points at
    (drawn from the reset seed); the other end fails.  Reward ``1 - 0.1 * steps`` on success."""

    def __init__(self, seeded: bool = True) -> None:
        self.observation_space = spaces.Box(0.0, 1.0, (8,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.seeded = seeded
        self._noise = np.random.default_rng()

    def _obs(self) -> np.ndarray:
        obs = np.zeros(8, dtype=np.float32)
        obs[self.pos] = 1.0
        obs[5 + self.goal] = 1.0
        if not self.seeded:  # something no seed reproduces
            obs[7] = self._noise.random()
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.pos, self.goal, self.steps = 2, int(self.np_random.integers(2)), 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.pos += 1 if action == 1 else -1
        self.steps += 1
        ended = self.pos in (0, 4)
        success = ended and (self.pos == 4) == (self.goal == 1)
        return self._obs(), (1.0 - 0.1 * self.steps) if success else 0.0, ended, False, {"success": success}


def corridor_env(n: int, seeded: bool = True, subproc: bool = False):
    cls = SubprocVecEnv if subproc else DummyVecEnv
    return cls([lambda: Monitor(gym.wrappers.TimeLimit(Corridor(seeded), 8))] * n)


def greedy_success(model, episodes: int = 40) -> float:
    wins = 0
    env = Corridor()
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        for _ in range(8):
            action, _ = model.predict(obs, deterministic=True)
            obs, _, done, _, info = env.step(int(action))
            if done:
                wins += info["success"]
                break
    return wins / episodes


@pytest.mark.parametrize("algo", [GRPO, GiGPO])
def test_a_tiny_policy_learns_the_corridor(algo: type[GiGPO]) -> None:
    model = algo("MlpPolicy", corridor_env(8), group_size=4, n_rounds=2, learning_rate=3e-3, batch_size=32, seed=0)
    before = greedy_success(model)
    model.learn(3000)
    assert greedy_success(model) == 1.0 > before


def test_the_loss_falls_on_a_fixed_batch() -> None:
    model = GiGPO("MlpPolicy", corridor_env(8), group_size=4, n_rounds=4, learning_rate=1e-3, n_epochs=1, seed=1)
    model.learn(1)  # one rollout and its update
    assert model.rollout_buffer.stats["group/mixed_fraction"] > 0
    losses = []
    for _ in range(6):  # the same rollout again
        model.train()
        losses.append(model.logger.name_to_value["train/loss"])
    assert losses[-1] < losses[0], losses


def test_a_rollout_without_signal_leaves_the_policy_alone() -> None:
    model = GiGPO("MlpPolicy", corridor_env(8), group_size=4, n_rounds=4, learning_rate=1e-3, seed=1)
    model.learn(1)  # one update: Adam now has momentum
    assert model.n_skipped_updates == 0
    model.rollout_buffer.advantages[:] = 0.0  # every group's returns equal
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.train()
    assert all(torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))
    assert model.n_skipped_updates == 1
    model.ent_coef = 0.01  # an entropy bonus is something to learn from
    model.train()
    assert not all(torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))


def test_subproc_vec_env_and_frames_counted() -> None:
    model = GRPO("MlpPolicy", corridor_env(4, subproc=True), group_size=2, seed=0)
    ended, played = [], []

    class Episodes(BaseCallback):
        def _on_step(self) -> bool:
            ended.append(int(np.sum(self.locals["dones"])))
            played.append(len(self.locals["idx"]))
            return True

    model.learn(30, callback=Episodes())
    # whole rounds of 4 episodes; the frames are the steps the envs played, not 4 per step
    assert model.n_rollouts >= 1 and sum(ended) == 4 * model.n_rollouts
    assert model.num_timesteps == sum(played) >= 30
    model.env.close()


def test_callbacks_see_only_the_steps_played(tmp_path: Path) -> None:
    model = GiGPO("MlpPolicy", corridor_env(4), group_size=2, n_rounds=3, seed=2)
    model.learn(1, callback=CleanRLLogger(tmp_path))
    rows = (tmp_path / "episodes.csv").read_text().splitlines()[1:]
    assert len(rows) == 4 * 3  # every env's episode of every round, no waiting env's
    lengths = [int(row.split(",")[2]) for row in rows]
    assert sum(lengths) == model.num_timesteps == len(model.rollout_buffer.actions)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"losses/approx_kl", "losses/clipfrac", "losses/loss", "charts/rollout_steps"} <= tags
    assert {"group/mixed_fraction", "group/anchor_step_fraction", "group/mean_return"} <= tags
    assert "losses/value_loss" not in tags  # no critic


# --- bad settings -------------------------------------------------------------------------


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="not a multiple of group_size=4"):
        GiGPO("MlpPolicy", corridor_env(6), group_size=4)
    with pytest.raises(ValueError, match="group_size must be at least 2"):
        GiGPO("MlpPolicy", corridor_env(2), group_size=1)
    with pytest.raises(TypeError, match="GRPO has no step_coef"):
        GRPO("MlpPolicy", corridor_env(2), group_size=2, step_coef=1.0)
    box = DummyVecEnv([lambda: gym.make("Pendulum-v1")] * 2)
    with pytest.raises(ValueError, match="kl_coef > 0 needs a Discrete action space"):
        GiGPO("MlpPolicy", box, group_size=2, kl_coef=0.1)


def test_an_env_that_ignores_its_seed_is_refused() -> None:
    model = GiGPO("MlpPolicy", corridor_env(4, seeded=False), group_size=2, seed=0)
    with pytest.raises(EnvNotReseedableError, match=r"reset with the same seed .* started from different observations"):
        model.learn(10)


def test_an_episode_that_never_ends_is_refused() -> None:
    env = DummyVecEnv([lambda: Corridor()] * 2)  # no TimeLimit; walking back and forth never ends
    model = GiGPO("MlpPolicy", env, group_size=2, max_episode_steps=3, seed=0)
    model.policy.action_net.bias.data = torch.tensor([0.0, 0.0])

    def stay(*args, **kwargs):  # left, right, left...: never reaches an end
        stay.n = getattr(stay, "n", 0) + 1
        return torch.tensor([stay.n % 2, stay.n % 2]), None, torch.zeros(2)

    model.policy.forward = stay  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="max_episode_steps=3"):
        model.learn(10)


def test_round_seeds_are_shared_within_a_group_only() -> None:
    model = GiGPO("MlpPolicy", corridor_env(8), group_size=4, seed=5)
    seeds = model._round_seeds(8)
    assert seeds[:4] == [seeds[0]] * 4 and seeds[4:] == [seeds[4]] * 4 and seeds[0] != seeds[4]
    assert all(SEED_RANGE[0] <= s < SEED_RANGE[1] for s in seeds)


# --- the language-model policy -------------------------------------------------------------


def _llm_config(model: str, **changes) -> LLMPPOConfig:
    sizes = {"n_envs": 4, "group_size": 2, "batch_size": 16, "n_epochs": 2, "algo": "gigpo"}
    return LLMPPOConfig(model=model, **{**sizes, **changes})


def _text_env(n: int, max_steps: int = 6):
    return make_text_vec_env(TEXT_ENV, n, 0, env_kwargs={"max_steps": max_steps})


def test_learning_rate_0_gives_approx_kl_0_with_llm_policy(tiny_llama: str) -> None:
    config = _llm_config(tiny_llama, learning_rate=0.0, lm_learning_rate=0.0, kl_coef=0.5)
    model = config.make(_text_env(4), seed=0)
    assert isinstance(model, GiGPO)
    model.learn(40)
    values = model.logger.name_to_value
    assert values["train/approx_kl"] == pytest.approx(0.0, abs=1e-6)
    assert values["train/clip_fraction"] == 0.0
    assert values["train/reference_kl"] == pytest.approx(0.0, abs=1e-6)


def test_step_keys_are_the_prompts_the_policy_reads(tiny_llama: str) -> None:
    model = _llm_config(tiny_llama).make(_text_env(4), seed=0)
    obs = model.env.reset()
    tensors = {k: torch.as_tensor(v) for k, v in obs.items()}
    keys = model._step_key_fn(tensors)
    prompts, candidates = model.policy.prompts(tensors)
    assert keys == [(p, tuple(c)) for p, c in zip(prompts, candidates, strict=True)]
    assert observation_bytes(tensors)[0] != observation_bytes(tensors)[1] or keys[0] == keys[1]


def test_save_and_load_round_trip(tiny_llama: str, tmp_path: Path) -> None:
    config = _llm_config(tiny_llama, lm_learning_rate=1e-3, kl_coef=0.1)
    model = config.make(_text_env(4), seed=0)
    start = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(30)
    model.save(tmp_path / "agent.zip")
    loaded = GiGPO.load(tmp_path / "agent.zip", env=_text_env(4))
    for key, value in model.policy.state_dict().items():
        assert torch.equal(value, loaded.policy.state_dict()[key]), key
    assert loaded.n_rollouts == model.n_rollouts and loaded.reference_taken
    # the reference is the start, not the trained policy
    names = dict(model.policy.named_parameters())
    reference = dict(zip(loaded.reference.names, loaded.reference.buffers(), strict=True))
    moved = [n for n in reference if not torch.equal(reference[n], names[n].detach())]
    assert moved and all(torch.equal(reference[n], start[n]) for n in moved if n in start)
    obs = loaded.env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    loaded.learn(20, reset_num_timesteps=False)  # training goes on from the loaded state
    assert loaded.n_rollouts > model.n_rollouts

    from glam_experiments.agents import load_agent

    assert isinstance(load_agent(str(tmp_path / "agent.zip"), _text_env(1)), GiGPO)  # any n_envs: evaluation only


def test_the_config_refuses_settings_the_group_algorithms_cannot_use() -> None:
    from glam_experiments.cli import UsageError

    with pytest.raises(UsageError, match="--n-envs 6 is not a multiple of --group-size 4"):
        LLMPPOConfig(algo="grpo", n_envs=6, group_size=4).check()
    with pytest.raises(UsageError, match="has none"):
        LLMPPOConfig(algo="gigpo", critic_warmup=2).check()
    with pytest.raises(UsageError, match="algo"):
        LLMPPOConfig(algo="a2c").check()
    assert "step_coef" not in LLMPPOConfig(algo="grpo").group_kwargs()


def test_the_training_script_checkpoints_and_resumes_gigpo(tiny_llama: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    from glam_experiments.checkpoints import latest_checkpoint, read_state

    script = str(Path(__file__).resolve().parents[1] / "examples" / "train_llm_ppo.py")
    flags = ["--model", tiny_llama, "--env-id", TEXT_ENV, "--algo", "gigpo", "--n-envs", "2", "--group-size", "2"]
    flags += ["--batch-size", "8", "--n-epochs", "1", "--kl-coef", "0.1", "--checkpoint-every", "1"]

    def run(*more: str) -> None:
        done = subprocess.run([sys.executable, script, *flags, *more], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]

    run("--total-timesteps", "30", "--run-dir", str(tmp_path))
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.split("__")[1] == "llm_gigpo"
    first = GiGPO.load(latest_checkpoint(run_dir) / "model.zip")
    frames = read_state(run_dir).frames
    assert frames == first.num_timesteps >= 30 and first.n_rollouts >= 1
    run("--total-timesteps", str(frames + 1), "--resume", str(run_dir))
    resumed = GiGPO.load(latest_checkpoint(run_dir) / "model.zip")
    assert resumed.n_rollouts == first.n_rollouts + 1 and read_state(run_dir).frames == resumed.num_timesteps > frames
    # the KL penalty still holds the policy to where the first run started
    for a, b in zip(first.reference.buffers(), resumed.reference.buffers(), strict=True):
        assert torch.equal(a, b)


def test_a_ppo_agent_starts_a_gigpo_run_with_its_weights_as_the_reference(tiny_llama: str, tmp_path: Path) -> None:
    ppo = _llm_config(tiny_llama, algo="ppo", n_steps=4).make(_text_env(4), seed=0)
    with torch.no_grad():  # unlike a freshly built policy (as a cloned one would be)
        for parameter in ppo.policy.parameters():
            if parameter.requires_grad:
                parameter.add_(0.01)
    ppo.save(tmp_path / "cloned.zip")
    model = _llm_config(tiny_llama, kl_coef=0.1).make(_text_env(4), seed=0)
    model.set_parameters(str(tmp_path / "cloned.zip"), exact_match=True)  # the scripts' --init-from
    model.learn(10)
    saved = dict(ppo.policy.named_parameters())
    for name, value in zip(model.reference.names, model.reference.buffers(), strict=True):
        assert torch.equal(value, saved[name].detach()), name
    # and a KL-trained agent loads into a model without the penalty
    model.save(tmp_path / "gigpo.zip")
    plain = _llm_config(tiny_llama).make(_text_env(4), seed=0)
    plain.set_parameters(str(tmp_path / "gigpo.zip"), exact_match=True)
    assert plain.reference is None
