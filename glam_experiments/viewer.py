"""Episode viewer: one self-contained HTML file (and a GIF) of what an agent saw and decided.

    python -m glam_experiments.viewer --agent runs/.../model.zip --env BabyAI-Text-GoTo-v0 --episodes 3 --gif

The agent is any the evaluation accepts (a saved SB3 zip, a language-model name for a
zero-shot :class:`~llm_policy.LLMPolicy`, ``random``, ``bot``).  The HTML file opens
offline (no server, no CDN: frames are embedded PNGs, the script is inline).  Per step it
shows the minigrid frame, the mission, the text observation, the exact prompt of a
language-model agent, the probability of every action (the chosen one marked), the value
estimate (and its curve over the episode), the reward and the return so far; step with
the buttons, the slider or the arrow keys (up/down: episode), jump to an episode from the
list.  The GIF shows the frames with the chosen action and its probability as caption.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from glam_experiments.cli import ArgumentParser, require_at_least, run_command, summary
from glam_experiments.recording import EpisodeRecord, StepRecord, record_episodes

#: Milliseconds each GIF frame is shown.
GIF_FRAME_MS = 600


def _png_data_uri(frame: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _step_data(step: StepRecord) -> dict[str, Any]:
    return {
        "frame": _png_data_uri(step.frame),
        "mission": step.mission,
        "observation": step.observation,
        "prompt": step.prompt,
        "action_names": list(step.action_names),
        "probabilities": [float(p) for p in step.probabilities],
        "action": step.action,
        "bot_action": step.bot_action,
        "value": step.value,
        "reward": step.reward,
        "return": step.cumulative_return,
    }


def viewer_data(records: Sequence[EpisodeRecord], title: str) -> dict[str, Any]:
    """What the HTML page embeds (JSON-serialisable)."""
    return {
        "title": title,
        "episodes": [
            {
                "agent": r.agent,
                "env_id": r.env_id,
                "seed": r.seed,
                "success": r.success,
                "length": r.length,
                "return": r.episode_return,
                "bot_agreement": r.bot_agreement,
                "steps": [_step_data(s) for s in r.steps],
            }
            for r in records
        ],
    }


def write_html(records: Sequence[EpisodeRecord], path: str | Path, title: str | None = None) -> Path:
    """Write the viewer of ``records`` to ``path`` (one self-contained file).

    :param title: the page title (default: agent and env of the first episode).
    """
    if not records:
        raise ValueError("write_html needs at least one recorded episode")
    title = title or f"{records[0].agent} on {records[0].env_id}"
    data = json.dumps(viewer_data(records, title), ensure_ascii=False)
    # a "</script>" inside the data (a prompt could hold one) must not end the script element
    data = data.replace("</", "<\\/")
    page = (resources.files("glam_experiments") / "viewer_page.html").read_text(encoding="utf-8")
    page = page.replace("__TITLE__", html.escape(title)).replace("__DATA__", data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def caption_frame(step: StepRecord, index: int, width: int | None = None, episode: int | None = None) -> Image.Image:
    """The step's frame with the mission above and the chosen action and its probability below.

    :param index: the step's index in its episode.
    :param width: the caption's width (at least the frame's and 240 pixels).
    :param episode: the episode's index, named in the caption (``None``: not named).
    """
    frame = Image.fromarray(step.frame)
    width = max(width or frame.width, 240)
    font = _font(13)
    lines_top = [step.mission]
    prob = float(step.probabilities[step.action])
    where = f"episode {episode + 1}, step {index + 1}" if episode is not None else f"step {index + 1}"
    lines_bottom = [f"{where}: {step.action_names[step.action]} (p = {prob:.2f})"]
    if step.reward:
        lines_bottom.append(f"reward {step.reward:.2f}")
    line_h = 17
    top, bottom = line_h * len(lines_top) + 6, line_h * len(lines_bottom) + 6
    canvas = Image.new("RGB", (width, top + frame.height + bottom), (255, 255, 255))
    canvas.paste(frame, ((width - frame.width) // 2, top))
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(lines_top):
        draw.text((4, 3 + k * line_h), line, fill=(0, 0, 0), font=font)
    for k, line in enumerate(lines_bottom):
        draw.text((4, top + frame.height + 3 + k * line_h), line, fill=(0, 0, 0), font=font)
    return canvas


def gif_bytes(records: Sequence[EpisodeRecord], frame_ms: int = GIF_FRAME_MS) -> bytes:
    """The episodes' frames, one per step and captioned, as an animated GIF file's bytes."""
    steps = [s for r in records for s in r.steps]
    if not steps:
        raise ValueError("a GIF needs at least one recorded step")
    width = max(s.frame.shape[1] for s in steps)
    # the episode and step in every caption also keep Pillow from merging identical frames
    images = [
        caption_frame(s, i, width, episode=k if len(records) > 1 else None)
        for k, r in enumerate(records)
        for i, s in enumerate(r.steps)
    ]
    size = (max(im.width for im in images), max(im.height for im in images))
    frames = []
    for im in images:  # GIF frames share one canvas size
        canvas = Image.new("RGB", size, (255, 255, 255))
        canvas.paste(im, (0, 0))
        frames.append(canvas)
    buffer = io.BytesIO()
    # no optimisation and disposal 1: every step stays a full frame of its own
    frames[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=frame_ms,
        loop=0,
        optimize=False,
        disposal=1,
    )
    return buffer.getvalue()


def write_gif(records: Sequence[EpisodeRecord], path: str | Path, frame_ms: int = GIF_FRAME_MS) -> Path:
    """Write the episodes' frames, one per step, captioned with the chosen action and its probability."""
    path = Path(path)
    data = gif_bytes(records, frame_ms)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def main(argv: list[str] | None = None) -> None:
    run_command(_main, argv)


def _main(argv: list[str]) -> None:
    parser = ArgumentParser(description=summary(__doc__))
    parser.add_argument("--agent", required=True, help="saved .zip, random, bot, or a language-model name/directory")
    parser.add_argument("--env", required=True, help="a BabyAI-Text id, e.g. BabyAI-Text-GoTo-v0")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="episode k is seeded seed + k")
    parser.add_argument("--deterministic", action="store_true", help="most probable action instead of sampling")
    parser.add_argument("--max-steps", type=int, default=None, help="cut episodes after this many steps")
    parser.add_argument("--out", type=Path, default=Path("episode_viewer.html"))
    parser.add_argument("--gif", nargs="?", const="", default=None, help="also write a GIF (default: beside --out)")
    args = parser.parse_args(argv)
    require_at_least({"episodes": args.episodes, "max_steps": args.max_steps})
    records = record_episodes(
        args.agent, args.env, args.episodes, args.seed, deterministic=args.deterministic, max_steps=args.max_steps
    )
    print(f"wrote {write_html(records, args.out)}")
    if args.gif is not None:
        gif = Path(args.gif) if args.gif else args.out.with_suffix(".gif")
        print(f"wrote {write_gif(records, gif)}")
    for r in records:
        outcome = "success" if r.success else "failure"
        print(f"  seed {r.seed}: {outcome}, {r.length} steps, return {r.episode_return:.2f}")


if __name__ == "__main__":
    main()
