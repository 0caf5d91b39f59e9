"""Scoring candidate actions as continuations of a prompt, sharing the prompt's computation.

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

Logits are computed only where a candidate token is predicted.

The score of a candidate ``a = (t_1, ..., t_n)`` is ``sum_i log p(t_i | prompt, t_<i)``
with ``log p`` a log-softmax over the vocabulary, optionally divided by ``n`` (``"token"``)
or by the number of words of the action (``"word"``).  No end-of-sequence token is
scored unless ``score_eos=True``: the candidates are whole action names that never
prefix one another, so the EOS term would only add the same kind of bias to all.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import BaseModelOutput

from llm_policy.models import ModelKind

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
    ) -> None:
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if max_padding < 0:
            raise ValueError(f"max_padding must be >= 0, got {max_padding}")
        self.strategy = strategy
        self.max_padding = max_padding
        self.lower_cache: LowerBlockCache | None = None
        if kind not in ("causal", "seq2seq"):
            raise ValueError(f"kind must be 'causal' or 'seq2seq', got {kind!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.kind = kind
        self.normalization = normalization
        self.score_eos = score_eos
        self.max_context = context_length(model, tokenizer)
        eos = tokenizer.eos_token_id
        if score_eos and eos is None:
            raise ValueError("score_eos=True but the tokenizer has no eos_token_id")
        self.eos_id = eos
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (eos if eos is not None else 0)
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._prompt_cache: dict[str, list[int]] = {}
        self._candidate_cache: dict[str, list[int]] = {}

    # --- tokenization -------------------------------------------------------------------

    def prompt_ids(self, prompt: str) -> list[int]:
        ids = self._prompt_cache.get(prompt)
        if ids is None:
            ids = list(self.tokenizer(prompt).input_ids)
            if len(self._prompt_cache) > 50_000:
                self._prompt_cache.clear()
            self._prompt_cache[prompt] = ids
        return ids

    def candidate_ids(self, candidate: str) -> list[int]:
        ids = self._candidate_cache.get(candidate)
        if ids is None:
            text = candidate if self.kind == "causal" else candidate.strip()
            ids = list(self.tokenizer(text, add_special_tokens=False).input_ids)
            if not ids:
                raise ValueError(f"action {candidate!r} tokenizes to nothing")
            if self.score_eos:
                ids.append(int(self.eos_id))
            self._candidate_cache[candidate] = ids
        return ids

    def _check_lengths(self, prompts: list[list[int]], candidates: list[list[int]]) -> None:
        if self.max_context is None:
            return
        longest_candidate = max(len(c) for c in candidates)
        for ids in prompts:
            needed = len(ids) + (longest_candidate if self.kind == "causal" else 0)
            if needed > self.max_context:
                raise PromptTooLongError(
                    f"a prompt of {len(ids)} tokens"
                    + (f" plus an action of {longest_candidate} tokens" if self.kind == "causal" else "")
                    + f" exceeds the model's context of {self.max_context} tokens; shorten the prompt "
                    "(a smaller history_length in the env, a shorter PromptTemplate) or use a model "
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
        if candidates is not None and (len(candidates) != len(prompts) or len({len(c) for c in candidates}) != 1):
            raise ValueError("candidates must give the same number of actions for every prompt")
        prompt_ids = [self.prompt_ids(p) for p in prompts]
        flat = [c for row in candidates for c in row] if candidates is not None else []
        cand_ids = [self.candidate_ids(c) for c in flat]
        self._check_lengths(prompt_ids, cand_ids or [[0]])
        if self.kind == "seq2seq":
            return self._score_seq2seq(prompt_ids, flat, cand_ids)
        if self.strategy == "cache":
            return self._score_causal(prompt_ids, flat, cand_ids)
        num_actions = len(flat) // len(prompts)
        groups = self._buckets([len(p) for p in prompt_ids])
        parts = [
            self._score_packed(
                [prompt_ids[i] for i in group],
                [flat[i * num_actions + a] for i in group for a in range(num_actions)],
                [cand_ids[i * num_actions + a] for i in group for a in range(num_actions)],
            )
            for group in groups
        ]
        order = torch.tensor([i for group in groups for i in group])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order))
        hidden = torch.cat([p.hidden for p in parts])[inverse.to(parts[0].hidden.device)]
        if not flat:
            return Scores(scores=None, hidden=hidden)
        scores = torch.cat([p.scores for p in parts])[inverse.to(parts[0].hidden.device)]
        return Scores(scores=scores, hidden=hidden)

    def cache_lower_blocks(self, blocks: torch.nn.ModuleList, trained: int, max_entries: int = 2048) -> None:
        """Reuse the output of frozen lower blocks across calls (``"packed"`` strategy only).

        With only the top ``trained`` blocks trainable, the input to the first of them is a
        fixed function of the tokens; PPO scores each rollout observation again in every
        epoch, so that input is cached when first computed (during the rollout) and the
        update runs only the top blocks.  The first reuse is checked against a full
        forward; a model for which they differ falls back to full forwards.
        """
        if self.kind != "causal" or self.strategy != "packed":
            raise ValueError("caching lower blocks needs a decoder-only model and the 'packed' strategy")
        self.lower_cache = LowerBlockCache(blocks, len(blocks) - trained, max_entries)

    def _buckets(self, lengths: list[int]) -> list[list[int]]:
        """Group prompt indices (by length) so that padding stays within ``max_padding``."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        groups: list[list[int]] = []
        for i in order:
            if groups:
                group = groups[-1]
                width = lengths[i]  # the longest so far, since sorted
                total = sum(lengths[j] for j in group) + lengths[i]
                if width * (len(group) + 1) <= (1 + self.max_padding) * total:
                    group.append(i)
                    continue
            groups.append([i])
        return groups

    def _device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def _pad(self, seqs: list[list[int]], left: bool) -> tuple[torch.Tensor, torch.Tensor]:
        device = self._device()
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            if left:
                ids[i, width - len(s) :] = torch.tensor(s)
                mask[i, width - len(s) :] = 1
            else:
                ids[i, : len(s)] = torch.tensor(s)
                mask[i, : len(s)] = 1
        return ids.to(device), mask.to(device)

    def _finish(self, token_logps: torch.Tensor, mask: torch.Tensor, flat: list[str], num_prompts: int) -> torch.Tensor:
        lengths = mask.sum(-1)
        summed = (token_logps * mask).sum(-1)
        return (summed / self._normalizer(flat, lengths)).view(num_prompts, -1)

    def _score_causal(self, prompt_ids: list[list[int]], flat: list[str], cand_ids: list[list[int]]) -> Scores:
        num_prompts = len(prompt_ids)
        ids, mask = self._pad(prompt_ids, left=True)  # left padding: every prompt ends at the same column
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        keep = {"logits_to_keep": 1} if self._keeps_logits else {}
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=bool(flat),
            output_hidden_states=True,
            **keep,
        )
        hidden = out.hidden_states[-1][:, -1].float()
        if not flat:
            return Scores(scores=None, hidden=hidden)

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
        scores = self._finish(torch.cat(token_logps, dim=1), target_mask, flat, num_prompts)
        return Scores(scores=scores, hidden=hidden)

    def _score_packed(self, prompt_ids: list[list[int]], flat: list[str], cand_ids: list[list[int]]) -> Scores:
        """Prompts with all their candidates in one forward, under a 4-D attention mask."""
        device = self._device()
        num_prompts = len(prompt_ids)
        num_actions = len(flat) // num_prompts
        rows, starts = [], []  # per prompt: token ids; per candidate: start of its inputs
        for b, prompt in enumerate(prompt_ids):
            row = list(prompt)
            for a in range(num_actions):
                starts.append(len(row))
                row.extend(cand_ids[b * num_actions + a][:-1])  # a candidate's last token is only predicted
            rows.append(row)
        width = max(len(r) for r in rows)
        ids = torch.full((num_prompts, width), self.pad_id, dtype=torch.long)
        positions = torch.zeros((num_prompts, width), dtype=torch.long)
        allowed = torch.zeros((num_prompts, width, width), dtype=torch.bool)
        keep: list[list[int]] = []  # per prompt: its last position, then each candidate's input positions
        for b, (prompt, row) in enumerate(zip(prompt_ids, rows, strict=True)):
            n = len(prompt)
            ids[b, : len(row)] = torch.tensor(row)
            positions[b, :n] = torch.arange(n)
            allowed[b, :n, :n] = torch.ones(n, n, dtype=torch.bool).tril()
            kept = [n - 1]
            for a in range(num_actions):
                start, m = starts[b * num_actions + a], len(cand_ids[b * num_actions + a]) - 1
                positions[b, start : start + m] = n + torch.arange(m)
                allowed[b, start : start + m, :n] = True
                allowed[b, start : start + m, start : start + m] = torch.ones(m, m, dtype=torch.bool).tril()
                kept.extend(range(start, start + m))
            allowed[b, len(row) :, len(row) :] = torch.eye(width - len(row), dtype=torch.bool)  # padding sees itself
            keep.append(kept)
        count = max(len(k) for k in keep)
        keep_t = torch.tensor([k + [k[0]] * (count - len(k)) for k in keep], device=device)
        dtype = self.model.get_input_embeddings().weight.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        keep_arg = {"logits_to_keep": keep_t} if self._keeps_logits and flat else {}
        inputs = {
            "attention_mask": mask[:, None].to(device),
            "position_ids": positions.to(device),
            "output_hidden_states": True,
            "use_cache": False,
            **keep_arg,
        }
        keys = [tuple(row) for row in rows]
        if self.lower_cache is not None and all(k in self.lower_cache for k in keys):
            out = self.lower_cache.run_upper(self.model, keys, width, inputs)
        elif self.lower_cache is not None:
            with self.lower_cache.capture(keys, [len(r) for r in rows]):
                out = self.model(input_ids=ids.to(device), **inputs)
        else:
            out = self.model(input_ids=ids.to(device), **inputs)
        last = torch.tensor([len(p) - 1 for p in prompt_ids], device=device)
        hidden = out.hidden_states[-1][torch.arange(num_prompts, device=device), last].float()
        if not flat:
            return Scores(scores=None, hidden=hidden)
        logits = (
            out.logits if keep_arg else out.logits.gather(1, keep_t[:, :, None].expand(-1, -1, out.logits.shape[-1]))
        )
        logps = logits.float().log_softmax(-1)  # (prompts, kept positions, vocab)
        targets, target_mask = self._pad(cand_ids, left=False)
        # One gather for all candidate tokens: token j of a candidate is predicted at the prompt's
        # last position (j = 0) or at the candidate's own input j - 1 (kept positions 1, 2, ...).
        rows, positions, cands, slots, tokens = [], [], [], [], []
        for b in range(num_prompts):
            offset = 1
            for a in range(num_actions):
                c = b * num_actions + a
                for j, token in enumerate(cand_ids[c]):
                    rows.append(b)
                    positions.append(0 if j == 0 else offset + j - 1)
                    cands.append(c)
                    slots.append(j)
                    tokens.append(token)
                offset += len(cand_ids[c]) - 1
        token_logps = torch.zeros(targets.shape, dtype=torch.float32, device=device)
        token_logps[cands, slots] = logps[rows, positions, tokens]
        return Scores(scores=self._finish(token_logps, target_mask, flat, num_prompts), hidden=hidden)

    def _score_seq2seq(self, prompt_ids: list[list[int]], flat: list[str], cand_ids: list[list[int]]) -> Scores:
        num_prompts = len(prompt_ids)
        ids, mask = self._pad(prompt_ids, left=False)
        encoded = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        start = self.model.config.decoder_start_token_id
        if start is None:
            raise ValueError("the encoder-decoder model's config has no decoder_start_token_id")
        if not flat:
            decoder_input = torch.full((num_prompts, 1), start, dtype=torch.long, device=ids.device)
            out = self.model(
                encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
                attention_mask=mask,
                decoder_input_ids=decoder_input,
                output_hidden_states=True,
            )
            return Scores(scores=None, hidden=out.decoder_hidden_states[-1][:, 0].float())

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
        return Scores(scores=self._finish(token_logps, target_mask, flat, num_prompts), hidden=hidden)


class LowerBlockCache:
    """Inputs of the first trained block, per packed row of tokens (an LRU of tensors).

    :param blocks: the model's stack of transformer blocks.
    :param split: index of the first trained block.
    :param max_entries: rows kept (each ``row length × hidden size`` floats).
    """

    def __init__(self, blocks: torch.nn.ModuleList, split: int, max_entries: int) -> None:
        if not 0 < split < len(blocks):
            raise ValueError(f"split must be inside the {len(blocks)} blocks, got {split}")
        self.blocks = blocks
        self.split = split
        self.max_entries = max_entries
        self.entries: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        self.verified = False
        self.enabled = True

    def __contains__(self, key: tuple[int, ...]) -> bool:
        return self.enabled and key in self.entries

    def clear(self) -> None:
        self.entries.clear()

    @contextlib.contextmanager
    def capture(self, keys: list[tuple[int, ...]], lengths: list[int]) -> Iterator[None]:
        """Record the input of block ``split`` during a full forward."""

        def hook(_module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            for key, length, row in zip(keys, lengths, hidden.detach(), strict=True):
                self.entries[key] = row[:length].clone()
                self.entries.move_to_end(key)
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)

        handle = self.blocks[self.split].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()

    def _swap_blocks(self, model: torch.nn.Module) -> tuple[torch.nn.Module, str]:
        for name, module in model.named_modules():
            if module is self.blocks:
                parent_name, _, attr = name.rpartition(".")
                return model.get_submodule(parent_name), attr
        raise RuntimeError("the cached block stack is not part of the model")

    def run_upper(self, model: torch.nn.Module, keys: list[tuple[int, ...]], width: int, inputs: dict[str, Any]) -> Any:
        """Forward from the cached inputs of block ``split`` through the top blocks only."""
        rows = [self.entries[k] for k in keys]
        for k in keys:
            self.entries.move_to_end(k)
        hidden = rows[0].new_zeros((len(rows), width, rows[0].shape[-1]))
        for i, row in enumerate(rows):
            hidden[i, : row.shape[0]] = row
        parent, attr = self._swap_blocks(model)
        setattr(parent, attr, torch.nn.ModuleList(list(self.blocks)[self.split :]))
        try:
            out = model(inputs_embeds=hidden, **inputs)
        finally:
            setattr(parent, attr, self.blocks)
        if not self.verified:
            self.verified = True
            with torch.no_grad():
                full = model(
                    input_ids=torch.tensor([list(k) + [0] * (width - len(k)) for k in keys], device=hidden.device),
                    **inputs,
                )
            if not torch.allclose(full.logits.float(), out.logits.float(), atol=1e-4, rtol=1e-3):
                warnings.warn(
                    f"{type(model).__name__} does not accept cached block inputs as input embeddings; "
                    "running full forwards instead",
                    stacklevel=2,
                )
                self.enabled = False
                self.clear()
                return full
        return out
