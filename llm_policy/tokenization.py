"""The tokens a language model reads for a prompt and for each candidate action after it.

A candidate's tokens are those that the tokenization of ``prompt + candidate`` gives
after the prompt's own tokens — not the candidate tokenized on its own.  The two differ
for many real tokenizers: a Llama-2 / Mistral-v0.1 style SentencePiece tokenizer
prepends a dummy ``▁`` to every text, so ``" turn left"`` alone starts with a spurious
``▁`` token the model never reads after a prompt; byte-level BPE tokenizers may attach
the leading space differently.  Special tokens follow the tokenizer's own post-processor,
as the model was trained: a beginning-of-sequence token where it adds one (Llama,
Gemma), none where it does not (GPT-2, Qwen, SmolLM).  Causal models read the prompt
and the action as one text, so an end-of-sequence token a post-processor appends is not
placed between them.  Encoder-decoder models read the prompt in the encoder (with the
post-processor's tokens, e.g. T5's ``</s>``) and the action alone in the decoder.
"""

from __future__ import annotations

from collections import OrderedDict

from transformers import PreTrainedTokenizerBase

from llm_policy.models import ModelKind


class TokenizationBoundaryError(ValueError):
    """The tokenizer merges the end of the prompt with the start of an action."""


class ActionTokenizer:
    """Token ids of prompts and of their candidate continuations, cached per prompt.

    :param tokenizer: the model's tokenizer.
    :param kind: ``"causal"`` (prompt and action are one text) or ``"seq2seq"`` (the
        prompt is the encoder's input, the action the decoder's).
    :param eos_id: appended to every candidate's tokens when given (scoring the end of
        the action).
    :param model_name: named in errors.
    :param max_cached: prompts whose tokenization is kept (PPO scores each rollout
        observation again in every epoch).
    :param special_tokens: add the post-processor's tokens around a causal model's prompt;
        ``False`` for a prompt whose text holds them (a chat template's, :mod:`llm_policy.chat`).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        kind: ModelKind,
        eos_id: int | None = None,
        model_name: str = "",
        max_cached: int = 65_536,
        special_tokens: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.kind = kind
        self.eos_id = eos_id
        self.model_name = model_name or getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        self.max_cached = max_cached
        self.prefix, self.suffix = self._special_tokens() if special_tokens else ([], [])
        self._cache: OrderedDict[tuple[str, tuple[str, ...]], tuple[list[int], list[list[int]]]] = OrderedDict()

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """What the post-processor adds before and after a text (e.g. BOS, T5's EOS)."""
        probe = "Goal of the agent: go to the red ball"
        full = list(self.tokenizer(probe).input_ids)
        plain = list(self.tokenizer(probe, add_special_tokens=False).input_ids)
        for start in range(len(full) - len(plain) + 1):
            if full[start : start + len(plain)] == plain:
                return full[:start], full[start + len(plain) :]
        raise TokenizationBoundaryError(
            f"the tokenizer of {self.model_name!r} changes a text's tokens when it adds its special tokens, "
            "so the tokens the model reads cannot be located; pass a tokenizer whose post-processor only "
            "adds tokens around the text"
        )

    def __call__(self, prompt: str, candidates: list[str] | None) -> tuple[list[int], list[list[int]]]:
        """``(prompt_ids, candidate_ids)``; ``candidates=None`` tokenizes the prompt only."""
        return self.batch([prompt], [candidates])[0]

    def batch(self, prompts: list[str], candidates: list[list[str] | None]) -> list[tuple[list[int], list[list[int]]]]:
        """:meth:`__call__` for many prompts, with one tokenizer call for all that are not cached."""
        keys = [(p, tuple(c) if c is not None else ()) for p, c in zip(prompts, candidates, strict=True)]
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if missing:
            for key, result in zip(missing, self._tokenize(missing), strict=True):
                self._cache[key] = result
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        out = []
        for key in keys:
            self._cache.move_to_end(key)
            out.append(self._cache[key])
        return out

    def _tokenize(self, keys: list[tuple[str, tuple[str, ...]]]) -> list[tuple[list[int], list[list[int]]]]:
        eos = [self.eos_id] if self.eos_id is not None else []
        if self.kind == "seq2seq":
            prompts = self.tokenizer([p for p, _ in keys]).input_ids
            texts = [c.strip() for _, cands in keys for c in cands]
            encoded = iter(self.tokenizer(texts, add_special_tokens=False).input_ids if texts else [])
            results = []
            for (_, cands), prompt_ids in zip(keys, prompts, strict=True):
                ids = [list(next(encoded)) + eos for _ in cands]
                for text, cand in zip(cands, ids, strict=True):
                    if len(cand) == len(eos):
                        raise ValueError(
                            f"action {text!r} tokenizes to nothing with the tokenizer of {self.model_name!r}"
                        )
                results.append((list(prompt_ids), ids))
            return results
        # one call for every prompt and every prompt + candidate text (the fast tokenizers batch in parallel)
        texts = [text for prompt, cands in keys for text in (prompt, *(prompt + c for c in cands))]
        encoded = iter(self.tokenizer(texts, add_special_tokens=False).input_ids)
        results = []
        for prompt, cands in keys:
            plain = list(next(encoded))
            ids = []
            for text in cands:
                joint = list(next(encoded))
                if joint[: len(plain)] != plain:
                    raise TokenizationBoundaryError(self._boundary_message(prompt, text, plain, joint))
                cand = joint[len(plain) :]
                if not cand:
                    raise ValueError(f"action {text!r} tokenizes to nothing with the tokenizer of {self.model_name!r}")
                ids.append(cand + eos)
            results.append((self.prefix + plain, ids))
        return results

    def _boundary_message(self, prompt: str, candidate: str, plain: list[int], joint: list[int]) -> str:
        common = 0
        while common < min(len(plain), len(joint)) and plain[common] == joint[common]:
            common += 1
        tokens = self.tokenizer.convert_ids_to_tokens
        return (
            f"the tokenizer of {self.model_name!r} merges the end of the prompt with the action {candidate!r}: "
            f"the prompt ends with tokens {tokens(plain[common:])} but prompt + action reads "
            f"{tokens(joint[common:])}, so the action's probability is not a continuation of the prompt's "
            f"tokens. Make the prompt end at a token boundary (e.g. PromptTemplate(action_prefix=...) or an "
            f"action line ending in a different character; prompt ends with {prompt[-20:]!r})."
        )
