"""Dependencies point one way: environments <- agents and algorithms <- experiment tooling <- studies;
no import cycles; the studies are not installed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGES = ("babyai_text", "llm_policy", "glam_baselines", "glam_algorithms", "glam_experiments", "studies")
#: what each package may import from ours
ALLOWED = {
    "babyai_text": set(),
    "llm_policy": {"babyai_text"},
    "glam_baselines": {"babyai_text"},
    "glam_algorithms": set(),
    "glam_experiments": {"babyai_text", "llm_policy", "glam_baselines", "glam_algorithms"},
    "studies": {"babyai_text", "llm_policy", "glam_baselines", "glam_algorithms", "glam_experiments"},
}
#: what ``pip install`` ships
INSTALLED = PACKAGES[:-1]
#: third-party imports of the environments package (its install_requires)
ENV_THIRD_PARTY = {"gymnasium", "minigrid", "numpy"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """Modules ``path`` imports (absolute names), at module level or anywhere."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # also what sits under module-level if/try blocks
        nodes = [
            n for stmt in tree.body for n in ast.walk(stmt) if not isinstance(stmt, ast.FunctionDef | ast.ClassDef)
        ]
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _longest_module(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_downstream(package: str) -> None:
    for name, path in _modules().items():
        if name.split(".")[0] != package:
            continue
        ours = {i.split(".")[0] for i in _imports(path, top_level_only=False)} & set(PACKAGES)
        assert ours - {package} <= ALLOWED[package], f"{name} imports {sorted(ours - {package} - ALLOWED[package])}"


def test_the_studies_are_not_installed() -> None:
    import configparser

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    include = config["options.packages.find"]["include"].split()
    assert sorted({name.split(".")[0] for name in include}) == sorted(INSTALLED)
    for folder in ("studies", "examples", "benchmarks", "tests"):
        assert not any(name.split(".")[0] == folder for name in include), folder


def test_algorithms_live_on_the_agents_floor() -> None:
    """Each training algorithm is a sub-package of ``glam_algorithms`` (sb3-contrib's shape), not tooling."""
    for algorithm in ("gigpo", "bc"):
        assert (REPO / "glam_algorithms" / algorithm / "__init__.py").is_file(), algorithm
    tooling = {p.stem for p in (REPO / "glam_experiments").glob("*.py")}
    assert not tooling & {"behaviour_cloning", "replay_prefill", "gigpo", "main_job", "recipe_study", "linear_probe"}


def test_environments_need_only_gymnasium_minigrid_numpy() -> None:
    stdlib = set(sys.stdlib_module_names)
    for name, path in _modules().items():
        if name.startswith("babyai_text"):
            third = {i.split(".")[0] for i in _imports(path, top_level_only=False)} - stdlib - set(PACKAGES)
            assert third <= ENV_THIRD_PARTY, f"{name} imports {sorted(third - ENV_THIRD_PARTY)}"


def test_no_import_cycle() -> None:
    modules = _modules()
    # an import's module is the longest of its names that is one of ours (``from a.b import c``
    # names a.b.c, a function or a module); parent packages initialise implicitly, no edge
    graph = {
        name: {_longest_module(i, modules) for i in _imports(path, top_level_only=True)} - {name, None}
        for name, path in modules.items()
    }
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(node) :], node]))
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*stack, node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])


@pytest.mark.parametrize(
    ("package", "absent"),
    [("babyai_text", ("torch", "transformers", "stable_baselines3")), ("glam_baselines", ("transformers", "peft"))],
)
def test_import_does_not_load(package: str, absent: tuple[str, ...]) -> None:
    code = f"import sys, {package}; print([m for m in {absent!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_test_scaffolding_is_not_in_the_packages() -> None:
    assert not (REPO / "llm_policy" / "tiny_models.py").exists()
    for name, path in _modules().items():
        assert "tests" not in {i.split(".")[0] for i in _imports(path, top_level_only=False)}, name


def test_the_version_has_one_home() -> None:
    import configparser
    from importlib.metadata import version

    import babyai_text

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    assert config["metadata"]["version"] == "attr: babyai_text.__version__"
    assert version("glam-rl") == babyai_text.__version__
    inits = [p for p in REPO.glob("*/__init__.py") if p.parent.name != "babyai_text"]
    others = [p for p in inits if "__version__ =" in p.read_text()]
    assert not others, f"a second version in {others}"


def test_tests_import_helpers_not_each_other() -> None:
    """Shared test code lives in ``tests.helpers``: no test module imports conftest or another test module."""
    for path in sorted((REPO / "tests").rglob("*.py")):
        imported = _imports(path, top_level_only=False) | {
            f"tests.{alias.name}"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module == "tests"
            for alias in node.names
        }
        bad = {i for i in imported if i.startswith(("tests.conftest", "tests.test_"))}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}: move what they share to tests.helpers"
