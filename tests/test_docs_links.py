"""Every local link of the docs leads somewhere: the file exists, and its ``#anchor`` is a heading there.

The pages are README.md, CHANGELOG.md and every ``docs/**/*.md``; a link is ``[text](path#anchor)`` or
``![alt](path)`` with a relative path (web links are not followed).  The code's references to the docs
(a ``docs/<page>.md`` or ``docs/<page>.md#<anchor>`` string in a ``.py`` or ``.sh`` file of the repository's
folders) are held to the same.  Anchors are GitHub's: the heading's text lowercased, every character but
letters, digits, spaces, hyphens and underscores dropped, spaces made hyphens, and a repeated heading's
anchor suffixed ``-1``, ``-2``... (the site's ``toc`` slugs are set to the same in mkdocs.yml).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: the folders whose .py and .sh files may name a docs page
CODE_FOLDERS = (
    "babyai_text",
    "llm_policy",
    "glam_baselines",
    "glam_algorithms",
    "glam_experiments",
    "studies",
    "examples",
    "benchmarks",
    "tests",
)
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
#: ``[text](target)`` and ``![alt](target)``, text with at most one level of nested brackets, an optional title
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_REF = re.compile(r"docs/[\w./-]+\.md(?:#[\w-]+)?")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading (before the ``-1`` of a repeated one)."""
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()  # inline HTML
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _prose_lines(path: Path) -> list[str]:
    """The page's lines outside fenced code blocks (a fenced block's lines become empty)."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return lines


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every heading anchor of a markdown page, repeated headings numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    out = set()
    for line in _prose_lines(path):
        match = _HEADING.match(line)
        if not match:
            continue
        anchor = github_anchor(match.group(2))
        if anchor in seen:
            seen[anchor] += 1
            out.add(f"{anchor}-{seen[anchor]}")
        else:
            seen[anchor] = 0
            out.add(anchor)
    return frozenset(out)


def page_links(path: Path) -> list[tuple[int, str]]:
    """``(line number, target)`` of the page's local links (no scheme), in page order; inline code is not a link."""
    targets = []
    for number, line in enumerate(_prose_lines(path), 1):
        line = re.sub(r"(`+).*?\1", "", line)
        for target in _LINK.findall(line):
            if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
                continue  # http:, https:, mailto:...
            targets.append((number, target))
    return targets


def code_references() -> list[tuple[str, str]]:
    """``(file:line, docs/<page>.md[#anchor])`` for every such string in the code folders' .py and .sh files."""
    refs = []
    for folder in CODE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".sh") and path.is_file():
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
                for number, line in enumerate(lines, 1):
                    refs += [(f"{path.relative_to(ROOT)}:{number}", ref) for ref in _CODE_REF.findall(line)]
    return refs


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def broken(base: Path, target: str, where: Path) -> str | None:
    """Why ``target`` (a path relative to ``base``, ``#anchor`` optional) leads nowhere, or ``None``."""
    path_part, _, anchor = target.partition("#")
    destination = (base / unquote(path_part)).resolve() if path_part else where
    if not destination.exists():
        return f"{path_part} does not exist"
    if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
        return f"{_shown(destination)} has no heading with anchor #{anchor}"
    return None


LINKS = [(page, number, target) for page in PAGES for number, target in page_links(page)]


@pytest.mark.parametrize(
    ("page", "line", "target"), LINKS, ids=[f"{_shown(page)}:{line}: {target}" for page, line, target in LINKS]
)
def test_a_docs_link_leads_to_a_file_and_heading(page: Path, line: int, target: str) -> None:
    why = broken(page.parent, target, page)
    assert why is None, f"{_shown(page)}:{line} links to {target}: {why}"


CODE_REFS = code_references()


@pytest.mark.parametrize(("file", "ref"), CODE_REFS, ids=[f"{file}: {ref}" for file, ref in CODE_REFS])
def test_the_code_names_docs_pages_and_headings_that_exist(file: str, ref: str) -> None:
    why = broken(ROOT, ref, ROOT / file.rpartition(":")[0])
    assert why is None, f"{file} names {ref}: {why}"


def test_the_anchors_are_githubs() -> None:
    assert github_anchor("GPU (`--device cuda`)") == "gpu---device-cuda"
    assert github_anchor("Action scoring (`benchmarks/scoring_throughput.py`)") == (
        "action-scoring-benchmarksscoring_throughputpy"
    )
    assert github_anchor("The main job with its before/after report") == "the-main-job-with-its-beforeafter-report"
    assert github_anchor("Reference curves: cloning + PPO — to 20,480 frames") == (
        "reference-curves-cloning--ppo--to-20480-frames"
    )
    assert github_anchor("See [the policy](policy.md) élan") == "see-the-policy-élan"


def test_repeated_headings_are_numbered(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Notes\n\n## Notes\n\n```bash\n# Notes\n```\n\n## Notes ##\n\n## Other\n")
    assert anchors(page) == {"notes", "notes-1", "notes-2", "other"}


def test_links_are_found_outside_code_only(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        '[a](a.md#x) and ![b](img/b.png "title") and [web](https://example.org) and `[c](c.md)`\n'
        "```\n[d](d.md)\n```\n[e [nested]](e.md)\n"
    )
    assert page_links(page) == [(1, "a.md#x"), (1, "img/b.png"), (5, "e.md")]
    (tmp_path / "a.md").write_text("# X\n")
    assert broken(tmp_path, "a.md#x", page) is None
    assert broken(tmp_path, "a.md#y", page) is not None
    assert broken(tmp_path, "e.md", page) == "e.md does not exist"
