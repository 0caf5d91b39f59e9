"""GLAM's prompt, built from the observation alone."""

from __future__ import annotations

import gymnasium as gym
import pytest

from babyai_text import decode_observation
from llm_policy import PromptTemplate


def test_glam_prompt_format() -> None:
    env = gym.make("BabyAI-Text-GoTo-v0")
    obs, info0 = env.reset(seed=0)
    template = PromptTemplate()
    first = template.render(decode_observation(obs))
    assert first == (
        "Possible action of the agent: turn left, turn right, go forward, pick up, drop, toggle\n"
        f"Goal of the agent: {info0['mission']}\n"
        f"Observation 0: {', '.join(info0['descriptions'])}\n"
        "Action 0:"
    )
    infos = [info0]
    for action in (0, 2, 1):
        obs, *_, info = env.step(action)
        infos.append(info)
    prompt = template.render(decode_observation(obs))
    assert prompt.splitlines()[2:] == [
        f"Observation 0: {', '.join(infos[1]['descriptions'])}",
        "Action 0: go forward",
        f"Observation 1: {', '.join(infos[2]['descriptions'])}",
        "Action 1: turn right",
        f"Observation 2: {', '.join(infos[3]['descriptions'])}",
        "Action 2:",
    ]
    assert template.candidates(decode_observation(obs))[0] == " turn left"


def test_action_names_come_from_the_observation() -> None:
    env = gym.make("BabyAI-Text-GoTo-SynonymActions-v0")
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(2)
    prompt = PromptTemplate().render(decode_observation(obs))
    assert prompt.startswith("Possible action of the agent: rotate left, rotate right, move ahead, take")
    assert "Action 0: move ahead" in prompt


def test_custom_template() -> None:
    template = PromptTemplate(
        actions="Actions possibles pour l'agent : {actions}",
        goal="But de l'agent : {mission}",
        action="Action {index} : {action}",
    )
    obs, _ = gym.make("BabyAI-Text-GoTo-French-v0").reset(seed=0)
    prompt = template.render(decode_observation(obs))
    assert prompt.startswith("Actions possibles pour l'agent : tourner à gauche")
    assert prompt.endswith("Action 0 :")


def test_template_validation() -> None:
    with pytest.raises(ValueError, match=r"must contain \{mission\}"):
        PromptTemplate(goal="Goal")
    with pytest.raises(ValueError, match=r"must end with \{action\}"):
        PromptTemplate(action="{action} was action {index}")


def test_history_limits_the_prompt_to_recent_steps() -> None:
    env = gym.make("BabyAI-Text-GoTo-v0")
    obs, info = env.reset(seed=0)
    infos = [info]
    for action in (0, 2, 1):
        obs, *_, info = env.step(action)
        infos.append(info)
    text = decode_observation(obs)
    full = PromptTemplate().render(text).splitlines()
    two = PromptTemplate(history=2).render(text).splitlines()
    one = PromptTemplate(history=1).render(text).splitlines()
    assert two[2:] == [
        f"Observation 0: {', '.join(infos[2]['descriptions'])}",
        "Action 0: turn right",
        f"Observation 1: {', '.join(infos[3]['descriptions'])}",
        "Action 1:",
    ]
    assert one[2:] == [f"Observation 0: {', '.join(infos[3]['descriptions'])}", "Action 0:"]
    assert PromptTemplate(history=5).render(text).splitlines() == full
    with pytest.raises(ValueError, match="history"):
        PromptTemplate(history=0)
