"""mkdocs hooks of the documentation site (mkdocs.yml's ``hooks``).

The docstrings are Sphinx-style, and mkdocstrings renders their cross-reference roles as they are
written (``:class:`GiGPO``` becomes ``:class:<code>GiGPO</code>``): this drops the role and, as
Sphinx does, the path before a ``~``-prefixed name (``:class:`~llm_policy.LLMPolicy``` reads
``LLMPolicy``).
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const|term):<code>(~?)([^<]*)</code>")


def _name(match: re.Match[str]) -> str:
    shown = match.group(2).rsplit(".", 1)[-1] if match.group(1) else match.group(2)
    return f"<code>{shown}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub(_name, html)
