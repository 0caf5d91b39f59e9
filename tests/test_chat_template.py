"""LLMPolicy(chat_template=True): the prompt in the model's own chat format, on every
decoder-only family, each with a chat template written after its real family's."""

from __future__ import annotations

import shutil
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv
from transformers import AutoTokenizer

from babyai_text import decode_batch
from babyai_text.observation import TextObservation
from llm_policy import ChatTemplateError, LLMPolicy, PromptTemplate
from tests.helpers.family_reference import observations
from tests.helpers.model_families import CAUSAL_FAMILIES, build_family

CHATML = (  # SmolLM2, Qwen2
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA2 = (  # the system turn inside the first [INST]; answers after a space, closed by </s>
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set turns = messages[1:] %}{% else %}{% set system = false %}{% set turns = messages %}{% endif %}"
    "{% for m in turns %}{% if loop.index0 == 0 and system %}"
    "{% set content = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + m['content'] %}"
    "{% else %}{% set content = m['content'] %}{% endif %}"
    "{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% else %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
LLAMA3 = (  # writes the BOS its tokenizer's post-processor adds too
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + "
    "m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
GEMMA = (  # no system turn
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + m['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
TEMPLATES = {"llama2": LLAMA2, "llama2-hf": LLAMA2, "llama3": LLAMA3, "gemma": GEMMA}
ATOL = 1e-4


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory: pytest.TempPathFactory):
    """``chat_dir(family)``: the family's tiny model with its chat template set on the tokenizer."""
    built: dict[str, str] = {}

    def get(family: str) -> str:
        if family not in built:
            path = build_family(family, tmp_path_factory.mktemp(f"chat-{family}"))
            tokenizer = AutoTokenizer.from_pretrained(path)
            tokenizer.chat_template = TEMPLATES.get(family, CHATML)
            tokenizer.save_pretrained(path)
            built[family] = str(path)
        return built[family]

    return get


def _policy(path: str, **kwargs) -> LLMPolicy:
    env = gym.make("BabyAI-Text-GoToS5N2-v0")
    return LLMPolicy(env.observation_space, env.action_space, lambda _: 3e-4, model=path, value_head=(16,), **kwargs)


def _conversation(family: str, text: TextObservation) -> list[dict[str, str]]:
    """What the template is given (Gemma's has no system turn: the action list opens the first user turn)."""
    turns = PromptTemplate().messages(text)
    if family == "gemma":
        system, first, *rest = turns
        turns = [{"role": "user", "content": system["content"] + "\n" + first["content"]}, *rest]
    return turns


def _hf_ids(tokenizer, turns: list[dict[str, str]], opened: bool) -> list[int]:
    """Hugging Face's own tokens of a conversation (``apply_chat_template(tokenize=True)``)."""
    out = tokenizer.apply_chat_template(turns, tokenize=True, add_generation_prompt=opened)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def test_messages_are_turns_of_the_prompt() -> None:
    text = TextObservation(
        mission="go to the red ball",
        action_names=("turn left", "turn right", "go forward", "pick up", "drop", "toggle"),
        descriptions=(("You see a wall 2 steps forward",), ("You see a red ball 1 step left",), ("You see nothing",)),
        actions=(0, 2),
    )
    turns = PromptTemplate().messages(text)
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert (
        turns[0]["content"] == "Possible action of the agent: turn left, turn right, go forward, pick up, drop, toggle"
    )
    assert turns[1]["content"] == "Goal of the agent: go to the red ball\nObservation 0: You see a wall 2 steps forward"
    assert [turns[2]["content"], turns[4]["content"]] == ["turn left", "go forward"]
    assert turns[5]["content"] == "Observation 2: You see nothing"
    # the same lines as GLAM's plain prompt, which keeps the same history
    latest = PromptTemplate(history=1).messages(text)
    assert [t["role"] for t in latest] == ["system", "user"]
    assert latest[1]["content"] == "Goal of the agent: go to the red ball\nObservation 0: You see nothing"
    assert latest[1]["content"] in PromptTemplate(history=1).render(text)


@pytest.mark.parametrize("family", CAUSAL_FAMILIES)
def test_chat_scores_are_answers_in_the_template(chat_dir, family: str) -> None:
    """Each action's tokens are those of the template's own rendering of that answer, after exactly
    the tokens Hugging Face gives the opened conversation (one BOS); scored as a plain forward does."""
    path = chat_dir(family)
    tokenizer = AutoTokenizer.from_pretrained(path)
    policy = _policy(path, chat_template=True)
    obs = observations()
    x = policy.obs_to_tensor(obs)[0]
    scores = policy.score(x).scores
    assert scores is not None
    prompts, candidates = policy.prompts(x)
    bos = tokenizer.bos_token_id
    for b, text in enumerate(decode_batch(obs)):
        turns = _conversation(family, text)
        prompt_ids = _hf_ids(tokenizer, turns, opened=True)
        ids, action_ids = policy.scorer.tokens(prompts[b], candidates[b])
        assert ids == prompt_ids, f"{family}: the policy's prompt tokens are not Hugging Face's"
        if bos is not None and TEMPLATES.get(family, CHATML) != CHATML:
            assert prompt_ids[0] == bos and prompt_ids[1] != bos, f"{family}: one BOS, as the template writes it"
        for a, name in enumerate(text.action_names):
            answer = [*turns, {"role": "assistant", "content": name}]
            answered = _hf_ids(tokenizer, answer, opened=False)
            action = action_ids[a]
            assert answered[: len(prompt_ids) + len(action)] == prompt_ids + action, (
                f"{family}: the action {name!r} is not read as the template writes the answer"
            )
            with torch.no_grad():
                logits = policy.lm(input_ids=torch.tensor([prompt_ids + action])).logits[0].double()
            logp = logits.log_softmax(-1)
            expected = sum(float(logp[len(prompt_ids) - 1 + j, t]) for j, t in enumerate(action))
            assert abs(float(scores[b, a].detach()) - expected) < ATOL, (family, name)


def test_answer_prefix_is_the_templates(chat_dir) -> None:
    """Llama-2 writes a space before an answer; ChatML and Llama-3 nothing; Gemma's template has no system turn."""
    formats = {family: _policy(chat_dir(family), chat_template=True).chat for family in ("llama2", "qwen2", "gemma")}
    assert formats["llama2"].answer_prefix == " " and formats["llama2"].system_turn
    assert formats["qwen2"].answer_prefix == "" and formats["qwen2"].system_turn
    assert formats["gemma"].answer_prefix == "" and not formats["gemma"].system_turn


def test_plain_prompt_unchanged(chat_dir) -> None:
    """A tokenizer's chat template changes nothing unless asked for (GLAM's plain prompt by default)."""
    policy = _policy(chat_dir("qwen2"))
    prompts, candidates = policy.prompts(policy.obs_to_tensor(observations())[0])
    assert prompts[0].startswith("Possible action of the agent:") and "<|im_start|>" not in prompts[0]
    assert candidates[0][0] == " turn left"


def test_ppo_update_sees_the_rollout_policy_and_save_load(chat_dir, tmp_path: Path) -> None:
    env = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0")] * 2)
    kwargs = {"model": chat_dir("llama3"), "value_head": (16,), "chat_template": True, "lm_learning_rate": None}
    model = PPO(LLMPolicy, env, learning_rate=0.0, n_steps=8, batch_size=8, n_epochs=1, seed=0, policy_kwargs=kwargs)
    model.learn(16)
    data = next(model.rollout_buffer.get(batch_size=None))
    _, log_prob, _ = model.policy.evaluate_actions(data.observations, data.actions.long().flatten())
    torch.testing.assert_close(log_prob.detach(), data.old_log_prob, atol=1e-5, rtol=0)
    model.save(tmp_path / "agent")
    loaded = PPO.load(tmp_path / "agent", env=env)
    assert loaded.policy.chat_template
    x = loaded.policy.obs_to_tensor(observations())[0]
    torch.testing.assert_close(loaded.policy.action_probabilities(x), model.policy.action_probabilities(x))


def test_errors(chat_dir, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(chat_dir("gpt2"), plain)
    tokenizer = AutoTokenizer.from_pretrained(plain)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(plain)
    for leftover in plain.glob("chat_template.*"):
        leftover.unlink()
    with pytest.raises(ChatTemplateError, match=r"has no chat template.*chat_template=False"):
        _policy(str(plain), chat_template=True)
    t5 = build_family("t5", tmp_path / "t5")
    with pytest.raises(ChatTemplateError, match="decoder-only"):
        _policy(str(t5), chat_template=True)
    with pytest.raises(ValueError, match="chat_template must be True or False"):
        _policy(str(plain), chat_template="chatml")
    refusing = tmp_path / "refusing"
    shutil.copytree(chat_dir("gpt2"), refusing)
    tokenizer = AutoTokenizer.from_pretrained(refusing)
    tokenizer.chat_template = "{{ raise_exception('Conversation roles must alternate') }}"
    tokenizer.save_pretrained(refusing)
    with pytest.raises(ChatTemplateError, match=r"refuses a conversation.*alternate"):
        _policy(str(refusing), chat_template=True)
