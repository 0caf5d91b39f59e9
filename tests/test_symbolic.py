"""Symbolic-PPO's BabyAI features extractor."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from glam_baselines import BabyAIFeaturesExtractor
from tests.helpers import text_batch


def extractor_and_obs() -> tuple[BabyAIFeaturesExtractor, dict]:
    env = gym.make("BabyAI-Text-MixedTrain-v0")
    torch.manual_seed(0)
    extractor = BabyAIFeaturesExtractor(env.observation_space).eval()
    model = PPO("MultiInputPolicy", env, policy_kwargs={"features_extractor_class": BabyAIFeaturesExtractor})
    obs = model.policy.obs_to_tensor(text_batch(n=4))[0]
    from stable_baselines3.common.preprocessing import preprocess_obs

    return extractor, preprocess_obs(obs, env.observation_space)


def test_ignores_descriptions_and_action_history() -> None:
    extractor, obs = extractor_and_obs()
    with torch.no_grad():
        base = extractor(obs)
        changed = dict(obs)
        changed["descriptions"] = torch.randint(0, 256, obs["descriptions"].shape).float()
        changed["actions"] = torch.zeros_like(obs["actions"])
        changed["action_names"] = torch.zeros_like(obs["action_names"])
        torch.testing.assert_close(extractor(changed), base, atol=0, rtol=0)


def test_depends_on_image_mission_and_direction() -> None:
    extractor, obs = extractor_and_obs()
    with torch.no_grad():
        base = extractor(obs)
        for key in ("image", "mission", "direction"):
            changed = dict(obs)
            if key == "direction":
                changed[key] = obs[key].roll(1, dims=1)
            elif key == "mission":
                changed[key] = obs[key].roll(1, dims=0)  # other envs' missions
            else:
                changed[key] = obs[key].roll(1, dims=0)
            assert not torch.allclose(extractor(changed), base), key


def test_unknown_mission_words_do_not_crash() -> None:
    env = gym.make("BabyAI-Text-GoTo-French-v0")
    extractor = BabyAIFeaturesExtractor(env.observation_space)
    model = PPO("MultiInputPolicy", env, policy_kwargs={"features_extractor_class": BabyAIFeaturesExtractor})
    obs, _ = env.reset(seed=0)
    from stable_baselines3.common.preprocessing import preprocess_obs

    tensor = preprocess_obs(model.policy.obs_to_tensor(obs)[0], env.observation_space)
    assert extractor(tensor).shape == (1, extractor.features_dim)


@pytest.mark.parametrize("recurrent", [False, True])
def test_trains_with_stock_ppo_and_recurrent_ppo(recurrent: bool) -> None:
    env = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0")] * 2)
    kwargs = {"features_extractor_class": BabyAIFeaturesExtractor, "net_arch": [32]}
    algo = (
        RecurrentPPO("MultiInputLstmPolicy", env, n_steps=16, batch_size=16, n_epochs=1, policy_kwargs=kwargs)
        if recurrent
        else PPO("MultiInputPolicy", env, n_steps=16, batch_size=16, n_epochs=1, policy_kwargs=kwargs)
    )
    algo.learn(32)
    actions, _ = algo.predict(env.reset())
    assert np.asarray(actions).shape == (2,)


def test_mission_vocabulary_is_restored_with_the_weights() -> None:
    space = gym.make("BabyAI-Text-GoToS5N2-v0").observation_space
    trained = BabyAIFeaturesExtractor(space, channels=8, instruction_dim=8, film_layers=1)
    other = BabyAIFeaturesExtractor(space, channels=8, instruction_dim=8, film_layers=1, vocabulary=["<pad>", "<unk>"])
    parameter = other.instruction.embedding.weight
    assert other.vocabulary.words != trained.vocabulary.words
    other.load_state_dict(trained.state_dict())
    assert other.vocabulary.words == trained.vocabulary.words
    assert other.instruction.embedding.weight is parameter  # resized in place: optimizers keep it
    torch.testing.assert_close(parameter, trained.instruction.embedding.weight)
    assert trained.vocabulary.encode("go to the red ball") != [trained.vocabulary.index["<unk>"]] * 5
    assert set(trained.vocabulary.encode("va à la balle rouge")) == {trained.vocabulary.index["<unk>"]}
