"""Scoring candidate actions as continuations of a prompt, sharing the prompt's computation.

A candidate's tokens are those the model reads after the prompt: the tokenization of
``prompt + candidate`` after the prompt's own tokens (see :mod:`llm_policy.tokenization`).
For each environment the prompt is run **once**, and every candidate action is scored
from it:

- decoder-only models, ``strategy="packed"`` (default): the prompt and the tokens of all
  its candidates form one sequence whose 4-D attention mask lets each candidate see the
  prompt and its own earlier tokens only, so one forward scores all candidates;
  prompts are batched in buckets of similar length so that little padding is computed;
  the token prefix common to all prompts of a batch (GLAM's action list, and the goal
  line where every prompt repeats it) runs **once** for the batch, and each row attends
  to its keys/values (see :meth:`ActionScorer.shared_prefix_length`);
- decoder-only models, ``strategy="cache"``: the prompt's keys/values are cached and
  repeated for the candidates, which run in a second, batched forward (for models
  whose attention does not accept a custom 4-D mask);
- encoder-decoder models: the encoder runs once per prompt and its output is shared
  by the candidates, decoded in one batch.

Logits are computed only where a candidate token is predicted; value-only calls run the
model without its output layer.

The score of a candidate ``a = (t_1, ..., t_n)`` is ``sum_i log p(t_i | prompt, t_<i)``
with ``log p`` a log-softmax over the vocabulary, optionally divided by ``n`` (``"token"``)
or by the number of words of the action (``"word"``).  No end-of-sequence token is
scored unless ``score_eos=True``: the candidates are whole action names that never
prefix one another, so the EOS term would only add the same kind of bias to all.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import BaseModelOutput

from llm_policy.frozen_cache import DEFAULT_CACHE_BYTES, FrozenBlockCache
from llm_policy.models import ModelKind
from llm_policy.tokenization import ActionTokenizer

Normalization = Literal["sum", "token", "word"]
NORMALIZATIONS: tuple[str, ...] = ("sum", "token", "word")
Strategy = Literal["packed", "cache"]
STRATEGIES: tuple[str, ...] = ("packed", "cache")

#: Fewest token computations that sharing a batch's common prefix must save, (prompts - 1)
#: x prefix length, for the prefix to run once.  Where no prompt is alone in its bucket to
#: provide it, the prefix runs in a forward of its own, which costs on the CPU what 30-40
#: tokens do in a large forward (a forward reads every weight: one token of SmolLM2-135M
#: takes 47 ms on the 2-core box of docs/benchmarks.md).  Measured there with GLAM's
#: 27-token header and prompts in one bucket, sharing is slower for 2 prompts, even for 3,
#: faster from 4: shared from 3 x 27 = 81 saved tokens, not from 2 x 27 = 54.
MIN_SHARED_TOKENS = 64


class PromptTooLongError(ValueError):
    """A prompt (plus its longest action) does not fit in the model's context."""


@dataclass
class Scores:
    """Output of :meth:`ActionScorer.score`.

    :param scores: ``(batch, actions)`` fp32 action scores (summed log-probabilities).
    :param hidden: ``(batch, hidden_size)`` fp32 hidden state for the value head: the last
        prompt token (decoder-only) or the first decoder position (encoder-decoder).
    """

    scores: torch.Tensor | None
    hidden: torch.Tensor


def context_length(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int | None:
    """Longest sequence the model accepts, if it declares one."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for attr in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else None


@dataclass
class _Packed:
    """Host-side layout of a bucket of packed rows (numpy; moved to the device at once)."""

    ids: np.ndarray  # (rows, width) token ids, padded
    segments: np.ndarray  # (rows, width) 0 = prompt, a + 1 = candidate a, -1 = padding
    positions: np.ndarray  # (rows, width) position ids
    keep: np.ndarray  # (rows, kept) positions whose logits are needed (last prompt token first)
    last: np.ndarray  # (rows,) last prompt position
    lengths: list[int]  # used length of each row
    # per candidate token: row, kept index, candidate, slot, token id
    gather: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class _Bucket:
    """A packed forward's results for one bucket of prompts."""

    # (rows, kept, vocab) logits at the kept positions, or (rows, kept, hidden) final hidden
    # states there when the output layer runs once for all buckets
    kept: torch.Tensor
    hidden: torch.Tensor  # (rows, hidden) fp32 value-head input
    layout: _Packed
    num_cands: int
    longest: int  # tokens of the longest candidate


@dataclass
class _Prefix:
    """The first ``length`` tokens of every prompt of a batch, run through the model once (on first use)."""

    length: int
    # per layer: (1, kv_heads, length, head_dim) keys and values
    kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    # (length, hidden) input of the first trained block, for the frozen-block cache
    lower: torch.Tensor | None = None


class ActionScorer:
    """Scores candidate continuations of prompts with a causal or encoder-decoder LM.

    :param model: the HF language model (possibly with LoRA layers injected).
    :param tokenizer: its tokenizer.
    :param kind: ``"causal"`` or ``"seq2seq"``.
    :param normalization: ``"sum"``, ``"token"`` (mean per token) or ``"word"`` (per word).
    :param score_eos: also score the end-of-sequence token after each action.
    :param strategy: how decoder-only models share the prompt (see the module docs).
    :param max_padding: prompts are batched together only while padding adds at most this
        fraction of computed tokens (0 = one forward per prompt length; 1 = one batch).
    :param model_name: named in errors.
    :param min_shared_tokens: run the token prefix common to a batch's prompts once when
        that saves at least this many token computations, (prompts - 1) x prefix length
        (``None``: never); ``"packed"`` decoder-only models only, and only those for which a
        probe at construction shows it exact (``sharing_disabled_reason`` says why not).
    :param special_tokens: add the tokenizer's special tokens (BOS) around each prompt;
        ``False`` where the prompt text holds them (a chat template's).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        kind: ModelKind,
        normalization: Normalization = "sum",
        score_eos: bool = False,
        strategy: Strategy = "packed",
        max_padding: float = 0.1,
        model_name: str = "",
        min_shared_tokens: int | None = MIN_SHARED_TOKENS,
        special_tokens: bool = True,
    ) -> None:
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if max_padding < 0:
            raise ValueError(f"max_padding must be >= 0, got {max_padding}")
        if min_shared_tokens is not None and min_shared_tokens < 1:
            raise ValueError(f"min_shared_tokens must be None or >= 1, got {min_shared_tokens}")
        if kind not in ("causal", "seq2seq"):
            raise ValueError(f"kind must be 'causal' or 'seq2seq', got {kind!r}")
        eos = tokenizer.eos_token_id
        if score_eos and eos is None:
            raise ValueError("score_eos=True but the tokenizer has no eos_token_id")
        self.strategy = strategy
        self.max_padding = max_padding
        self.lower_cache: FrozenBlockCache | None = None
        self.model = model
        self.tokenizer = tokenizer
        self.kind = kind
        self.normalization = normalization
        self.score_eos = score_eos
        self.max_context = context_length(model, tokenizer)
        self.eos_id = eos
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (eos if eos is not None else 0)
        self.tokens = ActionTokenizer(
            tokenizer, kind, eos_id=eos if score_eos else None, model_name=model_name, special_tokens=special_tokens
        )
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._base = getattr(model, "base_model", model)
        self.head = model.get_output_embeddings()
        self.separate_head = self._head_runs_separately()
        self.min_shared_tokens = min_shared_tokens
        self.sharing_disabled_reason = self._sharing_unsupported_reason()

    # --- tokenization -------------------------------------------------------------------

    def _check_lengths(self, prompts: list[list[int]], candidates: list[list[list[int]]]) -> None:
        if self.max_context is None:
            return
        for ids, cands in zip(prompts, candidates, strict=True):
            longest = max((len(c) for c in cands), default=0) if self.kind == "causal" else 0
            if len(ids) + longest > self.max_context:
                raise PromptTooLongError(
                    f"a prompt of {len(ids)} tokens"
                    + (f" plus an action of {longest} tokens" if longest else "")
                    + f" exceeds the model's context of {self.max_context} tokens; shorten the prompt "
                    "(a smaller history_length in the env, PromptTemplate(history=...)) or use a model "
                    "with a longer context. Prompts are never truncated."
                )

    def _normalizer(self, candidates: list[str], lengths: torch.Tensor) -> torch.Tensor:
        if self.normalization == "sum":
            return torch.ones_like(lengths, dtype=torch.float32)
        if self.normalization == "token":
            return lengths.float()
        words = [max(1, len(c.split())) for c in candidates]
        return torch.tensor(words, dtype=torch.float32, device=lengths.device)

    # --- scoring ------------------------------------------------------------------------

    def score(self, prompts: list[str], candidates: list[list[str]] | None) -> Scores:
        """Score every candidate of every prompt; ``candidates=None`` computes only ``hidden``.

        :param prompts: one prompt per environment.
        :param candidates: per environment, the same number of candidate strings.
        """
        if not prompts:
            raise ValueError("score needs at least one prompt")
        if candidates is not None and (len(candidates) != len(prompts) or len({len(c) for c in candidates}) != 1):
            raise ValueError("candidates must give the same number of actions for every prompt")
        tokenized = self.tokens.batch(prompts, list(candidates) if candidates is not None else [None] * len(prompts))
        prompt_ids = [t[0] for t in tokenized]
        cand_ids = [t[1] for t in tokenized]
        self._check_lengths(prompt_ids, cand_ids)
        flat = [c for row in candidates for c in row] if candidates is not None else []
        if self.kind == "seq2seq":
            return self._score_seq2seq(prompt_ids, flat, [c for row in cand_ids for c in row])
        if not flat:
            return Scores(scores=None, hidden=self._prompt_hidden(prompt_ids))
        if self.strategy == "cache":
            return self._score_causal(prompt_ids, flat, [c for row in cand_ids for c in row])
        shared = self.shared_prefix_length(prompt_ids)
        prefix = _Prefix(shared) if shared else None
        groups = self._buckets(
            [len(p) - shared + sum(len(c) - 1 for c in cs) for p, cs in zip(prompt_ids, cand_ids, strict=True)]
        )
        if prefix is not None:
            # a prompt alone in its bucket gains nothing from sharing, and its forward yields the
            # prefix's keys/values: run first, it spares the prefix a forward of its own
            groups.sort(key=len)
        parts = self._packed_scores(
            [self._run_packed([prompt_ids[i] for i in g], [cand_ids[i] for i in g], prefix) for g in groups]
        )
        order = np.array([i for g in groups for i in g])
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        index = torch.as_tensor(inverse, device=parts[0].hidden.device)
        scores = torch.cat([p.scores for p in parts])[index]
        num_actions = len(flat) // len(prompts)
        lengths = torch.tensor([len(c) for row in cand_ids for c in row], device=scores.device)
        scores = scores / self._normalizer(flat, lengths).view(len(prompts), num_actions)
        return Scores(scores=scores, hidden=torch.cat([p.hidden for p in parts])[index])

    def shared_prefix_length(self, prompt_ids: list[list[int]]) -> int:
        """Tokens at the start of every prompt that run once for the batch (0: none).

        The prefix is compared on token ids, so it is shared only where it is the same
        tokens in every prompt.  It stops before each prompt's last token, whose logits
        predict the actions' first tokens.  It is shared only when that saves at least
        ``min_shared_tokens`` token computations.

        :param prompt_ids: the batch's prompts, as token ids.
        """
        if self.sharing_disabled_reason is not None or self.min_shared_tokens is None or len(prompt_ids) < 2:
            return 0
        # HF's checkpointed blocks drop the cache while training, so rows could not see the prefix
        if self.model.training and any(getattr(m, "gradient_checkpointing", False) for m in self.model.modules()):
            return 0
        first = prompt_ids[0]
        length = min(len(ids) for ids in prompt_ids) - 1
        for ids in prompt_ids[1:]:
            same = 0
            while same < length and ids[same] == first[same]:
                same += 1
            length = same
        return length if (len(prompt_ids) - 1) * length >= self.min_shared_tokens else 0

    def _head_runs_separately(self) -> bool:
        """Whether the packed buckets' logits can come from one call of the output layer.

        On a CPU each call reads the layer's whole weight (the vocabulary), so one call for
        all buckets saves a read per bucket.  That needs the model's logits to be the output
        layer applied to its final hidden states (no scaling or capping after it): checked
        on a probe input.
        """
        if self.kind != "causal" or self.strategy != "packed" or self.head is None:
            return False
        vocab = self.model.get_input_embeddings().weight.shape[0]
        ids = torch.randint(0, vocab, (2, 8), generator=torch.Generator().manual_seed(0)).to(self._device())
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model(input_ids=ids, output_hidden_states=True)
                logits = self.head(out.hidden_states[-1]).to(out.logits.device)
        except Exception:
            return False
        finally:
            self.model.train(was_training)
        return torch.allclose(out.logits.float(), logits.float(), atol=1e-5, rtol=1e-5)

    def _sharing_unsupported_reason(self) -> str | None:
        if self.kind != "causal":
            return "an encoder-decoder model's encoder reads the whole prompt in both directions"
        if self.strategy != "packed":
            return f"the {self.strategy!r} strategy"
        config = self.model.config
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        layer_types = getattr(config, "layer_types", None) or ["full_attention"]
        if set(layer_types) != {"full_attention"} or getattr(config, "sliding_window", None) is not None:
            # a sliding-window layer's cache keeps only its window of the prefix
            return f"{type(self.model).__name__} has sliding-window or other non-full attention layers"
        return self._probe_sharing()

    def _probe_sharing(self) -> str | None:
        """Compare unshared scoring of two random prompts with a common start with both ways of sharing it:
        the prefix run alone, and the prefix taken from the forward of a prompt alone in its bucket."""
        vocab = self.model.get_input_embeddings().weight.shape[0]
        tokens = torch.randint(0, vocab, (24,), generator=torch.Generator().manual_seed(0)).tolist()
        prompts = [tokens[:12], tokens[:6] + tokens[12:21]]
        cands = [[tokens[21:23], tokens[23:]], [tokens[23:], tokens[20:23]]]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                plain, alone = self._packed_scores(
                    [self._run_packed(prompts, cands, None), self._run_packed(prompts, cands, _Prefix(6))]
                )
                provided = _Prefix(6)
                parts = self._packed_scores(
                    [self._run_packed(prompts[i : i + 1], cands[i : i + 1], provided) for i in range(2)]
                )
        except Exception as err:
            return f"{type(self.model).__name__} cannot attend to a shared prefix ({type(err).__name__}: {err})"
        finally:
            self.model.train(was_training)
        # a wrong position or mask changes log-probabilities by far more than rounding does
        atol = 1e-4 if self.model.get_input_embeddings().weight.dtype in (torch.float32, torch.float64) else 5e-2
        for shared in (alone, Scores(torch.cat([p.scores for p in parts]), torch.cat([p.hidden for p in parts]))):
            if not (
                torch.allclose(plain.scores, shared.scores, atol=atol, rtol=0)
                and torch.allclose(plain.hidden, shared.hidden, atol=atol, rtol=1e-3)
            ):
                return f"{type(self.model).__name__} with a shared prefix does not reproduce its scores"
        return None

    def cache_lower_blocks(
        self, blocks: torch.nn.ModuleList, trained: int, max_bytes: int = DEFAULT_CACHE_BYTES
    ) -> FrozenBlockCache:
        """Reuse the output of frozen lower blocks across calls (``"packed"`` strategy only).

        The cache checks at construction that it reproduces the model's full forward; a
        model for which it cannot gets no cache (``cache.disabled_reason`` says why).
        """
        if self.kind != "causal" or self.strategy != "packed":
            raise ValueError("caching lower blocks needs a decoder-only model and the 'packed' strategy")
        cache = FrozenBlockCache(self.model, blocks, len(blocks) - trained, max_bytes)
        self.lower_cache = cache if cache.enabled else None
        return cache

    def _buckets(self, lengths: list[int]) -> list[list[int]]:
        """Group row indices (by length) so that padding stays within ``max_padding``."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        groups: list[list[int]] = []
        total = 0
        for i in order:
            if groups:
                group = groups[-1]
                width = lengths[i]  # the longest so far, since sorted
                if width * (len(group) + 1) <= (1 + self.max_padding) * (total + lengths[i]):
                    group.append(i)
                    total += lengths[i]
                    continue
            groups.append([i])
            total = lengths[i]
        return groups

    def _device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def _pad(self, seqs: list[list[int]], left: bool) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            if left:
                ids[i, width - len(s) :] = s
                mask[i, width - len(s) :] = 1
            else:
                ids[i, : len(s)] = s
                mask[i, : len(s)] = 1
        device = self._device()
        return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)

    def _prompt_hidden(self, prompt_ids: list[list[int]]) -> torch.Tensor:
        """Final hidden state of each prompt's last token, without the output layer."""
        ids, mask = self._pad(prompt_ids, left=False)
        base = getattr(self.model, "base_model", self.model)
        positions = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        out = base(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)
        last = mask.sum(-1) - 1
        # under a device_map the base model answers on its last block's device (only the whole model's hook
        # brings outputs back to the input's)
        hidden = out.last_hidden_state.to(ids.device)
        return hidden[torch.arange(len(prompt_ids), device=ids.device), last].float()

    def _score_causal(self, prompt_ids: list[list[int]], flat: list[str], cand_ids: list[list[int]]) -> Scores:
        num_prompts = len(prompt_ids)
        ids, mask = self._pad(prompt_ids, left=True)  # left padding: every prompt ends at the same column
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        keep = {"logits_to_keep": 1} if self._keeps_logits else {}
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            output_hidden_states=True,
            **keep,
        )
        hidden = out.hidden_states[-1][:, -1].float()
        num_actions = len(flat) // num_prompts
        targets, target_mask = self._pad(cand_ids, left=False)
        rows = torch.arange(num_prompts, device=ids.device).repeat_interleave(num_actions)
        first = out.logits[:, -1].float().log_softmax(-1)  # predicts each candidate's first token
        token_logps = [first[rows, targets[:, 0]].unsqueeze(1)]
        if targets.shape[1] > 1:
            cache = out.cache
            cache.batch_repeat_interleave(num_actions)
            inputs = targets[:, :-1]
            prompt_lengths = mask.sum(-1)[rows]
            cont = self.model(
                input_ids=inputs,
                attention_mask=torch.cat([mask[rows], target_mask[:, :-1]], dim=1),
                position_ids=prompt_lengths[:, None] + torch.arange(inputs.shape[1], device=ids.device),
                cache=cache,
                use_cache=True,
            )
            rest = cont.logits.float().log_softmax(-1)
            token_logps.append(rest.gather(-1, targets[:, 1:, None]).squeeze(-1))
        summed = (torch.cat(token_logps, dim=1) * target_mask).sum(-1)
        scores = summed / self._normalizer(flat, target_mask.sum(-1))
        return Scores(scores=scores.view(num_prompts, -1), hidden=hidden)

    @staticmethod
    def _layout(prompt_ids: list[list[int]], cand_ids: list[list[list[int]]], pad_id: int) -> _Packed:
        """Rows ``prompt + candidate_1[:-1] + candidate_2[:-1] + ...``: a candidate's last token is only predicted."""
        rows, segments, positions, keeps = [], [], [], []
        g_row, g_kept, g_cand, g_slot, g_token = [], [], [], [], []
        cand_index = 0
        for b, (prompt, cands) in enumerate(zip(prompt_ids, cand_ids, strict=True)):
            n = len(prompt)
            row, seg, pos, keep = list(prompt), [0] * n, list(range(n)), [n - 1]
            for a, cand in enumerate(cands):
                m = len(cand) - 1
                start = len(row)
                # token j of the candidate is predicted at the prompt's last position (j = 0)
                # or at the candidate's own input j - 1, which is kept at index len(keep) + j - 1
                g_kept.extend([0, *range(len(keep), len(keep) + m)])
                g_row.extend([b] * (m + 1))
                g_cand.extend([cand_index] * (m + 1))
                g_slot.extend(range(m + 1))
                g_token.extend(cand)
                row.extend(cand[:-1])
                seg.extend([a + 1] * m)
                pos.extend(range(n, n + m))
                keep.extend(range(start, start + m))
                cand_index += 1
            rows.append(row)
            segments.append(seg)
            positions.append(pos)
            keeps.append(keep)
        width = max(len(r) for r in rows)
        kept = max(len(k) for k in keeps)
        ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        seg_a = np.full((len(rows), width), -1, dtype=np.int64)
        pos_a = np.zeros((len(rows), width), dtype=np.int64)
        keep_a = np.zeros((len(rows), kept), dtype=np.int64)
        for i, (row, seg, pos, keep) in enumerate(zip(rows, segments, positions, keeps, strict=True)):
            ids[i, : len(row)] = row
            seg_a[i, : len(row)] = seg
            pos_a[i, : len(row)] = pos
            keep_a[i, : len(keep)] = keep
            keep_a[i, len(keep) :] = keep[0]
        gather = tuple(np.asarray(x, dtype=np.int64) for x in (g_row, g_kept, g_cand, g_slot, g_token))
        last = np.array([len(p) - 1 for p in prompt_ids], dtype=np.int64)
        return _Packed(ids, seg_a, pos_a, keep_a, last, [len(r) for r in rows], gather)  # type: ignore[arg-type]

    def _packed_mask(self, segments: torch.Tensor, shared: int) -> torch.Tensor:
        """Additive ``(rows, 1, width, shared + width)`` mask of packed rows after ``shared`` prefix columns.

        A prompt token sees the prefix and the prompt up to itself, a candidate token the
        prefix, the prompt and its own earlier tokens; padding sees only itself (and the
        prefix), so no row of the softmax is empty.
        """
        rows, width = segments.shape
        device = segments.device
        column = torch.arange(width, device=device)
        causal = column[:, None] >= column[None, :]
        query, key = segments[:, :, None], segments[:, None, :]
        allowed = causal & ((key == 0) | (key == query)) & (query >= 0)
        allowed |= torch.eye(width, dtype=torch.bool, device=device) & (query < 0)
        if shared:
            allowed = torch.cat([allowed.new_ones((rows, width, shared)), allowed], dim=-1)
        dtype = self.model.get_input_embeddings().weight.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, torch.finfo(dtype).min)
        return mask[:, None]

    @contextlib.contextmanager
    def _lower_outputs(self) -> Iterator[list[torch.Tensor]]:
        """The inputs of the first trained block in the forwards run inside (when lower blocks are cached)."""
        seen: list[torch.Tensor] = []
        cache = self.lower_cache
        if cache is None:
            yield seen
            return

        def hook(_module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            seen.append((args[0] if args else kwargs["hidden_states"]).detach())

        handle = cache.blocks[cache.split].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            yield seen
        finally:
            handle.remove()

    @staticmethod
    def _keep_prefix(prefix: _Prefix, past: DynamicCache, lower: list[torch.Tensor]) -> None:
        """Keep the prefix's keys/values (and input of the first trained block) from a forward whose first row starts
        with it."""
        n = prefix.length
        prefix.kv = [(layer.keys[:1, :, :n], layer.values[:1, :, :n]) for layer in past.layers]
        prefix.lower = lower[0][0, :n] if lower else None

    def _run_shared(
        self, ids: torch.Tensor, segments: torch.Tensor, positions: torch.Tensor, keep: torch.Tensor, prefix: _Prefix
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Packed rows whose first ``prefix.length`` tokens are the same: outputs at ``keep`` (see :meth:`_forward`),
        final hidden states and (with the frozen-block cache) the input of the first trained block, after the prefix.

        The prefix runs once (batch 1; unless a bucket of one prompt already provided it) and
        every row attends to its keys/values, expanded over the batch (a view: autograd sums
        the rows' gradients into the one prefix).
        """
        shared = prefix.length
        # one embedding lookup of the whole rows, as the unshared forward does; the prefix is row 0's start
        embeds = self.model.get_input_embeddings()(ids)
        if not prefix.kv:
            with self._lower_outputs() as lower:
                out = self._base(inputs_embeds=embeds[:1, :shared], position_ids=positions[:1, :shared], use_cache=True)
            self._keep_prefix(prefix, out.cache, lower)
        rows = ids.shape[0]
        past = DynamicCache(
            ddp_cache_data=[(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prefix.kv]
        )
        with self._lower_outputs() as lower:
            kept, final, _ = self._forward(
                keep - shared,
                inputs_embeds=embeds[:, shared:],
                attention_mask=self._packed_mask(segments[:, shared:], shared),
                position_ids=positions[:, shared:],
                cache=past,
                use_cache=True,
            )
        return kept, final, lower[0] if lower else None

    def _forward(self, keep: torch.Tensor, **inputs: Any) -> tuple[torch.Tensor, torch.Tensor, DynamicCache | None]:
        """Run packed rows: their outputs at ``keep`` — logits, or final hidden states when the output layer runs
        once for all buckets (:attr:`separate_head`) —, their final hidden states and the model's cache."""
        if self.separate_head:
            out = self._base(**inputs)
            # under a device_map the base model answers on its last block's device
            final = out.last_hidden_state.to(keep.device)
            return torch.take_along_dim(final, keep[:, :, None], dim=1), final, out.cache
        keep_arg = {"logits_to_keep": keep} if self._keeps_logits else {}
        out = self.model(**inputs, output_hidden_states=True, **keep_arg)
        logits = out.logits
        if not keep_arg:
            logits = logits.gather(1, keep[:, :, None].expand(-1, -1, logits.shape[-1]))
        return logits, out.hidden_states[-1], out.cache

    def _run_packed(
        self, prompt_ids: list[list[int]], cand_ids: list[list[list[int]]], prefix: _Prefix | None
    ) -> _Bucket:
        """Prompts with all their candidates in one forward, under a 4-D attention mask.

        :param prefix: tokens at the start of every prompt run once for the whole batch, or ``None``.
            A bucket of one prompt runs unshared and, if the prefix has not run yet, provides it.
        """
        device = self._device()
        layout = self._layout(prompt_ids, cand_ids, self.pad_id)
        ids = torch.from_numpy(layout.ids).to(device, non_blocking=True)
        seg = torch.from_numpy(layout.segments).to(device, non_blocking=True)
        positions = torch.from_numpy(layout.positions).to(device, non_blocking=True)
        keep = torch.from_numpy(layout.keep).to(device, non_blocking=True)
        cache = self.lower_cache
        # keyed by whole rows, whether or not their prefix was shared when they were recorded
        keys = (
            [
                (tuple(r[:n]), len(p), tuple(len(c) for c in cs))
                for r, n, p, cs in zip(layout.ids.tolist(), layout.lengths, prompt_ids, cand_ids, strict=True)
            ]
            if cache is not None
            else []
        )
        shared = 0
        if cache is not None and cache.has_all(keys):
            inputs = {
                "attention_mask": self._packed_mask(seg, 0),
                "position_ids": positions,
                "output_hidden_states": True,
                "use_cache": False,
            }
            kept, final = cache.run_upper(ids, keys, inputs, None if self.separate_head else keep)
            if self.separate_head:
                kept = torch.take_along_dim(final, keep[:, :, None], dim=1)
        elif prefix is not None and (prefix.kv or len(prompt_ids) > 1):
            shared = prefix.length
            kept, final, lower = self._run_shared(ids, seg, positions, keep, prefix)
            if cache is not None and lower is not None and prefix.lower is not None:
                for key, length, row in zip(keys, layout.lengths, lower, strict=True):
                    cache.store(key, torch.cat([prefix.lower, row[: length - shared]]))
        else:
            provides = prefix is not None
            inputs = {
                "input_ids": ids,
                "attention_mask": self._packed_mask(seg, 0),
                "position_ids": positions,
                "use_cache": provides,
            }
            with (
                self._lower_outputs() as lower,
                cache.capture(keys, layout.lengths) if cache is not None else contextlib.nullcontext(),
            ):
                kept, final, past = self._forward(keep, **inputs)
            if provides:
                self._keep_prefix(prefix, past, lower)
        rows = torch.arange(len(prompt_ids), device=device)
        hidden = final[rows, torch.from_numpy(layout.last - shared).to(device)].float()
        return _Bucket(
            kept, hidden, layout, sum(len(cs) for cs in cand_ids), max(len(c) for cs in cand_ids for c in cs)
        )

    def _packed_scores(self, buckets: list[_Bucket]) -> list[Scores]:
        """Summed (unnormalised) scores and value-head inputs of each bucket."""
        device = self._device()
        kept = [b.kept for b in buckets]
        if self.separate_head:
            sizes = [k.shape[0] * k.shape[1] for k in kept]
            logits = self.head(torch.cat([k.flatten(0, 1) for k in kept])).to(device)
            kept = [part.view(*k.shape[:2], -1) for part, k in zip(logits.split(sizes), kept, strict=True)]
        out = []
        for bucket, logits in zip(buckets, kept, strict=True):
            logps = logits.float().log_softmax(-1)  # (rows, kept positions, vocab)
            g_row, g_kept, g_cand, g_slot, g_token = (torch.from_numpy(x).to(device) for x in bucket.layout.gather)
            token_logps = torch.zeros((bucket.num_cands, bucket.longest), dtype=torch.float32, device=device)
            token_logps[g_cand, g_slot] = logps[g_row, g_kept, g_token]
            out.append(Scores(scores=token_logps.sum(-1).view(len(bucket.hidden), -1), hidden=bucket.hidden))
        return out

    def _score_seq2seq(self, prompt_ids: list[list[int]], flat: list[str], cand_ids: list[list[int]]) -> Scores:
        num_prompts = len(prompt_ids)
        ids, mask = self._pad(prompt_ids, left=False)
        # on the ids' device: under a device_map the encoder answers on its last block's, and the whole
        # model's outputs (logits gathered with the ids-side targets below) follow the encoder output's device
        encoded = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state.to(ids.device)
        start = self.model.config.decoder_start_token_id
        if start is None:
            raise ValueError("the encoder-decoder model's config has no decoder_start_token_id")
        if not flat:
            decoder_input = torch.full((num_prompts, 1), start, dtype=torch.long, device=ids.device)
            decoder = self.model.get_decoder()
            out = decoder(input_ids=decoder_input, encoder_hidden_states=encoded, encoder_attention_mask=mask)
            return Scores(scores=None, hidden=out.last_hidden_state[:, 0].float())

        num_actions = len(flat) // num_prompts
        targets, target_mask = self._pad(cand_ids, left=False)
        starts = torch.full((targets.shape[0], 1), start, dtype=torch.long, device=ids.device)
        decoder_input = torch.cat([starts, targets[:, :-1]], dim=1)
        decoder_mask = torch.cat([torch.ones_like(starts), target_mask[:, :-1]], dim=1)
        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoded.repeat_interleave(num_actions, dim=0)),
            attention_mask=mask.repeat_interleave(num_actions, dim=0),
            decoder_input_ids=decoder_input,
            decoder_attention_mask=decoder_mask,
            output_hidden_states=True,
        )
        token_logps = out.logits.float().log_softmax(-1).gather(-1, targets[:, :, None]).squeeze(-1)
        hidden = out.decoder_hidden_states[-1][::num_actions, 0].float()
        summed = (token_logps * target_mask).sum(-1)
        scores = summed / self._normalizer(flat, target_mask.sum(-1))
        return Scores(scores=scores.view(num_prompts, -1), hidden=hidden)
