"""The episode viewer in a real browser: a headless Chromium steps through a written viewer.

Skipped where no Chromium is installed (``.ci/run`` installs Debian's package first).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from glam_experiments.recording import EpisodeRecord, StepRecord, record_episodes
from glam_experiments.viewer import write_html
from llm_policy import LLMPolicy
from tests.helpers.browser import MISSING, Browser, find_chromium

ENV = "BabyAI-Text-GoToS5N2-v0"
STEPS = 6
#: window sizes the layout is checked at: a laptop's, and a narrow one (the panels stack)
WINDOWS = [(1280, 800), (800, 900)]
#: the least space between a heading and the block above it, in CSS pixels
HEADING_GAP = 8
#: the least width of a probability bar's track
BAR_WIDTH = 40

needs_chromium = pytest.mark.skipif(find_chromium() is None, reason=MISSING)

# What the page shows of the current step, read from the DOM.
READ_STEP = """(() => {
  const text = (id) => document.getElementById(id).textContent;
  const rows = [...document.querySelectorAll("#bars .bar-row")].map((row) => ({
    label: row.firstChild.textContent,
    percent: row.lastChild.textContent,
    chosen: row.classList.contains("chosen"),
    bot: row.querySelector(".bot-mark") !== null,
  }));
  const frame = document.getElementById("frame");
  return {
    counter: text("counter"), action: text("action"), value: text("value"), reward: text("reward"),
    return: text("return"), bot: text("bot"), mission: text("mission"), observation: text("observation"),
    prompt: text("prompt"), rows, hash: location.hash,
    episode: [...document.querySelectorAll("#episodes li")].findIndex((li) => li.classList.contains("current")),
    frame: frame.complete && frame.naturalWidth > 0 ? frame.src : null,
  };
})()"""

# The page's layout: the header and the panels, and in each panel its blocks in document order.
READ_LAYOUT = """(() => {
  const BLOCKS = "h2, pre, ul, img, .controls, #counter, #summary, svg, #bars, .stats";
  const shown = (e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const name = (e) => e.tagName === "H2" ? `heading "${e.textContent.trim()}"`
    : e.id ? `#${e.id}` : e.tagName.toLowerCase() + (e.classList.length ? "." + e.classList[0] : "");
  const box = (e, label) => {
    const r = e.getBoundingClientRect();
    return {name: label || name(e), heading: e.tagName === "H2",
            left: r.left + scrollX, top: r.top + scrollY, right: r.right + scrollX, bottom: r.bottom + scrollY};
  };
  const panels = [document.querySelector("header"), ...document.querySelectorAll("main > section")];
  return {
    width: innerWidth, scrollWidth: document.documentElement.scrollWidth,
    panels: panels.map((p) => ({
      ...box(p, p.tagName === "HEADER" ? "header" : `panel "${p.querySelector("h2").textContent.trim()}"`),
      blocks: [...p.querySelectorAll(BLOCKS)].filter(shown).map((e) => box(e)),
    })),
    cells: [...document.querySelectorAll(".stats > *")].filter(shown).map((e) => box(e, `"${e.textContent}"`)),
    bars: [...document.querySelectorAll("#bars .bar")].map((e) => e.getBoundingClientRect().width),
  };
})()"""


@pytest.fixture(scope="module")
def policy(tiny_llama: str) -> LLMPolicy:
    import gymnasium as gym

    env = gym.make(ENV)
    torch.manual_seed(0)
    return LLMPolicy(env.observation_space, env.action_space, lambda _: 0.0, model=tiny_llama)


@pytest.fixture(scope="module")
def records(policy: LLMPolicy) -> list[EpisodeRecord]:
    return record_episodes(policy, ENV, episodes=2, seed=3, agent_name="tiny", max_steps=STEPS)


@pytest.fixture(scope="module")
def viewer(records: list[EpisodeRecord], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_html(records, tmp_path_factory.mktemp("viewer") / "viewer.html")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    with Browser.launch(tmp_path_factory.mktemp("chromium-profile")) as browser:
        yield browser


def _decimals(shown: str, pattern: str) -> float:
    match = re.fullmatch(pattern, shown)
    assert match, f"{shown!r} is not a number as the page writes it ({pattern})"
    return float(match.group(1))


def assert_shows_step(
    browser: Browser, policy: LLMPolicy, record: EpisodeRecord, episode: int, index: int, how: str
) -> None:
    """The page shows step ``index`` of ``record``, with the policy's probabilities, action and value."""
    step: StepRecord = record.steps[index]
    shown = browser.evaluate(READ_STEP)
    where = f"after {how}, episode {episode + 1} step {index + 1}"
    assert shown["counter"] == f"step {index + 1} of {record.length}", where
    assert shown["episode"] == episode and shown["hash"] == f"#episode={episode + 1}&step={index + 1}", where
    assert shown["mission"] == step.mission and shown["observation"] == step.observation, where
    assert shown["prompt"] == step.prompt, where
    assert shown["frame"] is not None, f"{where}: the frame did not load"
    # the decision of the policy for that very observation, to the precision the page shows
    tensor, _ = policy.obs_to_tensor(step.obs)
    with torch.no_grad():
        probabilities = policy.action_probabilities(tensor)[0].double().numpy()
        value = float(policy.predict_values(tensor))
    np.testing.assert_allclose(step.probabilities, probabilities, atol=1e-6)
    rows = shown["rows"]
    assert [row["label"].removeprefix("\u25b6 ").removesuffix(" (bot)") for row in rows] == list(step.action_names)
    for a, row in enumerate(rows):
        percent = _decimals(row["percent"], r"(\d+\.\d) %")
        assert abs(percent - 100 * probabilities[a]) <= 0.05 + 1e-4, f"{where}: {step.action_names[a]} {row}"
        assert row["chosen"] == (a == step.action), f"{where}: {row}"
        assert row["bot"] == (a == step.bot_action), f"{where}: {row}"
    assert shown["action"] == step.action_names[step.action], where
    assert abs(_decimals(shown["value"], r"(-?\d+\.\d{3})") - value) <= 0.0005 + 1e-5, f"{where}: {shown['value']}"
    assert abs(_decimals(shown["reward"], r"(-?\d+\.\d\d)") - step.reward) <= 0.005 + 1e-9, where
    assert abs(_decimals(shown["return"], r"(-?\d+\.\d\d)") - step.cumulative_return) <= 0.005 + 1e-9, where
    bot = "\u2013" if step.bot_action is None else step.action_names[step.bot_action]
    assert shown["bot"] == bot, where


@needs_chromium
def test_stepping_shows_the_policys_probabilities_action_and_value(
    browser: Browser, policy: LLMPolicy, records: list[EpisodeRecord], viewer: Path
) -> None:
    first, second = records
    assert first.length >= 3 and second.length >= 3, "the episodes are too short to step through"
    browser.events.clear()
    browser.open(viewer.as_uri(), 1280, 800)
    assert_shows_step(browser, policy, first, 0, 0, "opening")
    # through the first episode with the next button and the right arrow key in turn
    for index in range(1, first.length):
        how = "the next button" if index % 2 else "the right arrow key"
        if index % 2:
            browser.click("#next")
        else:
            browser.press("ArrowRight")
        assert_shows_step(browser, policy, first, 0, index, how)
    browser.click("#next")  # past the end: stays on the last step
    assert_shows_step(browser, policy, first, 0, first.length - 1, "next on the last step")
    browser.click("#prev")
    assert_shows_step(browser, policy, first, 0, first.length - 2, "the prev button")
    browser.press("ArrowLeft")
    assert_shows_step(browser, policy, first, 0, first.length - 3, "the left arrow key")
    browser.press("Home")
    assert_shows_step(browser, policy, first, 0, 0, "the Home key")
    # the second episode from the list and from the down arrow key
    browser.click("#episodes li:nth-child(2)")
    assert_shows_step(browser, policy, second, 1, 0, "a click on the second episode")
    browser.click("#last")
    assert_shows_step(browser, policy, second, 1, second.length - 1, "the last button")
    browser.click("#first")
    browser.press("ArrowUp")
    assert_shows_step(browser, policy, first, 0, 0, "the up arrow key")
    browser.press("ArrowDown")
    browser.press("End")
    assert_shows_step(browser, policy, second, 1, second.length - 1, "the down arrow and End keys")
    # a link opens its episode and step
    browser.open(viewer.as_uri() + "#episode=2&step=2", 1280, 800)
    assert_shows_step(browser, policy, second, 1, 1, "opening a link")
    assert browser.errors() == []


def _overlap(a: dict, b: dict) -> bool:
    return min(a["right"], b["right"]) - max(a["left"], b["left"]) > 0.5 and (
        min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > 0.5
    )


def layout_problems(layout: dict) -> list[str]:
    """What is wrong with a layout :data:`READ_LAYOUT` read: overlaps, overflows, cramped headings, hidden bars."""
    problems = []
    if layout["scrollWidth"] > layout["width"]:
        problems.append(f"the page is {layout['scrollWidth']} px wide in a {layout['width']} px window")
    panels = layout["panels"]
    blocks = [(panel, block) for panel in panels for block in panel["blocks"]]
    for k, a in enumerate(panels):
        problems += [f"{a['name']} overlaps {b['name']}" for b in panels[k + 1 :] if _overlap(a, b)]
    for k, (_, a) in enumerate(blocks):
        problems += [f"{a['name']} overlaps {b['name']}" for _, b in blocks[k + 1 :] if _overlap(a, b)]
    for panel, block in blocks:
        if block["left"] < panel["left"] - 0.5 or block["right"] > panel["right"] + 0.5:
            problems.append(f"{block['name']} sticks out of {panel['name']} sideways")
        if block["bottom"] > panel["bottom"] + 0.5:
            problems.append(f"{block['name']} runs below the bottom of {panel['name']}")
    for panel in panels:
        for above, heading in zip(panel["blocks"], panel["blocks"][1:], strict=False):
            gap = heading["top"] - above["bottom"]
            if heading["heading"] and gap < HEADING_GAP:
                problems.append(f"{heading['name']} is {gap:.0f} px below {above['name']} (at least {HEADING_GAP})")
    cells = layout["cells"]
    for k, a in enumerate(cells):
        problems += [f"this step's {a['name']} overlaps {b['name']}" for b in cells[k + 1 :] if _overlap(a, b)]
    narrow = [w for w in layout["bars"] if w < BAR_WIDTH]
    if narrow:
        problems.append(f"probability bars {min(narrow):.0f} px wide (at least {BAR_WIDTH})")
    return problems


@needs_chromium
@pytest.mark.parametrize(("width", "height"), WINDOWS, ids=[f"{w}x{h}" for w, h in WINDOWS])
def test_panels_do_not_overlap(
    browser: Browser, records: list[EpisodeRecord], viewer: Path, width: int, height: int, tmp_path: Path
) -> None:
    browser.events.clear()
    browser.open(viewer.as_uri(), width, height)
    problems: dict[str, list[int]] = {}  # what is wrong: at which steps
    for index in range(records[0].length):
        if index:
            browser.press("ArrowRight")
        layout = browser.evaluate(READ_LAYOUT)
        assert len(layout["panels"]) == 4 and all(len(p["blocks"]) >= 2 for p in layout["panels"][1:]), layout
        for problem in layout_problems(layout):
            problems.setdefault(problem, []).append(index + 1)
    if problems:
        browser.press("Home")
        shot = browser.screenshot(tmp_path / f"viewer_{width}x{height}.png")
        report = "\n".join(f"  {problem} (steps {steps})" for problem, steps in problems.items())
        pytest.fail(f"layout at {width}x{height} (screenshot of step 1: {shot}):\n{report}")
    assert browser.errors() == []


def test_layout_problems_are_found() -> None:
    """The checks above fail where they should (a heading flush against a grid, overlapping boxes)."""

    def box(name: str, top: float, bottom: float, heading: bool = False) -> dict:
        return {"name": name, "heading": heading, "left": 10, "right": 300, "top": top, "bottom": bottom}

    panel = {**box("panel", 0, 500), "blocks": [box("grid", 10, 60), box("heading", 60, 75, heading=True)]}
    layout = {"width": 800, "scrollWidth": 800, "panels": [panel], "cells": [], "bars": [100.0]}
    assert layout_problems(layout) == ["heading is 0 px below grid (at least 8)"]
    panel["blocks"] = [box("grid", 10, 60), box("heading", 50, 65, heading=True)]
    assert "heading overlaps grid" not in layout_problems(layout)  # named in the order of the page
    assert "grid overlaps heading" in layout_problems(layout)
    layout["bars"] = [0.0]
    assert layout_problems(layout)[-1] == "probability bars 0 px wide (at least 40)"
