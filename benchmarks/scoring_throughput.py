"""Action scoring throughput: shared-prefix scoring vs the naive method, in one run.

SmolLM2-135M (the built-in default), GLAM prompts from ``BabyAI-Text-MixedTrain-v0``
after a few steps (≈150-315 tokens with the 3-observation history), 8 envs × 6 actions
(``--envs`` takes several counts: one table each).  Ours is the library's default scorer:
each prompt runs once with its candidates packed after it, and the token prefix common to
the batch (the action line and "Goal of the agent:") runs once for all envs; it is also
timed with that batch prefix not shared (``min_shared_tokens=None``).  The naive method
concatenates prompt and action for every candidate and runs the whole model with full
logits over the vocabulary (one forward per env, its 6 candidates batched).  All must give
the same scores (to rounding: bf16 on CUDA).  Tokenizations are cached after the warm-up,
as in PPO's update epochs.  FLOPs are counted with ``torch.utils.flop_counter`` (matrix
products; attention is not counted) and set against a matmul peak measured in this run
(``benchmarks/_timing.py``).  ``--device cuda``: the GPU under bf16 autocast, with each
method's peak GPU memory.

    python benchmarks/scoring_throughput.py [--repeats 3] [--model SmolLM2-135M-Instruct] [--envs 8]
        [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from _timing import (
    add_device_argument,
    autocast,
    count_flops,
    describe,
    matmul_peak,
    peak_gpu_gb,
    peak_label,
    peak_rss_gb,
    reset_peak_memory,
    select_device,
    timed,
)

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
    device = model.get_input_embeddings().weight.device
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
        logp = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().log_softmax(-1)
        row = []
        for i, s in enumerate(seqs):
            positions = torch.arange(len(prompt_ids) - 1, len(s) - 1, device=device)
            row.append(logp[i, positions, torch.tensor(s[len(prompt_ids) :], device=device)].sum())
        rows.append(torch.stack(row))
    return torch.stack(rows)


def measure(loaded, scorers: tuple[ActionScorer, ActionScorer], n_envs: int, repeats: int, peak: float) -> None:
    """Time, count and print the three methods on ``n_envs`` prompts."""
    scorer, unshared = scorers
    device = loaded.model.get_input_embeddings().weight.device
    prompts, candidates = glam_prompts(n_envs)
    lengths = [len(loaded.tokenizer(p).input_ids) for p in prompts]
    prompt_ids = [ids for ids, _ in scorer.tokens.batch(prompts, candidates)]
    methods: dict[str, Callable[[], torch.Tensor]] = {
        "ours (batch prefix shared)": lambda: scorer.score(prompts, candidates).scores,
        "ours, batch prefix not shared": lambda: unshared.score(prompts, candidates).scores,
        "naive": lambda: naive_scores(loaded, prompts, candidates),
    }
    counts, memory = {}, {}
    with torch.no_grad(), autocast(device):
        results = timed(methods, device, repeats)
        for name, fn in methods.items():
            reset_peak_memory(device)
            counts[name] = count_flops(fn)
            memory[name] = peak_gpu_gb(device)
    naive = results["naive"][1].double()
    max_diff = max((out.double() - naive).abs().max().item() for _, out in results.values())

    print()
    print(f"{n_envs} envs x {len(candidates[0])} actions")
    print(f"prompt tokens: mean {statistics.mean(lengths):.0f}, min {min(lengths)}, max {max(lengths)}")
    print(f"prefix common to the batch, run once: {scorer.shared_prefix_length(prompt_ids)} tokens")
    print(f"max |ours - naive| score difference: {max_diff:.2e}")
    print()
    header = "| method | s per batch | env-steps scored/s | GFLOP per batch | achieved GFLOP/s | % of matmul peak |"
    print(header + (" peak GPU memory (GB) |" if device.type == "cuda" else ""))
    print("|---|---|---|---|---|---|" + ("---|" if device.type == "cuda" else ""))
    for name, (seconds, _) in results.items():
        rate = counts[name] / seconds / 1e9
        cells = [name, f"{seconds:.2f}", f"{n_envs / seconds:.2f}", f"{counts[name] / 1e9:.0f}", f"{rate:.1f}"]
        cells.append(f"{100 * rate / (peak / 1e9):.0f} %")
        if memory[name] is not None:
            cells.append(f"{memory[name]:.2f}")
        print("| " + " | ".join(cells) + " |")
    print()
    naive_t = results["naive"][0]
    ours_t, unshared_t = results["ours (batch prefix shared)"][0], results["ours, batch prefix not shared"][0]
    print(f"speed-up ours/naive: {naive_t / ours_t:.1f}x (batch prefix not shared: {naive_t / unshared_t:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--envs", type=int, nargs="+", default=[8], help="envs per batch (one table per count)")
    parser.add_argument("--repeats", type=int, default=3)
    add_device_argument(parser)
    args = parser.parse_args()
    device = select_device(args.device)

    loaded = load_language_model(args.model)
    loaded.model.to(device).eval()
    scorer = ActionScorer(loaded.model, loaded.tokenizer, loaded.kind)
    unshared = ActionScorer(loaded.model, loaded.tokenizer, loaded.kind, min_shared_tokens=None)
    peak = matmul_peak(device)
    print(f"model {args.model}; {describe(device)}")

    for n_envs in args.envs:
        measure(loaded, (scorer, unshared), n_envs, args.repeats, peak)
    print()
    print(f"{peak_label(device)}, this run: {peak / 1e9:.1f} GFLOP/s")
    print(f"peak RSS of this process: {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
