"""Every shell command in README.md, docs/*.md and docs/studies/*.md runs as written, in the order a reader meets it.

Each command runs in a scratch folder that holds the repository's ``examples/``, ``studies/``,
``hyperparams/``, the committed logs of :data:`READ_ONLY_DOCS` and ``.venv`` (so
``.venv/bin/python`` and ``python`` both mean the test's interpreter), with its budget
flags made tiny (:data:`TINY`: the rest of the command is kept); a command the test cannot
run is listed in :data:`NOT_RUN` with why.  A new documented command that is in neither
fails the collection test, so the docs cannot drift from the code unnoticed.  Placeholders
such as ``runs/<run>/model.zip`` stand for the runs the earlier commands of the same page
wrote.  A page's commands run in chains (:func:`chains`): a command runs after the earlier
commands whose output it reads (runs, a Minari dataset, the zoo's logs), and commands that
share nothing are separate tests, which the workers share.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    "README.md",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("studies/*.md")),
]

#: commands a test cannot run, with why (matched with re.search)
NOT_RUN: dict[str, str] = {
    r"^make main": "the main job itself: run in full from a fresh clone before an issue is resolved "
    "(its command is also run below with tiny budgets)",
    r"^make test": "the test suite itself (this test is part of it)",
    r"babyai_text\.play .*--window": "needs a display (minigrid's window); without one it says so",
    r"^python benchmarks/": "measurements of minutes each: `make bench`; tests never time anything",
    r"recipe_study\.sh": "the recipe study: 15 CPU-minutes per arm and seed",
    r"bc_study\.sh": "the cloning study: about 2.5 hours on 2 cores",
    r"group_study\.sh": "the group-advantage study: about 20 CPU-minutes per arm and seed",
    r"group_study_report\.py": "reads the group-advantage study's runs, which only group_study.sh writes",
    r"gigpo_frames_study\.sh": "GiGPO's gain against frames: about 75 minutes on 2 cores",
    r"main_job_seeds\.sh": "the main job's RL stage with more seeds: about 20 minutes per seed on 2 cores",
    r"equal_frames\.sh": "LLM, NPAE and the baselines at 2,048 frames over seeds: about an hour "
    "(its steps are the training and evaluation commands run here)",
    r"reference_curves\.sh": "the reference curves: about 1 h 35 min per seed on 2 cores",
    r"curves runs/reference": "reads the reference run, which only reference_curves.sh writes",
    r"default_settings_run\.py": "the check of every LLMPolicy default: full fine-tuning of SmolLM2, "
    "minutes per update on a CPU (tests/test_examples.py runs the script on a tiny model)",
    r"recipe_study report": "reads the recipe study's results (runs/recipes), which only the study writes",
    r"--agent SmolLM2-135M-Instruct .*--suite balrog": "BALROG's 100-step episodes with two LLM agents: minutes "
    "even at one episode per task (the balrog suite itself runs here with random and bot)",
    r"--nproc_per_node=4": "four ranks of full fine-tuning on MixedTrain for 1.5M frames: GPU scale",
}

#: flags made tiny per program (value replaced where the command has the flag, else appended)
TINY: dict[str, dict[str, str]] = {
    "examples/train_llm_ppo.py": {
        "--total-timesteps": "16",
        "--n-envs": "2",
        "--group-size": "2",
        "--n-steps": "8",
        "--batch-size": "8",
        "--n-epochs": "1",
        "--grounding-states": "4",
    },
    "examples/train_symbolic_ppo.py": {"--total-timesteps": "64", "--n-envs": "2", "--n-steps": "32"},
    "examples/train_drrn.py": {"--total-timesteps": "64", "--n-envs": "2", "--learning-starts": "16"},
    "studies/zero_shot_prompts.py": {"--states": "3"},
    "glam_experiments.evaluate": {"--episodes": "1", "--envs": "1"},
    "glam_experiments.viewer": {"--episodes": "1", "--max-steps": "3"},
    "studies.linear_probe": {"--train-states": "12", "--test-states": "6"},
    "studies.main_job": {
        "--total-timesteps": "16",
        "--n-envs": "2",
        "--group-size": "2",
        "--n-steps": "8",
        "--batch-size": "8",
        "--n-epochs": "1",
        "--nproc": "1",
        "--episodes": "1",
        "--variant-episodes": "0",
        "--grounding-states": "3",
        "--eval-workers": "1",
        "--eval-envs": "1",
        "--viewer-episodes": "1",
        "--bc-episodes": "4",
    },
    "glam_experiments.demonstrations": {"--episodes": "2"},
    "examples/train_bc.py": {
        "--epochs": "1",
        "--episodes": "2",
        "--bc-batch-size": "4",
        "--ppo-timesteps": "16",
        "--n-envs": "2",
        "--group-size": "2",
        "--n-steps": "8",
        "--batch-size": "8",
        "--n-epochs": "1",
    },
    "rl_zoo3.train": {"-n": "16", "-params": "n_envs:2 n_steps:8 batch_size:8 n_epochs:1"},
    "rl_zoo3.enjoy": {"-n": "5"},
}
#: programs that need the data extra (Minari), absent from the lowest-versions install
NEEDS_MINARI = ("glam_experiments.demonstrations", "examples/train_bc.py", "studies.main_job")
#: what `make main` runs, made tiny like the rest (the README's other commands read its results/)
MAKE_MAIN = ".venv/bin/python -m studies.main_job"

#: what a command writes that a later one may read: (output, regex of the writer, regex of a reader);
#: a reader's ``<kind run>`` or ``*kind*`` names its writer's program when it can (:data:`RUN_KINDS`)
OUTPUTS: list[tuple[str, str, str]] = [
    ("runs", r"examples/train_|torchrun", r"runs/<|runs/\*|--resume runs/"),
    ("dataset", r"glam_experiments\.demonstrations", r"--dataset-id|--demonstrations"),
    ("zoo logs", r"rl_zoo3\.train", r"rl_zoo3\.enjoy"),
]
#: the run kind in a run's name → the program that writes it
RUN_KINDS = {"bc_llm_ppo": "train_bc.py", "symbolic": "train_symbolic_ppo.py", "drrn": "train_drrn.py"}


def _read_kinds(command: str) -> set[str]:
    """The kinds of run a command names (``runs/<symbolic run>``, ``runs/*drrn*``)."""
    return set(re.findall(r"runs/<(\w+) run>", command)) | set(re.findall(r"runs/\*(\w+)\*", command))


def _dependencies(commands: list[str]) -> list[set[int]]:
    """For each command, the earlier commands whose output it reads: for each output it reads, the
    latest writer (of each run kind it names, and one that saves a model where it reads ``model.zip``)."""
    deps: list[set[int]] = [set() for _ in commands]
    for i, command in enumerate(commands):
        for output, writer, reader in OUTPUTS:
            if not re.search(reader, command):
                continue
            writers = [j for j in range(i) if re.search(writer, commands[j])]
            if output == "runs" and re.search(r"runs/<[^>]+>/model\.zip", command):
                writers = [j for j in writers if "--save-model" in commands[j]]
            named = [[j for j in writers if RUN_KINDS.get(kind, "\0") in commands[j]] for kind in _read_kinds(command)]
            deps[i] |= {of_kind[-1] for of_kind in named if of_kind} or set(writers[-1:])
    return deps


def chains(commands: list[str]) -> list[list[str]]:
    """``commands`` as chains that each run alone: every command that no later one reads from, after
    the commands it reads from (and theirs), in page order.  A command several chains read from runs
    in each of them (recording 2 demonstrations, say): the chains share no files."""
    deps = _dependencies(commands)

    def closure(i: int) -> set[int]:
        return {i}.union(*(closure(j) for j in deps[i]))

    read = set().union(*deps)
    return [[commands[j] for j in sorted(closure(i))] for i in range(len(commands)) if i not in read]


def _page_chains() -> list[tuple[str, list[str]]]:
    out = []
    for page in PAGES:
        for k, chain in enumerate(chains([c for c in documented_commands(page) if _not_run(c) is None])):
            out.append((f"{page}#{k + 1}", chain))
    return out


def documented_commands(page: str) -> list[str]:
    """The shell commands of a page's ``bash``/``sh`` blocks, continuation lines joined, comments cut."""
    text = (ROOT / page).read_text()
    commands = []
    for block in re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", text, re.S | re.M):
        for command in re.sub(r"\\\n\s*", " ", block).splitlines():
            command = re.sub(r"\s+#.*$", "", command).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def _not_run(command: str) -> str | None:
    return next((why for pattern, why in NOT_RUN.items() if re.search(pattern, command)), None)


def _program(command: str) -> str | None:
    return next((program for program in TINY if program in command), None)


def tiny(command: str) -> str:
    """``command`` with its program's budget flags (:data:`TINY`) set to tiny values."""
    program = _program(command)
    if program is None:
        return command
    words = shlex.split(command)
    for flag, value in TINY[program].items():
        values = value.split()
        if flag in words:
            i = words.index(flag)
            end = i + 1
            while end < len(words) and not words[end].startswith("-"):
                end += 1
            words[i + 1 : end] = values
        else:
            words += [flag, *values]
    return " ".join(w if re.fullmatch(r"[\w@%+=:,./*-]+", w) else shlex.quote(w) for w in words)


def _fill_placeholders(command: str, cwd: Path) -> str:
    """``runs/<run>/model.zip`` (and ``<symbolic run>``, ``<run name>``...) → the newest run the page wrote
    that holds what follows the placeholder (``<kind run>``: whose name holds ``kind``)."""

    def newest(match: re.Match[str]) -> str:
        folder, name, rest = match.group(1), match.group(2), match.group(3) or ""
        kind = name.split()[0] if name.split()[0] != "run" else ""
        runs = sorted(
            (
                p
                for p in (cwd / folder).glob("*")
                if kind in p.name and p.is_dir() and (not rest or (p / rest.lstrip("/")).exists())
            ),
            key=os.path.getmtime,
        )
        if not runs:
            pytest.fail(f"{command!r}: no earlier command of the page wrote {folder}/<{name}>{rest}")
        return str(runs[-1].relative_to(cwd)) + rest

    return re.sub(r"([\w/]+)/<([^>]+)>(/[\w.]+)?", newest, command)


#: committed results that documented commands read (the reference curves' logs); only these of docs/
READ_ONLY_DOCS = ("docs/results/reference_curves",)


def _workspace(tmp_path: Path) -> Path:
    for name in ("examples", "studies", "hyperparams", "benchmarks"):
        (tmp_path / name).symlink_to(ROOT / name)
    for name in READ_ONLY_DOCS:
        if (ROOT / name).exists():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).symlink_to(ROOT / name)
    venv = Path(sys.executable).parent.parent
    (tmp_path / ".venv").symlink_to(venv if (venv / "bin").is_dir() else ROOT / ".venv")
    return tmp_path


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["MINARI_DATASETS_PATH"] = str(cwd / "minari")  # not the home folder
    done = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, (
        f"{command!r} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


def test_every_documented_command_is_run_or_says_why() -> None:
    unknown = [
        f"{page}: {c}"
        for page in PAGES
        for c in documented_commands(page)
        if _not_run(c) is None and _program(c) is None and not re.search(r"babyai_text\.play|curves|recipe_study", c)
    ]
    assert not unknown, "documented commands neither run here (TINY) nor listed in NOT_RUN:\n" + "\n".join(unknown)


def test_commands_run_after_what_they_read_and_apart_otherwise() -> None:
    train = ".venv/bin/python examples/train_llm_ppo.py --save-model"
    symbolic = ".venv/bin/python examples/train_symbolic_ppo.py --save-model"
    drrn = ".venv/bin/python examples/train_drrn.py --save-model"
    play = ".venv/bin/python -m babyai_text.play X"
    evaluate = "python -m glam_experiments.evaluate --agent runs/<symbolic run>/model.zip --agent runs/<drrn run>/a"
    assert chains([train, symbolic, play, drrn, evaluate]) == [[train], [play], [symbolic, drrn, evaluate]]
    resume = "python examples/train_llm_ppo.py --resume runs/<run name>"
    assert chains([train, symbolic, resume]) == [[train], [symbolic, resume]]  # the latest run
    torchrun = "torchrun --nproc_per_node=2 examples/train_llm_ppo.py --checkpoint-every 10"
    saved = "python -m glam_experiments.evaluate --agent runs/<run>/model.zip"
    assert chains([train, torchrun, saved]) == [[torchrun], [train, saved]]  # the latest run that saves a model
    enjoy = "python -m rl_zoo3.enjoy --algo ppo -f logs"
    assert chains(["python -m rl_zoo3.train", play, enjoy]) == [[play], ["python -m rl_zoo3.train", enjoy]]


def test_a_command_read_by_several_chains_runs_in_each() -> None:
    record = ".venv/bin/python -m glam_experiments.demonstrations --env-id X"
    clone = ".venv/bin/python examples/train_bc.py --dataset-id d --save-model"
    clone_ppo = ".venv/bin/python examples/train_bc.py --dataset-id d --ppo-timesteps 8 --save-model"
    evaluate = "python -m glam_experiments.evaluate --agent runs/<bc_llm_ppo run>/model.zip"
    drrn = "python examples/train_drrn.py --demonstrations d"
    assert chains([record, clone, clone_ppo, evaluate, drrn]) == [
        [record, clone],
        [record, clone_ppo, evaluate],
        [record, drrn],
    ]


def test_the_flag_rewrite_keeps_the_command() -> None:
    command = ".venv/bin/python examples/train_llm_ppo.py --total-timesteps 4096 --checkpoint-every 10"
    assert tiny(command) == (
        ".venv/bin/python examples/train_llm_ppo.py --total-timesteps 16 --checkpoint-every 10 --n-envs 2 "
        "--group-size 2 --n-steps 8 --batch-size 8 --n-epochs 1 --grounding-states 4"
    )
    assert "n_envs:2 n_steps:8" in tiny("python -m rl_zoo3.train --algo ppo -params n_envs:8")


@pytest.fixture(scope="session")
def main_job_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make main`'s ``results/``, made tiny, once for all the workers of the session (it takes minutes)."""
    from filelock import FileLock

    pytest.importorskip("minari", reason="the main job clones the bot's episodes: the data extra (Minari)")

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' shared folder
    workspace = root / "main_job"
    with FileLock(str(root / "main_job.lock")):
        if not (workspace / "done").exists():
            shutil.rmtree(workspace, ignore_errors=True)
            workspace.mkdir()
            _run(tiny(MAKE_MAIN), _workspace(workspace))
            (workspace / "done").touch()
    return workspace / "results"


@pytest.mark.slow
@pytest.mark.parametrize(("item", "commands"), _page_chains(), ids=[item for item, _ in _page_chains()])
def test_documented_commands_run(
    item: str, commands: list[str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if any(program in c for c in commands for program in NEEDS_MINARI):
        pytest.importorskip("minari", reason="the data extra (Minari) is not installed")
    cwd = _workspace(tmp_path)
    if any(re.search(r"(^|\s)results/training", c) for c in commands):
        # `make main`'s results, which the page's commands read (a copy: the commands may write beside them)
        shutil.copytree(request.getfixturevalue("main_job_results"), cwd / "results")
    for command in commands:
        done = _run(tiny(_fill_placeholders(command, cwd)), cwd)
        assert "Traceback" not in done.stderr, f"{command!r} printed a traceback:\n{done.stderr[-3000:]}"
