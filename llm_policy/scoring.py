"""Scoring candidate actions as continuations of a prompt, sharing the prompt's computation.

A candidate's tokens are those the model reads after the prompt: the tokenization of
``prompt + candidate`` after the prompt's own tokens (see :mod:`llm_policy.tokenization`).
For each environment the prompt is run **once**, and every candidate action is scored
from it:

- decoder-only models, ``strategy="packed"`` (default): the prompt and the tokens of all
  its candidates form one sequence whose 4-D attention mask lets each candidate see the
  prompt and its own earlier tokens only, so one forward scores all candidates;
  prompts are batched in buckets of similar length so that little padding is computed;
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

import inspect
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import BaseModelOutput

from llm_policy.frozen_cache import DEFAULT_CACHE_BYTES, FrozenBlockCache
from llm_policy.models import ModelKind
from llm_policy.tokenization import ActionTokenizer

Normalization = Literal["sum", "token", "word"]
NORMALIZATIONS: tuple[str, ...] = ("sum", "token", "word")
Strategy = Literal["packed", "cache"]
STRATEGIES: tuple[str, ...] = ("packed", "cache")


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
    ) -> None:
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if max_padding < 0:
            raise ValueError(f"max_padding must be >= 0, got {max_padding}")
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
        self.tokens = ActionTokenizer(tokenizer, kind, eos_id=eos if score_eos else None, model_name=model_name)
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

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
        groups = self._buckets(
            [len(p) + sum(len(c) - 1 for c in cs) for p, cs in zip(prompt_ids, cand_ids, strict=True)]
        )
        parts = [self._score_packed([prompt_ids[i] for i in g], [cand_ids[i] for i in g]) for g in groups]
        order = np.array([i for g in groups for i in g])
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        index = torch.as_tensor(inverse, device=parts[0].hidden.device)
        scores = torch.cat([p.scores for p in parts])[index]
        num_actions = len(flat) // len(prompts)
        lengths = torch.tensor([len(c) for row in cand_ids for c in row], device=scores.device)
        scores = scores / self._normalizer(flat, lengths).view(len(prompts), num_actions)
        return Scores(scores=scores, hidden=torch.cat([p.hidden for p in parts])[index])

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
        return out.last_hidden_state[torch.arange(len(prompt_ids), device=ids.device), last].float()

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
            cache = out.past_key_values
            cache.batch_repeat_interleave(num_actions)
            inputs = targets[:, :-1]
            prompt_lengths = mask.sum(-1)[rows]
            cont = self.model(
                input_ids=inputs,
                attention_mask=torch.cat([mask[rows], target_mask[:, :-1]], dim=1),
                position_ids=prompt_lengths[:, None] + torch.arange(inputs.shape[1], device=ids.device),
                past_key_values=cache,
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

    def _score_packed(self, prompt_ids: list[list[int]], cand_ids: list[list[list[int]]]) -> Scores:
        """Prompts with all their candidates in one forward, under a 4-D attention mask.

        Returns summed (unnormalised) scores.
        """
        device = self._device()
        layout = self._layout(prompt_ids, cand_ids, self.pad_id)
        ids = torch.from_numpy(layout.ids).to(device, non_blocking=True)
        seg = torch.from_numpy(layout.segments).to(device, non_blocking=True)
        width = ids.shape[1]
        column = torch.arange(width, device=device)
        causal = column[:, None] >= column[None, :]
        query, key = seg[:, :, None], seg[:, None, :]
        # a prompt token sees the prompt up to itself, a candidate token the prompt and its own
        # earlier tokens; padding sees only itself (so no row of the softmax is empty)
        allowed = causal & ((key == 0) | (key == query)) & (query >= 0)
        allowed |= torch.eye(width, dtype=torch.bool, device=device) & (query < 0)
        dtype = self.model.get_input_embeddings().weight.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, torch.finfo(dtype).min)
        keep = torch.from_numpy(layout.keep).to(device, non_blocking=True)
        inputs = {
            "attention_mask": mask[:, None],
            "position_ids": torch.from_numpy(layout.positions).to(device, non_blocking=True),
            "output_hidden_states": True,
            "use_cache": False,
        }
        cache = self.lower_cache
        keys = (
            [
                (tuple(r[:n]), len(p), tuple(len(c) for c in cs))
                for r, n, p, cs in zip(layout.ids.tolist(), layout.lengths, prompt_ids, cand_ids, strict=True)
            ]
            if cache is not None
            else []
        )
        if cache is not None and cache.has_all(keys):
            logits, final = cache.run_upper(ids, keys, inputs, keep)
        else:
            keep_arg = {"logits_to_keep": keep} if self._keeps_logits else {}
            if cache is not None:
                with cache.capture(keys, layout.lengths):
                    out = self.model(input_ids=ids, **inputs, **keep_arg)
            else:
                out = self.model(input_ids=ids, **inputs, **keep_arg)
            final = out.hidden_states[-1]
            logits = out.logits
            if not keep_arg:
                logits = logits.gather(1, keep[:, :, None].expand(-1, -1, logits.shape[-1]))
        rows = torch.arange(len(prompt_ids), device=device)
        hidden = final[rows, torch.from_numpy(layout.last).to(device)].float()
        logps = logits.float().log_softmax(-1)  # (rows, kept positions, vocab)
        g_row, g_kept, g_cand, g_slot, g_token = (torch.from_numpy(x).to(device) for x in layout.gather)
        num_cands = sum(len(cs) for cs in cand_ids)
        longest = max(len(c) for cs in cand_ids for c in cs)
        token_logps = torch.zeros((num_cands, longest), dtype=torch.float32, device=device)
        token_logps[g_cand, g_slot] = logps[g_row, g_kept, g_token]
        return Scores(scores=token_logps.sum(-1).view(len(prompt_ids), -1), hidden=hidden)

    def _score_seq2seq(self, prompt_ids: list[list[int]], flat: list[str], cand_ids: list[list[int]]) -> Scores:
        num_prompts = len(prompt_ids)
        ids, mask = self._pad(prompt_ids, left=False)
        encoded = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
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
