"""The scorer's slow reference: one plain forward per (prompt, candidate) (``tests/test_scoring.py``)."""

from __future__ import annotations

import torch

from babyai_text import decode_batch
from llm_policy import ActionScorer, PromptTemplate
from tests.helpers import text_batch


def reference_scores(loaded, prompts, candidates, normalization: str, score_eos: bool) -> torch.Tensor:
    """Independent, slow: tokenize prompt + action as one text, run the whole model, read full logits."""
    tok, model = loaded.tokenizer, loaded.model
    eos = [tok.eos_token_id] if score_eos else []
    rows = []
    for prompt, row in zip(prompts, candidates, strict=True):
        scores = []
        for cand in row:
            if loaded.kind == "causal":
                prompt_ids = tok(prompt).input_ids
                joint = tok(prompt + cand).input_ids
                assert joint[: len(prompt_ids)] == prompt_ids
                cand_ids = joint[len(prompt_ids) :] + eos
                logits = model(torch.tensor([prompt_ids + cand_ids])).logits[0]
                logp = torch.log_softmax(logits.double(), dim=-1)
                total = sum(logp[len(prompt_ids) - 1 + j, t] for j, t in enumerate(cand_ids))
            else:
                cand_ids = tok(cand.strip(), add_special_tokens=False).input_ids + eos
                decoder = torch.tensor([[model.config.decoder_start_token_id, *cand_ids[:-1]]])
                logits = model(input_ids=torch.tensor([tok(prompt).input_ids]), decoder_input_ids=decoder).logits[0]
                logp = torch.log_softmax(logits.double(), dim=-1)
                total = sum(logp[j, t] for j, t in enumerate(cand_ids))
            size = {"sum": 1, "token": len(cand_ids), "word": len(cand.split())}[normalization]
            scores.append(float(total) / size)
        rows.append(scores)
    return torch.tensor(rows, dtype=torch.float64)


def check_against_reference(loaded, scorer: ActionScorer, prompts: list[str], candidates: list[list[str]]) -> None:
    with torch.no_grad():
        out = scorer.score(prompts, candidates)
        ref = reference_scores(loaded, prompts, candidates, scorer.normalization, scorer.score_eos)
        hidden = [
            loaded.model(torch.tensor([loaded.tokenizer(p).input_ids]), output_hidden_states=True).hidden_states[-1][
                0, -1
            ]
            for p in prompts
        ]
    torch.testing.assert_close(out.scores.double(), ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.hidden, torch.stack(hidden), atol=1e-5, rtol=1e-4)


def prompts_and_candidates(env_id: str = "BabyAI-Text-MixedTrain-v0", n: int = 4):
    template = PromptTemplate()
    texts = decode_batch(text_batch(env_id, n=n, steps=3))
    return [template.render(t) for t in texts], [template.candidates(t) for t in texts]
