"""What a saved :class:`~llm_policy.LLMPolicy` holds: what was trained, and a reference to the rest.

peft's convention, for every fine-tuning mode that freezes weights: a LoRA policy saves its
adapters and value head, a top-k policy its trained blocks, final norm and value head, a
frozen one its value head; the frozen base weights are not written but named — the
``model`` constructor argument, which SB3 already keeps in the zip's data — together with a
content hash of those weights, :func:`frozen_weights_hash`.  Loading builds the policy
from the name as before (which loads the base weights), recomputes the hash and refuses,
with :class:`BaseWeightsMismatchError`, weights that are not those the agent was trained on.

The reference travels in the state dict's ``_metadata`` (torch's own per-module record,
which ``torch.save``, ``torch.load(weights_only=True)``, pickling and ``copy.deepcopy``
keep): the state dict's entries stay tensors of the policy's own names, so code that
iterates them (``{k: v.clone() ...}``) is unaffected.  A copy made with ``dict(...)`` or a
comprehension loses it; loading such a copy then asks for the frozen weights as any
``load_state_dict`` asks for missing keys.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

#: The key of the base-weights record in the state dict's ``_metadata`` entry of the policy.
BASE_RECORD_KEY = "llm_policy.base_weights"
#: Format of the record (for readers of saved files).
RECORD_FORMAT = 1


class BaseWeightsMismatchError(RuntimeError):
    """The base weights loaded under a saved agent's model name are not those it was trained on."""


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The bytes of ``tensor`` in memory order, on the CPU (a copy only where needed)."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def _digest(tensor: torch.Tensor) -> str:
    # hashlib releases the GIL on large buffers: tensors hash in parallel threads
    return hashlib.sha256(_tensor_bytes(tensor)).hexdigest()


def frozen_weights_hash(tensors: Mapping[str, torch.Tensor], max_workers: int | None = None) -> str:
    """SHA-256 content hash of named tensors: names, dtypes, shapes and bytes.

    Each tensor's bytes are hashed once (tied weights, views of one memory, are read once),
    in threads; the result is the SHA-256 of one line per name in sorted order,
    ``name dtype shape digest``, so it depends on neither the mapping's order nor the
    tensors' devices.

    :param tensors: name -> tensor (any device).
    :param max_workers: hashing threads (default: the CPU count, at most 8).
    :return: the hex digest.
    """
    names = sorted(tensors)
    # one job per distinct memory: tied embeddings are two names of one tensor
    jobs: dict[tuple[Any, ...], torch.Tensor] = {}
    keys = {}
    for name in names:
        t = tensors[name]
        key = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride()) if t.numel() else ("empty", name)
        keys[name] = key
        jobs.setdefault(key, t)
    workers = max_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        digests = dict(zip(jobs, pool.map(_digest, jobs.values()), strict=True))
    total = hashlib.sha256()
    for name in names:
        t = tensors[name]
        total.update(f"{name} {str(t.dtype).removeprefix('torch.')} {list(t.shape)} {digests[keys[name]]}\n".encode())
    return total.hexdigest()


def base_record(state_dict: Mapping[str, Any], prefix: str = "") -> dict[str, Any] | None:
    """The base-weights record of a state dict saved without its frozen weights, or ``None``.

    :param state_dict: a state dict (its ``_metadata``, if any, is read).
    :param prefix: the policy's prefix in it (``""`` for the policy's own state dict).
    """
    metadata = getattr(state_dict, "_metadata", None)
    if not isinstance(metadata, Mapping):
        return None
    record = (metadata.get(prefix[:-1] if prefix else "") or {}).get(BASE_RECORD_KEY)
    return record if isinstance(record, dict) else None


def set_base_record(state_dict: Mapping[str, Any], record: dict[str, Any], prefix: str = "") -> bool:
    """Attach ``record`` to ``state_dict``'s metadata; ``False`` where it has none to attach to.

    :param state_dict: a state dict made by ``nn.Module.state_dict`` (which gives it ``_metadata``).
    :param record: what :func:`base_record` will return.
    :param prefix: the policy's prefix in it.
    """
    metadata = getattr(state_dict, "_metadata", None)
    if not isinstance(metadata, dict):
        return False
    local = metadata.setdefault(prefix[:-1] if prefix else "", {})
    local[BASE_RECORD_KEY] = dict(record)
    return True


def mismatch_message(saved: Mapping[str, Any], model_name: str, current_hash: str, n_tensors: int) -> str:
    """The explanation of :class:`BaseWeightsMismatchError`: the model, both hashes and the fix."""
    same_name = saved.get("model") == model_name
    loaded = f"the same name {model_name!r}" if same_name else f"{model_name!r}"
    return (
        f"the saved agent holds only its trained weights; it was trained on base model {saved.get('model')!r}, "
        f"whose {saved.get('tensors')} frozen tensors hash to sha256 {saved.get('sha256')}, but the {n_tensors} "
        f"frozen tensors loaded now from {loaded} hash to {current_hash}. The model's files changed since the "
        "agent was saved (re-converted or updated weights, another revision of a hub id, another directory at "
        "that path), so the agent's adapters or blocks would run on other weights. Load it with the weights it "
        "was trained on: restore those files, or point at a copy of them with "
        "PPO.load(path, custom_objects={'policy_kwargs': {...saved policy_kwargs..., 'model': '<directory>'}})"
    )


__all__ = [
    "BASE_RECORD_KEY",
    "BaseWeightsMismatchError",
    "base_record",
    "frozen_weights_hash",
    "mismatch_message",
    "set_base_record",
]
