"""Reusing the output of frozen lower blocks across PPO epochs (``finetune="top_k"``).

With only the top blocks trainable, the input of the first trained block is a fixed
function of the tokens.  PPO scores every rollout observation again in each update
epoch, so that input is recorded during the rollout's forward and the update runs only
the top blocks on it.  The top blocks run through the model's own modules, with the
arguments the model itself passes to its blocks (attention mask, position embeddings)
— captured by stopping a forward at its first block, which costs only the embedding
lookup and the mask construction.  No module of the model is replaced or re-wired.

Exactness is established at construction, not discovered mid-update: a model whose
blocks receive different arguments per layer (sliding-window layers), or whose logits
or final hidden state differ between the full forward and the cached path on a probe
input, gets no cache (with a warning).  Entries are dropped whenever a frozen weight
changes from outside the optimizer (``load_state_dict``, ``PPO.set_parameters``,
``PPO.load``, in-place edits), detected from the tensors' version counters.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from llm_policy.finetuning import final_norms

#: Default memory bound of the cache: a GLAM rollout (32 envs × 40 steps, 3-observation
#: prompts) of SmolLM2-135M needs ≈ 0.9 GiB of fp32 hidden states.
DEFAULT_CACHE_BYTES = 1 << 30

Key = tuple[Any, ...]


class _StopForward(Exception):
    """Raised by a pre-hook to end a forward once the blocks' arguments are known."""


class FrozenBlockCache:
    """Inputs of block ``split`` per packed row, an LRU bounded in bytes.

    :param model: the causal LM (with its lower blocks frozen).
    :param blocks: its stack of transformer blocks.
    :param split: index of the first trained block.
    :param max_bytes: memory the cached tensors may take.
    """

    def __init__(self, model: nn.Module, blocks: nn.ModuleList, split: int, max_bytes: int = DEFAULT_CACHE_BYTES):
        if not 0 < split < len(blocks):
            raise ValueError(f"split must be inside the {len(blocks)} blocks, got {split}")
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        self.model = model
        self.blocks = blocks
        self.split = split
        self.max_bytes = max_bytes
        self.entries: OrderedDict[Key, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        norms = final_norms(model, blocks)
        self.norm = norms[0] if len(norms) == 1 else None
        self.head = model.get_output_embeddings()
        upper = [*nn.ModuleList(list(blocks)[split:]).parameters(), *(self.norm.parameters() if self.norm else ())]
        upper_ids = {id(p) for p in upper}
        # everything below the first trained block: what the cached tensors depend on
        self._lower = [p for p in model.parameters() if id(p) not in upper_ids]
        self._lower += list(model.buffers())
        self._fingerprint = self._weights_fingerprint()
        self.disabled_reason: str | None = None  # the probe runs the cache as if enabled
        self.disabled_reason = self._unsupported_reason()

    @property
    def enabled(self) -> bool:
        return self.disabled_reason is None

    # --- validity -----------------------------------------------------------------------

    def _weights_fingerprint(self) -> tuple[tuple[int, int], ...]:
        return tuple((t.data_ptr(), t._version) for t in self._lower)

    def _check_weights(self) -> None:
        fingerprint = self._weights_fingerprint()
        if fingerprint != self._fingerprint:
            self.clear()
            self._fingerprint = fingerprint

    def _unsupported_reason(self) -> str | None:
        name = type(self.model).__name__
        lower_ids = {id(t) for t in self._lower}
        trained_lower = [n for n, p in self.model.named_parameters() if p.requires_grad and id(p) in lower_ids]
        if trained_lower:
            return f"{name} trains weights below block {self.split} ({trained_lower[0]}, ...)"
        if self.norm is None:
            return f"{name} has no single final normalisation layer after its blocks"
        if self.head is None:
            return f"{name} has no output embeddings"
        config = getattr(self.model, "config", None)
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        layer_types = getattr(config, "layer_types", None)
        if layer_types and len(set(layer_types)) > 1:
            return f"{name}'s blocks attend differently per layer ({sorted(set(layer_types))})"
        return self._probe()

    def _probe(self) -> str | None:
        """Compare the cached path with a full forward on a padded two-row batch."""
        device = next(self.model.parameters()).device
        vocab = self.head.weight.shape[0]
        generator = torch.Generator().manual_seed(0)
        lengths, width = [12, 9], 12
        ids = torch.randint(0, vocab, (2, width), generator=generator).to(device)
        allowed = torch.ones(width, width, dtype=torch.bool).tril().repeat(2, 1, 1)
        allowed[1, lengths[1] :, :] = False
        allowed[1, :, lengths[1] :] = False
        allowed[1, lengths[1] :, lengths[1] :] |= torch.eye(width - lengths[1], dtype=torch.bool)
        dtype = self.head.weight.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        inputs = {
            "attention_mask": mask[:, None].to(device),
            "position_ids": torch.arange(width).repeat(2, 1).to(device),
            "output_hidden_states": True,
            "use_cache": False,
        }
        keys: list[Key] = [("probe", i) for i in range(2)]
        keep = torch.tensor([[3, 7, 11], [2, 5, 8]], device=device)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                with self.capture(keys, lengths):
                    full = self.model(input_ids=ids, **inputs)
                logits, hidden = self.run_upper(ids, keys, inputs, keep)
        except Exception as err:
            return f"{type(self.model).__name__} cannot run its top blocks alone ({type(err).__name__}: {err})"
        finally:
            self.model.train(was_training)
            self.clear()
            self.hits = self.misses = 0
        rows = torch.arange(2, device=device)[:, None]
        expected_logits = full.logits[rows, keep].float()
        expected_hidden = full.hidden_states[-1].float()
        valid = torch.tensor([[True] * 12, [True] * 9 + [False] * 3], device=device)
        if not torch.allclose(expected_logits, logits.float(), atol=1e-4, rtol=1e-4) or not torch.allclose(
            expected_hidden[valid], hidden.float()[valid], atol=1e-4, rtol=1e-4
        ):
            return f"{type(self.model).__name__}'s top blocks alone do not reproduce its full forward"
        return None

    # --- entries ------------------------------------------------------------------------

    def __contains__(self, key: Key) -> bool:
        return key in self.entries

    def has_all(self, keys: list[Key]) -> bool:
        """Whether every row is cached (for the current frozen weights)."""
        if not self.enabled:
            return False
        self._check_weights()
        hit = all(k in self.entries for k in keys)
        if hit:
            self.hits += len(keys)
        else:
            self.misses += len(keys)
        return hit

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0

    def store(self, key: Key, value: torch.Tensor) -> None:
        """Keep ``value``, the input of block ``split`` for the row ``key``, for the current frozen
        weights (call after :meth:`has_all`, which checks them); the oldest entries go past ``max_bytes``."""
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= old.numel() * old.element_size()
        size = value.numel() * value.element_size()
        if size > self.max_bytes:
            return
        self.entries[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, dropped = self.entries.popitem(last=False)
            self.bytes -= dropped.numel() * dropped.element_size()

    @contextlib.contextmanager
    def capture(self, keys: list[Key], lengths: list[int]) -> Iterator[None]:
        """Record the input of block ``split`` for each row during a full forward."""
        if not self.enabled:
            yield
            return
        self._check_weights()

        def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            for key, length, row in zip(keys, lengths, hidden.detach(), strict=True):
                self.store(key, row[:length].clone())

        handle = self.blocks[self.split].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()

    # --- the cached path ----------------------------------------------------------------

    def _block_arguments(self, input_ids: torch.Tensor, inputs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        """The arguments the model passes to its blocks for this batch (mask, positions...)."""
        captured: dict[str, Any] = {}

        def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            captured["args"] = args[1:] if args else ()
            captured["kwargs"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            raise _StopForward

        handle = self.blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            with torch.no_grad():
                self.model(input_ids=input_ids, **inputs)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if "kwargs" not in captured:
            raise RuntimeError(f"{type(self.model).__name__}'s forward never reached its first block")
        return captured["args"], captured["kwargs"]

    def run_upper(
        self, input_ids: torch.Tensor, keys: list[Key], inputs: dict[str, Any], keep: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Logits at the ``keep`` positions of each row and the final hidden states.

        :param input_ids: the packed rows (for the blocks' arguments; only embedded).
        :param keys: the rows' cache keys, all cached.
        :param inputs: the keyword arguments of the full forward (mask, positions).
        :param keep: ``(rows, k)`` positions whose logits are needed, or ``None``.
        """
        args, kwargs = self._block_arguments(input_ids, inputs)
        cached = [self.entries[k] for k in keys]
        for k in keys:
            self.entries.move_to_end(k)
        hidden = cached[0].new_zeros((len(cached), input_ids.shape[1], cached[0].shape[-1]))
        for i, row in enumerate(cached):
            hidden[i, : row.shape[0]] = row
        for block in list(self.blocks)[self.split :]:
            out = block(hidden, *args, **kwargs)
            hidden = out[0] if isinstance(out, tuple) else out
        hidden = self.norm(hidden)
        # under a device_map the top blocks end on another device than the embeddings: answer
        # on the input's device, as the model's own (hooked) forward does
        if keep is None:
            return None, hidden.to(input_ids.device)
        rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None]
        logits = self.head(hidden[rows, keep.to(hidden.device)])
        return logits.to(input_ids.device), hidden.to(input_ids.device)
