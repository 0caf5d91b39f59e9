"""Episode recording, the HTML viewer and the GIF."""

from __future__ import annotations

import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glam_baselines import RandomAgent
from glam_experiments.recording import record_episodes
from glam_experiments.viewer import main as viewer_main
from glam_experiments.viewer import write_gif, write_html
from llm_policy import LLMPolicy
from tests.helpers.browser import MISSING, find_chromium

ENV = "BabyAI-Text-GoToS5N2-v0"


class _Page(HTMLParser):
    """The page's tags and the text of each script, with a strict parse (mismatched tags fail)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.scripts: dict[str, str] = {}
        self.sources: list[str] = []
        self.ids: set[str] = set()
        self._script: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if "id" in attributes:
            self.ids.add(str(attributes["id"]))
        for key in ("src", "href"):
            if attributes.get(key):
                self.sources.append(str(attributes[key]))
        if tag in ("meta", "img", "input", "br", "line", "polyline", "link"):
            return
        self.stack.append(tag)
        if tag == "script":
            self._script = str(attributes.get("id") or len(self.scripts))
            self.scripts[self._script] = ""

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()
        if tag == "script":
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self.scripts[self._script] += data


def parse(path: Path) -> tuple[_Page, dict]:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.stack == [], f"unclosed tags {page.stack}"
    return page, json.loads(page.scripts["episode-data"])


@pytest.fixture(scope="module")
def policy(tiny_llama: str) -> LLMPolicy:
    import gymnasium as gym

    env = gym.make(ENV)
    torch.manual_seed(0)
    return LLMPolicy(env.observation_space, env.action_space, lambda _: 0.0, model=tiny_llama)


def test_html_has_one_entry_per_step_with_the_policys_probabilities(policy: LLMPolicy, tmp_path: Path) -> None:
    records = record_episodes(policy, ENV, episodes=2, seed=3, agent_name="tiny", max_steps=12)
    path = write_html(records, tmp_path / "viewer.html")
    page, data = parse(path)
    assert len(data["episodes"]) == 2
    for record, episode in zip(records, data["episodes"], strict=True):
        assert episode["seed"] == record.seed and episode["length"] == len(episode["steps"]) == record.length
        assert episode["success"] == record.success
        for step, entry in zip(record.steps, episode["steps"], strict=True):
            probs = np.array(entry["probabilities"])
            assert probs.sum() == pytest.approx(1.0, abs=1e-6)
            # the distribution the policy gives that very observation
            tensor, _ = policy.obs_to_tensor(step.obs)
            expected = policy.action_probabilities(tensor)[0].double().numpy()
            np.testing.assert_allclose(probs, expected, atol=1e-6)
            assert entry["prompt"] == policy.prompts(tensor)[0][0]
            with torch.no_grad():
                value = float(policy.predict_values(tensor))
            assert entry["value"] == pytest.approx(value, abs=1e-5)
            assert entry["action_names"][entry["action"]] and 0 <= entry["action"] < 6
            assert entry["frame"].startswith("data:image/png;base64,")
            assert entry["mission"] == step.mission and entry["observation"] == step.observation
        returns = [s["return"] for s in episode["steps"]]
        assert returns == pytest.approx(np.cumsum([s["reward"] for s in episode["steps"]]).tolist())
    # self-contained: nothing is fetched from anywhere
    assert all(src.startswith("data:") for src in page.sources), page.sources
    assert {"frame", "slider", "bars", "episodes", "prev", "next", "prompt"} <= page.ids


def test_recorded_episode_replays_with_its_seed(policy: LLMPolicy) -> None:
    first = record_episodes(policy, ENV, seed=5, max_steps=6)[0]
    again = record_episodes(policy, ENV, seed=5, max_steps=6)[0]
    assert [s.action for s in first.steps] == [s.action for s in again.steps]
    assert [s.observation for s in first.steps] == [s.observation for s in again.steps]
    assert np.array_equal(first.steps[0].frame, again.steps[0].frame)


def test_gif_has_one_frame_per_step(tmp_path: Path) -> None:
    records = record_episodes(RandomAgent(__import__("gymnasium").spaces.Discrete(6), seed=0), ENV, 2, seed=1)
    path = write_gif(records, tmp_path / "episode.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == sum(r.length for r in records)
        assert gif.info["loop"] == 0


def test_bot_solves_and_probabilities_are_one_hot(tmp_path: Path) -> None:
    (record,) = record_episodes("bot", ENV, seed=2)
    assert record.success and record.episode_return > 0
    for step in record.steps:
        assert step.probabilities[step.action] == 1.0 and step.value is None and step.prompt is None
    # a fresh plan from each state gives the action the bot playing the episode took
    assert [s.bot_action for s in record.steps] == [s.action for s in record.steps]
    assert record.bot_agreement == 1.0
    _, data = parse(write_html([record], tmp_path / "bot.html"))
    assert data["episodes"][0]["success"] is True and data["episodes"][0]["bot_agreement"] == 1.0
    assert data["episodes"][0]["steps"][0]["bot_action"] == record.steps[0].action


def test_dqn_probabilities_are_epsilon_greedy(tmp_path: Path) -> None:
    import gymnasium as gym
    from stable_baselines3 import DQN

    from glam_baselines import DRRNPolicy

    model = DQN(DRRNPolicy, gym.make(ENV), buffer_size=10, exploration_final_eps=0.2)
    model.exploration_rate = 0.2
    (record,) = record_episodes(model, ENV, seed=0, max_steps=3)
    for step in record.steps:
        q = model.policy.q_net(model.policy.obs_to_tensor(step.obs)[0])[0].detach().numpy()
        expected = np.full(6, 0.2 / 6)
        expected[int(q.argmax())] += 0.8
        np.testing.assert_allclose(step.probabilities, expected, atol=1e-6)
        assert step.value == pytest.approx(float(q.max()), abs=1e-5)


def test_command_writes_viewer_and_gif(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "v.html"
    viewer_main(["--agent", "random", "--env", ENV, "--episodes", "2", "--out", str(out), "--gif"])
    _, data = parse(out)
    assert len(data["episodes"]) == 2
    with Image.open(out.with_suffix(".gif")) as gif:
        assert gif.n_frames == sum(e["length"] for e in data["episodes"])
    assert "seed 0" in capsys.readouterr().out


def test_script_end_tag_in_text_does_not_break_the_page(tmp_path: Path) -> None:
    (record,) = record_episodes("random", ENV, seed=0, max_steps=2)
    record.steps[0].prompt = "</script><b>not markup</b>"
    _, data = parse(write_html([record], tmp_path / "x.html", title="a <title> & more"))
    assert data["episodes"][0]["steps"][0]["prompt"] == "</script><b>not markup</b>"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="episodes"):
        record_episodes("random", ENV, episodes=0)
    with pytest.raises(ValueError, match="unknown agent"):
        record_episodes("no-such-model-anywhere", ENV)
    with pytest.raises(TypeError, match="cannot record"):
        record_episodes(object(), ENV)
    with pytest.raises(ValueError, match="at least one"):
        write_html([], "never.html")


@pytest.mark.skipif(find_chromium() is None, reason=MISSING)
def test_page_runs_in_a_real_browser(tmp_path: Path) -> None:
    records = record_episodes("random", ENV, episodes=2, seed=0, max_steps=5)
    path = write_html(records, tmp_path / "v.html")
    cmd = [str(find_chromium()), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"]
    cmd.append(f"{path.as_uri()}#episode=2&step=3")
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    # the script ran: the link's episode and step are shown, with one bar per action, the chosen one marked
    assert f"step 3 of {records[1].length}" in dom
    assert dom.count('class="bar-row') == 6 and dom.count('class="bar-row chosen"') == 1
    assert f"seed {records[1].seed}" in dom
