"""DRRN with stock SB3 DQN."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from minigrid.minigrid_env import MiniGridEnv
from stable_baselines3 import DQN
from stable_baselines3.common.vec_env import DummyVecEnv

from babyai_text import decode_batch
from babyai_text.language import ENGLISH, VARIANTS
from babyai_text.observation import ACTION_NAME_BYTES
from babyai_text.prompt import PromptTemplate
from babyai_text.vocabulary import language_vocabulary
from glam_baselines import DRRNPolicy, text_encoding
from glam_baselines.drrn import drrn_vocabulary
from glam_baselines.text_encoding import UNK
from tests.helpers import text_batch


def make_dqn(**policy_kwargs) -> DQN:
    env = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0")] * 2)
    return DQN(
        DRRNPolicy,
        env,
        learning_starts=8,
        batch_size=8,
        buffer_size=256,
        train_freq=2,
        seed=0,
        policy_kwargs=policy_kwargs,
    )


def test_q_values_are_permutation_equivariant() -> None:
    q_net = make_dqn().q_net
    obs = q_net.obs_to_tensor(text_batch(n=2))[0]
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    names = obs["action_names"].view(2, 6, ACTION_NAME_BYTES)
    permuted = dict(obs)
    permuted["action_names"] = names[:, perm].reshape(2, -1)
    # keep the action history naming the same actions
    inverse = torch.argsort(perm)
    hist = obs["actions"].clone()
    permuted["actions"] = torch.where(hist >= 0, inverse[hist.clamp(min=0).long()].to(hist.dtype), hist)
    with torch.no_grad():
        q, q_perm = q_net(obs), q_net(permuted)
    torch.testing.assert_close(q_perm, q[:, perm])


def test_unknown_words_do_not_crash() -> None:
    q_net = make_dqn().q_net
    for env_id in ("BabyAI-Text-GoTo-French-v0", "BabyAI-Text-GoTo-InventedWords-v0"):
        obs = q_net.obs_to_tensor(text_batch(env_id, n=2))[0]
        assert q_net(obs).shape == (2, 6)


@pytest.mark.parametrize("exploration", ["epsilon", "softmax"])
def test_trains_with_stock_dqn(exploration: str, tmp_path) -> None:
    model = make_dqn(exploration=exploration, embedding_dim=16, hidden_dim=16)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(48)
    assert any(not torch.equal(before[k], v) for k, v in model.policy.state_dict().items())
    model.save(tmp_path / "drrn")
    loaded = DQN.load(tmp_path / "drrn")
    obs = text_batch(n=2)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_softmax_exploration_samples() -> None:
    q_net = make_dqn(exploration="softmax", temperature=100.0).q_net
    obs = q_net.obs_to_tensor(text_batch(n=2))[0]
    draws = {int(q_net._predict(obs, deterministic=False)[0]) for _ in range(60)}
    assert len(draws) > 1
    greedy = {int(q_net._predict(obs, deterministic=True)[0]) for _ in range(5)}
    assert len(greedy) == 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="exploration must be"):
        make_dqn(exploration="boltzmann")
    with pytest.raises(ValueError, match="BabyAI-Text observations"):
        DQN(DRRNPolicy, gym.make("CartPole-v1"))


def test_vocabulary_is_fixed_and_built_without_any_level(monkeypatch) -> None:
    env = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0")] * 2)
    language_vocabulary.cache_clear()  # derive it again, under the watch below

    def no_level(*args, **kwargs):
        raise AssertionError("a level was generated to build the vocabulary")

    monkeypatch.setattr(MiniGridEnv, "reset", no_level)
    monkeypatch.setattr(gym, "make", no_level)
    model = DQN(DRRNPolicy, env, buffer_size=16, policy_kwargs={"embedding_dim": 8, "hidden_dim": 8})
    words = drrn_vocabulary().words
    assert model.q_net.vocabulary.words == model.q_net_target.vocabulary.words == words
    assert model.policy._get_constructor_parameters()["vocabulary"] == words


def test_unseen_words_map_to_unk_and_training_words_do_not() -> None:
    vocabulary = make_dqn().q_net.vocabulary
    unk = vocabulary.index[UNK]
    english = set(language_vocabulary(ENGLISH))
    for variant, examples in (
        ("RenamedObjects", "chair table car"),
        ("InventedWords", "dax xolo afze faze jatu"),
        ("French", "tourner à gauche attraper la balle rouge puis va à la porte"),
    ):
        new_words = set(language_vocabulary(VARIANTS[variant])) - english
        assert new_words, variant
        assert all(vocabulary.encode(word) == [unk] for word in new_words), variant
        assert set(vocabulary.encode(examples)) == {unk}, variant
    # every word of the training language's prompts is known
    template = PromptTemplate()
    for obs in decode_batch(text_batch("BabyAI-Text-MixedTrain-v0", n=8, steps=4)):
        assert unk not in vocabulary.encode(template.render(obs))


def test_saved_agent_keeps_its_vocabulary_when_the_word_lists_change(tmp_path, monkeypatch) -> None:
    model = make_dqn(embedding_dim=8, hidden_dim=8)
    model.learn(24)
    model.save(tmp_path / "drrn")
    saved = model.q_net.vocabulary.words
    # the package's word list changes later: every id shifts and the list grows
    original = text_encoding.language_vocabulary
    changed = lambda language=ENGLISH: ("aardvark", *original(language))  # noqa: E731
    monkeypatch.setattr(text_encoding, "language_vocabulary", changed)
    assert len(make_dqn(embedding_dim=8, hidden_dim=8).q_net.vocabulary) == len(saved) + 1
    loaded = DQN.load(tmp_path / "drrn", env=model.get_env())
    assert loaded.q_net.vocabulary.words == loaded.q_net_target.vocabulary.words == saved
    assert loaded.q_net.state_encoder.embedding.num_embeddings == len(saved)
    obs = text_batch(n=2)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    loaded.learn(8)  # the optimizer still holds the (resized) embedding parameters


def test_documented_bytes_per_transition() -> None:
    from stable_baselines3.common.buffers import DictReplayBuffer

    from glam_baselines.drrn import BYTES_PER_TRANSITION

    env = gym.make("BabyAI-Text-GoToS5N2-v0")
    buffer = DictReplayBuffer(10, env.observation_space, env.action_space)
    arrays = [*buffer.observations.values(), *buffer.next_observations.values()]
    arrays += [buffer.actions, buffer.rewards, buffer.dones, buffer.timeouts]
    assert sum(a.nbytes for a in arrays) == 10 * BYTES_PER_TRANSITION
