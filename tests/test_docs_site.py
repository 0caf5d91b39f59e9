"""The documentation site builds with no warning: ``mkdocs build --strict`` (``make docs``), into a scratch folder.

Strict mode fails on any warning: a link to a page or heading that is not there (mkdocs.yml's
``validation``), a docs page left out of the nav, a docstring griffe cannot read.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # a parent package is missing
        return True


#: mkdocs, mkdocs-material, mkdocstrings and its Python handler (the dev extra)
MISSING = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python") if _missing(m)]


@pytest.mark.skipif(
    bool(MISSING), reason=f"the docs site's packages are not installed ({', '.join(MISSING)}: the dev extra)"
)
def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert "WARNING" not in done.stderr, done.stderr[-5000:]
    site = tmp_path / "site"
    for page in ("index.html", "results.html", "studies/index.html", "api/llm_policy.html"):
        assert (site / page).is_file(), page
    assert "LLMPolicy" in (site / "api" / "llm_policy.html").read_text(encoding="utf-8")  # mkdocstrings rendered it
