"""Action scoring throughput: shared-prefix scoring vs the naive method, in one run.

SmolLM2-135M (the built-in default), GLAM prompts from ``BabyAI-Text-MixedTrain-v0``
after a few steps (≈150-315 tokens with the 3-observation history), 8 envs × 6 actions,
CPU.  Ours is the library's default scorer: each prompt runs once with its candidates
packed after it, and the token prefix common to the batch (the action line and "Goal of
the agent:") runs once for all envs; it is also timed with that batch prefix not shared
(``min_shared_tokens=None``).  The naive method concatenates prompt and action for every
candidate and runs the whole model with full logits over the vocabulary (one forward per
env, its 6 candidates batched).  All must give the same scores.  FLOPs are counted with
``torch.utils.flop_counter`` (matrix products; attention is not counted) and set
against a fp32 matmul peak measured in this run.

    python benchmarks/scoring_throughput.py [--repeats 3] [--model SmolLM2-135M-Instruct]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import babyai_text
from llm_policy import ActionScorer, PromptTemplate, load_language_model


def glam_prompts(n_envs: int) -> tuple[list[str], list[list[str]]]:
    vec = gym.vector.SyncVectorEnv([lambda: gym.make("BabyAI-Text-MixedTrain-v0")] * n_envs)
    obs, _ = vec.reset(seed=list(range(n_envs)))
    for action in (0, 2, 1):
        obs, *_ = vec.step(np.full(n_envs, action))
    template = PromptTemplate()
    texts = babyai_text.decode_batch(obs)
    return [template.render(t) for t in texts], [template.candidates(t) for t in texts]


def naive_scores(loaded, prompts: list[str], candidates: list[list[str]]) -> torch.Tensor:
    """Per env: 6 full sequences (prompt + action), full logits, log-softmax everywhere."""
    tok, model = loaded.tokenizer, loaded.model
    rows = []
    for prompt, cands in zip(prompts, candidates, strict=True):
        prompt_ids = tok(prompt).input_ids
        seqs = [prompt_ids + tok(c, add_special_tokens=False).input_ids for c in cands]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), tok.pad_token_id or 0)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        logp = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        row = []
        for i, s in enumerate(seqs):
            positions = torch.arange(len(prompt_ids) - 1, len(s) - 1)
            row.append(logp[i, positions, torch.tensor(s[len(prompt_ids) :])].sum())
        rows.append(torch.stack(row))
    return torch.stack(rows)


def timed(methods: dict[str, Callable[[], torch.Tensor]], repeats: int) -> dict[str, tuple[float, torch.Tensor]]:
    """Median seconds and output of each method, the methods taking turns (so that they share the load)."""
    outputs = {name: fn() for name, fn in methods.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), outputs[name]) for name in methods}


def flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    loaded = load_language_model(args.model)
    loaded.model.eval()
    prompts, candidates = glam_prompts(args.envs)
    lengths = [len(loaded.tokenizer(p).input_ids) for p in prompts]
    scorer = ActionScorer(loaded.model, loaded.tokenizer, loaded.kind)
    unshared = ActionScorer(loaded.model, loaded.tokenizer, loaded.kind, min_shared_tokens=None)
    prompt_ids = [ids for ids, _ in scorer.tokens.batch(prompts, candidates)]
    methods: dict[str, Callable[[], torch.Tensor]] = {
        "ours (batch prefix shared)": lambda: scorer.score(prompts, candidates).scores,
        "ours, batch prefix not shared": lambda: unshared.score(prompts, candidates).scores,
        "naive": lambda: naive_scores(loaded, prompts, candidates),
    }
    with torch.no_grad():
        results = timed(methods, args.repeats)
        counts = {name: flops(fn) for name, fn in methods.items()}
    peak = matmul_peak()
    naive = results["naive"][1].double()
    max_diff = max((out.double() - naive).abs().max().item() for _, out in results.values())

    print(
        f"model {args.model}, {args.envs} envs x {len(candidates[0])} actions, torch threads {torch.get_num_threads()}"
    )
    print(f"prompt tokens: mean {statistics.mean(lengths):.0f}, min {min(lengths)}, max {max(lengths)}")
    print(f"prefix common to the batch, run once: {scorer.shared_prefix_length(prompt_ids)} tokens")
    print(f"max |ours - naive| score difference: {max_diff:.2e}")
    print()
    print("| method | s per batch | env-steps scored/s | GFLOP per batch | achieved GFLOP/s | % of matmul peak |")
    print("|---|---|---|---|---|---|")
    for name, (seconds, _) in results.items():
        rate = counts[name] / seconds / 1e9
        cells = [name, f"{seconds:.2f}", f"{args.envs / seconds:.2f}", f"{counts[name] / 1e9:.0f}", f"{rate:.1f}"]
        print("| " + " | ".join([*cells, f"{100 * rate / peak:.0f} %"]) + " |")
    print()
    naive_t = results["naive"][0]
    ours_t, unshared_t = results["ours (batch prefix shared)"][0], results["ours, batch prefix not shared"][0]
    print(f"speed-up ours/naive: {naive_t / ours_t:.1f}x (batch prefix not shared: {naive_t / unshared_t:.1f}x)")
    print(f"fp32 matmul peak (2048^3, this run): {peak:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
