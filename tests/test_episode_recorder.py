"""EpisodeRecorder: a seeded episode of the current policy in TensorBoard every N updates."""

from __future__ import annotations

import io
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from PIL import Image
from stable_baselines3 import PPO
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import babyai_text  # noqa: F401
from glam_experiments.callbacks import EpisodeRecorder
from llm_policy import LLMPolicy

ENV = "BabyAI-Text-GoToS5N2-v0"


def tiny_ppo(model_dir: str, **kwargs) -> PPO:
    torch.manual_seed(0)
    return PPO(
        LLMPolicy,
        gym.make(ENV),
        n_steps=4,
        batch_size=4,
        n_epochs=1,
        seed=0,
        policy_kwargs={"model": model_dir},
        **kwargs,
    )


def events(log_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_recordings_after_every_n_updates_and_at_the_end(tiny_llama: str, tmp_path: Path) -> None:
    model = tiny_ppo(tiny_llama)
    model.learn(3 * 4, callback=EpisodeRecorder(ENV, every=2, log_dir=tmp_path, seed=3, max_steps=5))
    acc = events(tmp_path)
    # 3 rollouts: the policy after 0 updates (recorded at the first rollout's end), after 2, and after the last (3)
    images = acc.Images("episode/frames")
    assert [im.step for im in images] == [4, 12, 12]
    lengths = [s.value for s in acc.Scalars("episode/length")]
    for image, length in zip(images, lengths, strict=True):
        with Image.open(io.BytesIO(image.encoded_image_string)) as gif:
            assert gif.format == "GIF" and gif.n_frames == length
    tables = [t.tensor_proto.string_val[0].decode() for t in acc.Tensors("episode/steps/text_summary")]
    assert len(tables) == 3 and "after 0 updates" in tables[0] and "after 3 updates" in tables[2]
    assert "| step | observation | p(turn left) |" in tables[0] and f"{ENV}, seed 3" in tables[0]


def test_recording_leaves_training_unchanged(tiny_llama: str, tmp_path: Path) -> None:
    plain = tiny_ppo(tiny_llama)
    plain.learn(2 * 4)
    recorded = tiny_ppo(tiny_llama)
    recorded.learn(2 * 4, callback=EpisodeRecorder(ENV, every=1, log_dir=tmp_path, max_steps=3))
    for a, b in zip(plain.policy.parameters(), recorded.policy.parameters(), strict=True):
        assert torch.equal(a, b)


def test_sb3_tensorboard_output_is_used_or_asked_for(tiny_llama: str, tmp_path: Path) -> None:
    model = tiny_ppo(tiny_llama, tensorboard_log=str(tmp_path))
    model.learn(4, callback=EpisodeRecorder(ENV, every=1, max_steps=2), tb_log_name="run")
    (run,) = tmp_path.iterdir()
    assert "episode/frames" in events(run).Tags()["images"]
    with pytest.raises(ValueError, match="tensorboard_log"):
        tiny_ppo(tiny_llama).learn(4, callback=EpisodeRecorder(ENV))
    with pytest.raises(ValueError, match="every"):
        EpisodeRecorder(ENV, every=0)
