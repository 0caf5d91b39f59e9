"""GPU throughput of LLMPolicy in one run: scoring, FLOP utilisation, profile, PPO.

SmolLM2-135M (random weights by default: speed needs none), GLAM's 3-observation
prompts of ``BabyAI-Text-MixedTrain-v0``, bf16 autocast on CUDA (fp32 weights), in phases
that each survive the failure of another (a traceback is printed and the run goes on):

1. **scoring**: env-steps/s of ``policy.forward(obs)`` under ``torch.no_grad()`` (one
   rollout step: all 6 actions and the value) at each ``--envs`` count; observations of a
   ``SyncVectorEnv`` after a few random steps; the scorer's prompt cache is cleared before
   each repeat, as every rollout step brings new prompts; median of ``--repeats``.
2. **FLOP utilisation**: FLOPs of one batch (``torch.utils.flop_counter``) / median time,
   against a bf16 (CUDA; fp32 on CPU) matmul peak measured in this run and the data-sheet
   peak (H100 SXM / H200: 989 TFLOP/s dense bf16); the same for one PPO minibatch update
   (``evaluate_actions`` + backward + Adam step on ``--batch-size`` observations).
3. **profile** (``torch.profiler``, CPU + CUDA): GPU busy time (union of kernel and copy
   intervals) / wall time of a scoring batch and of a minibatch update, the top host ops
   by self CPU time, and the host time of the scoring phases (decode + render, tokenize,
   ``scorer.score`` split into the model's forward and the rest, value head).
4. **PPO**: stock SB3 PPO, ``--ppo-envs`` DummyVecEnv envs × ``--ppo-steps`` per rollout,
   minibatches of 64, 4 epochs, per ``--modes`` (``full``, ``top_k`` with k = 2, ``lora``),
   each in a fresh subprocess; one rollout + update of warm-up, then ``--ppo-rollouts``
   timed: env-steps/s end to end, rollout vs update seconds, FLOP utilisation of each,
   peak GPU memory.

Prints progress with time stamps, markdown tables and a final ``JSON {...}`` line with
every figure (also written to ``--json-out`` after every phase).

    python benchmarks/gpu_throughput.py [--device cuda] [--model SmolLM2-135M-Instruct] [--pretrained false]
        [--envs 32 64 128] [--ppo-envs 32] [--ppo-steps 40] [--modes full top_k] [--repeats 5]
        [--micro-batch N] [--skip-profile] [--skip-ppo] [--json-out gpu_throughput.json]

CPU check with a tiny model (seconds)::

    python -c "from tests.tiny_models import build_tiny_model; build_tiny_model('/tmp/tiny', 'llama')"
    python benchmarks/gpu_throughput.py --device cpu --threads 1 --model /tmp/tiny --envs 4 8 \\
        --ppo-envs 2 --ppo-steps 8 --repeats 2
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ENV_ID = "BabyAI-Text-MixedTrain-v0"
START = time.perf_counter()

#: Data-sheet dense bf16 tensor-core peaks (FLOP/s), matched against the device name in order.
SPEC_BF16 = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312e12),
)


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp} +{time.perf_counter() - START:6.1f}s] {message}", flush=True)


def parse_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_autocast(text: str) -> bool | str:
    return "auto" if text == "auto" else parse_bool(text)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fmt(value: float | None, spec: str = ".3g") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def table(header: list[str], rows: list[list[Any]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    sys.stdout.flush()


# --- set-up -----------------------------------------------------------------------------


def spec_peak(device: torch.device, override_tflops: float | None) -> tuple[float | None, str]:
    if override_tflops:
        return override_tflops * 1e12, "--spec-tflops"
    if device.type != "cuda":
        return None, "n/a (CPU)"
    name = torch.cuda.get_device_name(device)
    for key, peak in SPEC_BF16:
        if key in name:
            return peak, f"data sheet, {key} dense bf16"
    return None, f"unknown for {name!r} (pass --spec-tflops)"


def matmul_peak(device: torch.device, size: int, repeats: int) -> dict:
    """Best of 3 trials of ``repeats`` square matmuls (bf16 on CUDA, fp32 on CPU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    c = torch.empty(size, size, device=device, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=c)
    rates = []
    for _ in range(3):
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b, out=c)
        sync(device)
        rates.append(2 * size**3 * repeats / (time.perf_counter() - start))
    del a, b, c
    return {"size": size, "dtype": str(dtype).replace("torch.", ""), "repeats": repeats, "flops_per_s": max(rates)}


def observations(n_envs: int, seed: int = 0, steps: int = 3) -> dict[str, np.ndarray]:
    """Batched observations of ``n_envs`` MixedTrain envs after ``steps`` random actions."""
    import gymnasium as gym

    import babyai_text  # noqa: F401  (registers the ids)

    vec = gym.vector.SyncVectorEnv([lambda: gym.make(ENV_ID)] * n_envs)
    obs, _ = vec.reset(seed=[seed + i for i in range(n_envs)])
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        obs, *_ = vec.step(rng.integers(0, 6, size=n_envs))
    vec.close()
    return obs


def build_policy(args: argparse.Namespace, device: torch.device):
    import gymnasium as gym

    import babyai_text  # noqa: F401
    from llm_policy import LLMPolicy, PromptTemplate

    env = gym.make(ENV_ID)
    policy = LLMPolicy(
        env.observation_space,
        env.action_space,
        lambda _: 1e-6,
        model=args.model,
        pretrained=args.pretrained,
        finetune="full",
        micro_batch_size=args.micro_batch,
        prompt_template=PromptTemplate(),
        autocast=args.autocast,
    )
    env.close()
    return policy.to(device)


def uses_autocast(policy, device: torch.device) -> bool:
    return policy.autocast is True or (policy.autocast == "auto" and device.type == "cuda")


def autocast_ctx(policy, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast LLMPolicy applies around the scorer (``autocast="auto"``: bf16 on CUDA)."""
    if not uses_autocast(policy, device):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def clear_prompt_cache(policy) -> None:
    """Forget tokenized prompts so that each repeat tokenizes, as a rollout step does.

    (The scorer caches tokenizations privately; older and newer versions keep the cache in
    different places, so each known one is cleared if present.)
    """
    scorer = policy.scorer
    for owner, attr in ((getattr(scorer, "tokens", None), "_cache"), (scorer, "_prompt_cache")):
        cache = getattr(owner, attr, None) if owner is not None else None
        if hasattr(cache, "clear"):
            cache.clear()


def tokenize(scorer, prompt: str, candidates: list[str]) -> tuple[list[int], list[list[int]]]:
    """The scorer's own (cached) tokenization of a prompt and its candidates."""
    tokens = getattr(scorer, "tokens", None)
    if callable(tokens):  # ActionTokenizer: candidates tokenized as continuations of the prompt
        return tokens(prompt, candidates)
    return scorer.prompt_ids(prompt), [scorer.candidate_ids(c) for c in candidates]


def token_counts(policy, obs_t: dict) -> dict:
    prompts, candidates = policy.prompts(obs_t)
    tokenized = [tokenize(policy.scorer, p, c) for p, c in zip(prompts, candidates, strict=True)]
    lengths = [len(p) for p, _ in tokenized]
    packed = [len(p) + sum(len(c) - 1 for c in cands) for p, cands in tokenized]
    return {
        "prompt_tokens_mean": statistics.mean(lengths),
        "prompt_tokens_min": min(lengths),
        "prompt_tokens_max": max(lengths),
        "packed_tokens_per_env_mean": statistics.mean(packed),
        "packed_tokens_total": sum(packed),
        "actions": len(candidates[0]),
        "action_tokens": [len(c) for c in tokenized[0][1]],
    }


def count_flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def timed(fn: Callable[[], object], device: torch.device, repeats: int, before: Callable[[], None] | None = None):
    """Warm-up once, then the median and all times of ``repeats`` synchronised calls."""
    if before:
        before()
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        if before:
            before()
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def utilisation(flops: int | None, seconds: float | None, peaks: dict) -> dict:
    if not flops or not seconds:
        return {"flops": flops, "achieved_flops_per_s": None, "mfu_measured": None, "mfu_spec": None}
    rate = flops / seconds
    measured, spec = peaks.get("measured"), peaks.get("spec")
    return {
        "flops": flops,
        "achieved_flops_per_s": rate,
        "mfu_measured": rate / measured if measured else None,
        "mfu_spec": rate / spec if spec else None,
    }


def peak_memory_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# --- one minibatch update (as SB3 PPO.train does it) ---------------------------------------


def minibatch_update(policy, obs_t: dict, actions: torch.Tensor, step: bool = True, ranges: bool = False) -> None:
    """evaluate_actions, PPO-like loss, backward, grad clip and (optionally) the optimizer step."""
    rf = torch.profiler.record_function if ranges else (lambda _name: contextlib.nullcontext())
    with rf("evaluate_actions"):
        values, log_prob, entropy = policy.evaluate_actions(obs_t, actions)
    with rf("loss+backward"):
        advantages = torch.linspace(-1, 1, len(actions), device=values.device)
        ratio = torch.exp(log_prob - log_prob.detach())
        loss = -(advantages * ratio).mean() + 0.5 * (values.flatten() ** 2).mean() - 0.01 * entropy.mean()
        policy.optimizer.zero_grad(set_to_none=True)
        loss.backward()
    if step:
        with rf("clip+optimizer.step"):
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
            policy.optimizer.step()


# --- profiling ---------------------------------------------------------------------------


@contextlib.contextmanager
def model_forward_hooks(
    model: torch.nn.Module, device: torch.device, ranges: bool, synchronise: bool, seconds: list[float]
) -> Iterator[None]:
    """Time (and mark as a profiler range) every forward call of the HF model."""
    stack: list[tuple[float, Any]] = []

    def pre(_module, _args, _kwargs):
        if synchronise:
            sync(device)
        rec = torch.profiler.record_function("model.forward") if ranges else None
        if rec is not None:
            rec.__enter__()
        stack.append((time.perf_counter(), rec))

    def post(_module, _args, _kwargs, _out):
        if synchronise:
            sync(device)
        start, rec = stack.pop()
        seconds.append(time.perf_counter() - start)
        if rec is not None:
            rec.__exit__(None, None, None)

    handles = [
        model.register_forward_pre_hook(pre, with_kwargs=True),
        model.register_forward_hook(post, with_kwargs=True),
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def scoring_phases(policy, obs_t: dict, device: torch.device, ranges: bool, synchronise: bool) -> dict:
    """``policy.forward`` done by hand, phase by phase (same work; one chunk, no micro-batching)."""
    rf = torch.profiler.record_function if ranges else (lambda _name: contextlib.nullcontext())
    scorer = policy.scorer
    times: dict[str, float] = {}
    forward_seconds: list[float] = []

    def mark(name: str, start: float) -> float:
        if synchronise:
            sync(device)
        now = time.perf_counter()
        times[name] = now - start
        return now

    clear_prompt_cache(policy)
    t = time.perf_counter()
    with rf("decode+render"):
        prompts, candidates = policy.prompts(obs_t)
    t = mark("decode_render_s", t)
    with rf("tokenize"):
        for p, c in zip(prompts, candidates, strict=True):
            tokenize(scorer, p, c)
    t = mark("tokenize_s", t)
    with (
        rf("scorer.score"),
        model_forward_hooks(scorer.model, device, ranges, synchronise, forward_seconds),
        autocast_ctx(policy, device),
    ):
        out = scorer.score(prompts, candidates)
    t = mark("scorer_score_s", t)
    with rf("value+distribution"):
        distribution = policy.action_dist.proba_distribution(action_logits=out.scores.float())
        actions = distribution.get_actions()
        policy.values(out.hidden)
        distribution.log_prob(actions)
    mark("value_distribution_s", t)
    times["model_forward_s"] = sum(forward_seconds)
    times["model_forward_calls"] = len(forward_seconds)
    times["scorer_other_s"] = times["scorer_score_s"] - times["model_forward_s"]
    times["total_s"] = sum(
        times[k] for k in ("decode_render_s", "tokenize_s", "scorer_score_s", "value_distribution_s")
    )
    return times


def profile_step(fn: Callable[[], object], device: torch.device, top: int = 10) -> dict:
    """Profile one call of ``fn`` (after one profiled warm-up call): GPU busy vs wall, top host ops."""
    from torch.profiler import ProfilerActivity, profile, schedule

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    walls = []
    with profile(
        activities=activities,
        schedule=schedule(wait=0, warmup=1, active=1, repeat=1),
        record_shapes=False,
        with_stack=False,
    ) as prof:
        for _ in range(2):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            walls.append(time.perf_counter() - start)
            prof.step()
    wall = walls[-1]
    events = prof.events() or []
    device_events = [e for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
    busy_s = kernel_sum_s = None
    if device_events:
        intervals = sorted((e.time_range.start, e.time_range.end) for e in device_events)
        busy_us, cur_start, cur_end = 0.0, *intervals[0]
        for s, e in intervals[1:]:
            if s > cur_end:
                busy_us += cur_end - cur_start
                cur_start, cur_end = s, e
            else:
                cur_end = max(cur_end, e)
        busy_us += cur_end - cur_start
        busy_s = busy_us / 1e6
        kernel_sum_s = sum(e.time_range.end - e.time_range.start for e in device_events) / 1e6
    averages = prof.key_averages()
    host = [a for a in averages if getattr(a, "self_cpu_time_total", 0) > 0]
    host.sort(key=lambda a: a.self_cpu_time_total, reverse=True)
    kernels = [  # device-side events (kernels, copies); CPU ops also carry the device time of their launches
        a
        for a in averages
        if getattr(a, "device_type", None) == torch.autograd.DeviceType.CUDA and a.self_device_time_total > 0
    ]
    kernels.sort(key=lambda a: a.self_device_time_total, reverse=True)
    ranges = {}
    for a in averages:
        if a.key in (
            "decode+render",
            "tokenize",
            "scorer.score",
            "model.forward",
            "value+distribution",
            "evaluate_actions",
            "loss+backward",
            "clip+optimizer.step",
        ):
            ranges[a.key] = {
                "cpu_total_ms": a.cpu_time_total / 1e3,
                "self_cpu_ms": a.self_cpu_time_total / 1e3,
                "device_total_ms": getattr(a, "device_time_total", 0) / 1e3,
                "calls": a.count,
            }
    return {
        "wall_s_profiled": wall,
        "gpu_busy_s": busy_s,
        "gpu_kernel_sum_s": kernel_sum_s,
        "gpu_busy_share": busy_s / wall if busy_s is not None else None,
        "device_events": len(device_events),
        "host_self_cpu_total_s": sum(a.self_cpu_time_total for a in host) / 1e6,
        "top_host_ops": [
            {"op": a.key, "self_cpu_ms": a.self_cpu_time_total / 1e3, "calls": a.count} for a in host[:top]
        ],
        "top_device_ops": [
            {"op": a.key[:120], "self_device_ms": a.self_device_time_total / 1e3, "calls": a.count}
            for a in kernels[:top]
        ],
        "ranges": ranges,
    }


# --- PPO worker (one mode per process) ------------------------------------------------------


def ppo_worker(cfg: dict) -> dict:
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.utils import obs_as_tensor
    from stable_baselines3.common.vec_env import DummyVecEnv

    import babyai_text  # noqa: F401
    from glam_experiments.configs import GLAM_LLM_PPO
    from llm_policy import LLMPolicy

    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    mode = cfg["mode"]

    class Phases(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.marks: list[tuple[str, float]] = []

        def _on_rollout_start(self) -> None:
            sync(device)
            self.marks.append(("rollout_start", time.perf_counter()))

        def _on_rollout_end(self) -> None:
            sync(device)
            self.marks.append(("rollout_end", time.perf_counter()))

        def _on_step(self) -> bool:
            return True

    result: dict[str, Any] = {"mode": mode, "micro_batch": cfg["micro_batch"], "top_k": cfg["top_k"]}
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        env = DummyVecEnv([lambda: gym.make(ENV_ID)] * cfg["envs"])
        # GLAM's settings (glam_experiments.configs), at this run's sizes and fine-tuning mode
        config = replace(
            GLAM_LLM_PPO,
            model=cfg["model"],
            pretrained=cfg["pretrained"],
            finetune=mode,
            top_k=cfg["top_k"],
            micro_batch_size=cfg["micro_batch"],
            n_envs=cfg["envs"],
            n_steps=cfg["steps"],
            batch_size=cfg["batch_size"],
            n_epochs=cfg["epochs"],
        )
        log(f"[{mode}] building PPO ({cfg['envs']} envs x {cfg['steps']} steps)")
        model = PPO(
            LLMPolicy,
            env,
            seed=0,
            device=cfg["device"],
            policy_kwargs={**config.policy_kwargs(), "autocast": cfg["autocast"]},
            **config.ppo_kwargs(),
        )
        policy = model.policy
        result["trainable_params"] = sum(p.numel() for p in policy.parameters() if p.requires_grad)
        result["total_params"] = sum(p.numel() for p in policy.parameters())
        per_rollout = cfg["steps"] * cfg["envs"]
        minibatches = cfg["epochs"] * math.ceil(per_rollout / cfg["batch_size"])
        result.update(env_steps_per_rollout=per_rollout, minibatches_per_update=minibatches)
        callback = Phases()
        log(f"[{mode}] warm-up rollout + update ({per_rollout} env-steps, {minibatches} minibatches)")
        start = time.perf_counter()
        model.learn(per_rollout, callback=callback)
        sync(device)
        result["warmup_s"] = time.perf_counter() - start
        log(f"[{mode}] warm-up done in {result['warmup_s']:.1f} s; timing {cfg['rollouts']} rollout(s) + update(s)")
        callback.marks.clear()
        start = time.perf_counter()
        model.learn(per_rollout * cfg["rollouts"], reset_num_timesteps=False, callback=callback)
        sync(device)
        end = time.perf_counter()
        seconds = end - start
        starts = [t for k, t in callback.marks if k == "rollout_start"]
        ends = [t for k, t in callback.marks if k == "rollout_end"]
        rollout_s = sum(e - s for s, e in zip(starts, ends, strict=False))
        update_s = sum(nxt - e for e, nxt in zip(ends, [*starts[1:], end], strict=True))
        timed_steps = per_rollout * cfg["rollouts"]
        result.update(
            env_steps_timed=timed_steps,
            seconds=seconds,
            env_steps_per_s=timed_steps / seconds,
            rollout_s=rollout_s,
            update_s=update_s,
            rollout_env_steps_per_s=timed_steps / rollout_s if rollout_s else None,
            peak_gpu_mem_gb=peak_memory_gb(device),
            peak_gpu_reserved_gb=torch.cuda.max_memory_reserved(device) / 1024**3 if device.type == "cuda" else None,
        )
        log(
            f"[{mode}] timed: {seconds:.1f} s ({timed_steps / seconds:.2f} env-steps/s), "
            f"rollout {rollout_s:.1f} s, update {update_s:.1f} s"
        )

        # FLOPs: one rollout step (full forward: the lower-block cache is bypassed while counting)
        # and one update minibatch (as the update runs it: from the cache in top_k mode).
        try:
            cache = getattr(policy.scorer, "lower_cache", None)
            result["lower_cache_active"] = cache is not None and bool(getattr(cache, "enabled", True))
            for attr in ("hits", "misses", "bytes"):
                if hasattr(cache, attr):
                    result[f"lower_cache_{attr}"] = getattr(cache, attr)
            obs_t = obs_as_tensor(model._last_obs, device)
            policy.set_training_mode(False)
            policy.scorer.lower_cache = None  # a rollout step runs the full model: count it so
            try:
                with torch.no_grad():
                    step_flops = count_flops(lambda: policy.forward(obs_t))
            finally:
                policy.scorer.lower_cache = cache
            policy.set_training_mode(True)
            sample = next(iter(model.rollout_buffer.get(cfg["batch_size"])))

            def update_minibatch() -> None:
                minibatch_update(policy, sample.observations, sample.actions.long().flatten(), step=False)

            mb_flops = count_flops(update_minibatch)
            policy.optimizer.zero_grad(set_to_none=True)
            peaks = cfg["peaks"]
            rollout_u = utilisation(step_flops * cfg["steps"] * cfg["rollouts"], rollout_s, peaks)
            update_u = utilisation(mb_flops * minibatches * cfg["rollouts"], update_s, peaks)
            result.update(
                rollout_step_flops=step_flops,
                update_minibatch_flops=mb_flops,
                rollout_mfu_measured=rollout_u["mfu_measured"],
                rollout_mfu_spec=rollout_u["mfu_spec"],
                rollout_flops_per_s=rollout_u["achieved_flops_per_s"],
                update_mfu_measured=update_u["mfu_measured"],
                update_mfu_spec=update_u["mfu_spec"],
                update_flops_per_s=update_u["achieved_flops_per_s"],
            )
        except Exception as err:  # the throughput above is still worth reporting
            traceback.print_exc()
            result["flops_error"] = f"{type(err).__name__}: {err}"
        env.close()
    for r in records:
        text = f"{r.category.__name__}: {str(r.message).splitlines()[0][:200]}"
        if text not in caught:
            caught.append(text)
    result["warnings"] = caught
    return result


def run_ppo_mode(cfg: dict, timeout: float) -> dict:
    """Run one PPO mode in a fresh subprocess, echoing its output; its RESULT line, or an error."""
    cmd = [sys.executable, "-u", os.path.abspath(__file__), "--ppo-worker", json.dumps(cfg)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    result, tail = None, []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
                continue
            print(f"    {line}", flush=True)
            tail = [*tail[-19:], line]
        proc.wait()
    finally:
        timer.cancel()
    if result is not None:
        return result
    reason = f"killed after {timeout:.0f} s (--ppo-timeout)" if killed.is_set() else f"exit code {proc.returncode}"
    last = next((t for t in reversed(tail) if t.strip()), "")
    return {"mode": cfg["mode"], "error": f"{reason}: {last}"}


# --- main ----------------------------------------------------------------------------------


class Run:
    """Collects the figures, runs phases so that one failing does not stop the others."""

    def __init__(self, json_out: str | None) -> None:
        self.results: dict[str, Any] = {"errors": []}
        self.json_out = json_out

    def save(self) -> None:
        if self.json_out:
            with open(self.json_out, "w") as f:
                json.dump(self.results, f, indent=1, default=str)

    def phase(self, name: str, fn: Callable[[], object]) -> Any:
        log(f"=== phase: {name}")
        try:
            return fn()
        except Exception as err:
            traceback.print_exc()
            sys.stderr.flush()
            self.results["errors"].append({"phase": name, "error": f"{type(err).__name__}: {err}"})
            log(f"phase {name} FAILED ({type(err).__name__}: {err}); going on")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return None
        finally:
            self.save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--pretrained", type=parse_bool, default=False, help="true: real weights (default false)")
    parser.add_argument("--autocast", type=parse_autocast, default="auto", help="auto (bf16 on CUDA), true, false")
    parser.add_argument("--envs", type=int, nargs="+", default=[32, 64, 128], help="scoring batch sizes")
    parser.add_argument("--profile-envs", type=int, default=None, help="scoring batch profiled (64; on CPU ≤ --envs)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="PPO minibatch")
    parser.add_argument("--epochs", type=int, default=4, help="PPO n_epochs")
    parser.add_argument("--micro-batch", type=int, default=None, help="LLMPolicy micro_batch_size")
    parser.add_argument("--ppo-envs", type=int, default=32)
    parser.add_argument("--ppo-steps", type=int, default=40, help="n_steps per env and rollout")
    parser.add_argument("--ppo-rollouts", type=int, default=1, help="timed rollouts + updates after the warm-up")
    parser.add_argument("--ppo-timeout", type=float, default=None, help="s per PPO mode (300; CPU 3600)")
    parser.add_argument("--modes", nargs="+", default=["full", "top_k"], choices=["full", "top_k", "lora", "frozen"])
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--matmul-size", type=int, default=None, help="square matmul for the peak (8192; CPU 1024)")
    parser.add_argument("--spec-tflops", type=float, default=None, help="data-sheet peak, if not known by name")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--skip-ppo", action="store_true")
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--ppo-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.ppo_worker:
        cfg = json.loads(args.ppo_worker)
        try:
            result = ppo_worker(cfg)
        except torch.cuda.OutOfMemoryError as err:
            traceback.print_exc()
            result = {"mode": cfg["mode"], "error": f"CUDA out of memory: {str(err).splitlines()[0][:300]}"}
        print("RESULT " + json.dumps(result), flush=True)
        return

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device (use --device cpu for a CPU check)")
    profile_envs = args.profile_envs or (64 if device.type == "cuda" else min(64, max(args.envs)))
    run = Run(args.json_out)
    res = run.results
    peaks: dict[str, float | None] = {"measured": None, "spec": None}

    def meta() -> None:
        import transformers

        info = {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "transformers": transformers.__version__,
            "python": sys.version.split()[0],
            "threads": torch.get_num_threads(),
            "model": args.model,
            "pretrained": args.pretrained,
            "autocast": args.autocast,
            "env": ENV_ID,
            "args": vars(args),
        }
        res["meta"] = info
        log(
            f"device {info['device']}, torch {info['torch']} (CUDA {info['cuda']}), transformers "
            f"{info['transformers']}, python {info['python']}, threads {info['threads']}"
        )

    def peak() -> None:
        size = args.matmul_size or (8192 if device.type == "cuda" else 1024)
        m = matmul_peak(device, size, repeats=20 if device.type == "cuda" else 3)
        spec, source = spec_peak(device, args.spec_tflops)
        peaks.update(measured=m["flops_per_s"], spec=spec)
        res["peak"] = {**m, "spec_flops_per_s": spec, "spec_source": source}
        log(
            f"matmul peak {size}^3 {m['dtype']}: {fmt(m['flops_per_s'] / 1e12)} TFLOP/s measured; "
            f"spec {fmt(spec and spec / 1e12)} TFLOP/s ({source})"
        )

    run.phase("meta", meta)
    run.phase("matmul peak", peak)
    policy_phases(args, device, run, peaks, profile_envs)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        log(f"GPU memory still allocated in this process: {torch.cuda.memory_allocated(device) / 1024**3:.2f} GB")

    if not args.skip_ppo:
        res["ppo"] = []
        for mode in args.modes:
            cfg = {
                "mode": mode,
                "device": args.device,
                "model": args.model,
                "pretrained": args.pretrained,
                "autocast": args.autocast,
                "envs": args.ppo_envs,
                "steps": args.ppo_steps,
                "rollouts": args.ppo_rollouts,
                "batch_size": args.batch_size,
                "epochs": args.epochs,
                "micro_batch": args.micro_batch,
                "top_k": args.top_k,
                "threads": args.threads,
                "peaks": peaks,
            }

            def ppo(cfg: dict = cfg) -> None:
                r = run_ppo_mode(cfg, args.ppo_timeout or (300 if device.type == "cuda" else 3600))
                res["ppo"].append(r)
                if "error" in r:
                    raise RuntimeError(f"PPO {cfg['mode']}: {r['error']}")

            run.phase(f"PPO {mode}", ppo)

    run.phase("report", lambda: report(res))  # a report bug must not lose the JSON line below
    print("JSON " + json.dumps(res, default=str), flush=True)


def policy_phases(args: argparse.Namespace, device: torch.device, run: Run, peaks: dict, profile_envs: int) -> None:
    """Phases 1-3 in this process, with one policy (full fine-tuning mode), freed on return."""
    res = run.results
    policy = run.phase("build policy", lambda: build_policy(args, device))
    obs_cache: dict[int, dict] = {}

    def obs_tensor(n: int) -> dict:
        from stable_baselines3.common.utils import obs_as_tensor

        if n not in obs_cache:
            obs_cache[n] = observations(n)
        return obs_as_tensor(obs_cache[n], device)

    if policy is not None:
        policy.set_training_mode(False)
        res["policy"] = {
            "params": sum(p.numel() for p in policy.parameters()),
            "lm_class": type(policy.scorer.model).__name__,
            "attn_implementation": getattr(policy.scorer.model.config, "_attn_implementation", None),
            "autocast_bf16": uses_autocast(policy, device),
        }
        log(f"policy: {res['policy']}")
        res["scoring"] = []

        for n in args.envs:

            def scoring(n: int = n) -> None:
                obs_t = obs_tensor(n)
                tokens = token_counts(policy, obs_t)
                reset_peak_memory(device)
                with torch.no_grad():
                    seconds, times = timed(
                        lambda: policy.forward(obs_t), device, args.repeats, before=lambda: clear_prompt_cache(policy)
                    )
                    flops = count_flops(lambda: policy.forward(obs_t))
                row = {
                    "envs": n,
                    **tokens,
                    "seconds_median": seconds,
                    "seconds_all": times,
                    "env_steps_per_s": n / seconds,
                    "tokens_per_s": tokens["packed_tokens_total"] / seconds,
                    **utilisation(flops, seconds, peaks),
                    "peak_gpu_mem_gb": peak_memory_gb(device),
                }
                res["scoring"].append(row)
                log(
                    f"scoring {n} envs: {seconds * 1e3:.1f} ms/batch, {n / seconds:.1f} env-steps/s, "
                    f"{flops / 1e9:.1f} GFLOP, MFU {pct(row['mfu_measured'])} of measured, "
                    f"{pct(row['mfu_spec'])} of spec; prompt tokens {tokens['prompt_tokens_mean']:.0f} "
                    f"[{tokens['prompt_tokens_min']}, {tokens['prompt_tokens_max']}]"
                )

            run.phase(f"scoring {n} envs", scoring)

        def phases() -> None:
            obs_t = obs_tensor(profile_envs)
            runs, forwards = [], []
            with torch.no_grad():
                scoring_phases(policy, obs_t, device, ranges=False, synchronise=True)  # warm-up
                for _ in range(max(3, args.repeats)):  # interleaved, so that machine noise hits both
                    runs.append(scoring_phases(policy, obs_t, device, ranges=False, synchronise=True))
                    clear_prompt_cache(policy)
                    sync(device)
                    start = time.perf_counter()
                    policy.forward(obs_t)
                    sync(device)
                    forwards.append(time.perf_counter() - start)
            median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            median["policy_forward_s"] = statistics.median(forwards)
            median["policy_forward_times"] = forwards
            median["total_times"] = [r["total_s"] for r in runs]
            median["repeats"] = len(runs)
            median["envs"] = profile_envs
            res["scoring_phases"] = median
            log(
                f"scoring phases at {profile_envs} envs (ms): "
                + ", ".join(f"{k[:-2]} {v * 1e3:.1f}" for k, v in median.items() if k.endswith("_s"))
            )

        run.phase(f"scoring phases {profile_envs} envs", phases)

        def update() -> None:
            obs_t = obs_tensor(args.batch_size)
            actions = torch.as_tensor(np.arange(args.batch_size) % 6, device=device)
            policy.set_training_mode(True)
            reset_peak_memory(device)
            seconds, times = timed(
                lambda: minibatch_update(policy, obs_t, actions),
                device,
                args.repeats,
                before=lambda: clear_prompt_cache(policy),
            )
            flops = count_flops(lambda: minibatch_update(policy, obs_t, actions, step=False))
            policy.optimizer.zero_grad(set_to_none=True)
            policy.set_training_mode(False)
            row = {
                "batch_size": args.batch_size,
                "micro_batch": args.micro_batch,
                "seconds_median": seconds,
                "seconds_all": times,
                "samples_per_s": args.batch_size / seconds,
                **utilisation(flops, seconds, peaks),
                "peak_gpu_mem_gb": peak_memory_gb(device),
            }
            res["update_minibatch"] = row
            log(
                f"update minibatch of {args.batch_size} (full fine-tuning): {seconds * 1e3:.1f} ms, "
                f"{flops / 1e12:.2f} TFLOP (fwd+bwd), MFU {pct(row['mfu_measured'])} of measured, "
                f"{pct(row['mfu_spec'])} of spec, peak mem {fmt(row['peak_gpu_mem_gb'])} GB"
            )

        run.phase(f"update minibatch {args.batch_size}", update)

        if not args.skip_profile:

            def profile_scoring() -> None:
                obs_t = obs_tensor(profile_envs)
                with torch.no_grad():
                    prof = profile_step(
                        lambda: scoring_phases(policy, obs_t, device, ranges=True, synchronise=False), device
                    )
                res["profile_scoring"] = {"envs": profile_envs, **prof}
                log(
                    f"profile scoring {profile_envs} envs: wall {prof['wall_s_profiled'] * 1e3:.1f} ms (profiled), "
                    f"GPU busy {fmt(prof['gpu_busy_s'] and prof['gpu_busy_s'] * 1e3)} ms, "
                    f"share {pct(prof['gpu_busy_share'])}"
                )

            def profile_update() -> None:
                obs_t = obs_tensor(args.batch_size)
                actions = torch.as_tensor(np.arange(args.batch_size) % 6, device=device)
                policy.set_training_mode(True)

                def step() -> None:
                    clear_prompt_cache(policy)
                    minibatch_update(policy, obs_t, actions, ranges=True)

                prof = profile_step(step, device)
                policy.set_training_mode(False)
                res["profile_update"] = {"batch_size": args.batch_size, **prof}
                log(
                    f"profile update minibatch {args.batch_size}: wall {prof['wall_s_profiled'] * 1e3:.1f} ms "
                    f"(profiled), GPU busy {fmt(prof['gpu_busy_s'] and prof['gpu_busy_s'] * 1e3)} ms, "
                    f"share {pct(prof['gpu_busy_share'])}"
                )

            run.phase(f"profile scoring {profile_envs} envs", profile_scoring)
            run.phase(f"profile update minibatch {args.batch_size}", profile_update)


def report(res: dict) -> None:
    print()
    meta, peak = res.get("meta", {}), res.get("peak", {})
    print(
        f"## LLMPolicy GPU throughput: {meta.get('device')}, torch {meta.get('torch')}, "
        f"transformers {meta.get('transformers')}"
    )
    print(
        f"model {meta.get('model')} (pretrained {meta.get('pretrained')}, autocast {meta.get('autocast')}), "
        f"{ENV_ID}, GLAM prompts (3 observations)"
    )
    if peak:
        print(
            f"matmul peak ({peak['size']}^3 {peak['dtype']}, measured): {fmt(peak['flops_per_s'] / 1e12)} TFLOP/s; "
            f"spec: {fmt(peak['spec_flops_per_s'] and peak['spec_flops_per_s'] / 1e12)} TFLOP/s ({peak['spec_source']})"
        )
    print()
    if res.get("scoring"):
        print("### Scoring (policy.forward under no_grad = one rollout step)")
        table(
            [
                "envs",
                "prompt tokens mean [min, max]",
                "packed tokens/env",
                "ms per batch",
                "env-steps/s",
                "tokens/s",
                "GFLOP per batch",
                "TFLOP/s",
                "MFU (measured peak)",
                "MFU (spec)",
                "peak mem GB",
            ],
            [
                [
                    r["envs"],
                    f"{r['prompt_tokens_mean']:.0f} [{r['prompt_tokens_min']}, {r['prompt_tokens_max']}]",
                    f"{r['packed_tokens_per_env_mean']:.0f}",
                    f"{r['seconds_median'] * 1e3:.1f}",
                    f"{r['env_steps_per_s']:.1f}",
                    f"{r['tokens_per_s']:.0f}",
                    fmt(r["flops"] / 1e9),
                    fmt(r["achieved_flops_per_s"] and r["achieved_flops_per_s"] / 1e12),
                    pct(r["mfu_measured"]),
                    pct(r["mfu_spec"]),
                    fmt(r["peak_gpu_mem_gb"]),
                ]
                for r in res["scoring"]
            ],
        )
        print()
    ph = res.get("scoring_phases")
    if ph:
        print(
            f"### Host time of the scoring phases, {ph['envs']} envs "
            f"(synchronised after each; median of {ph['repeats']}, interleaved with policy.forward)"
        )
        names = [
            ("decode_render_s", "decode obs + render prompts (policy.prompts)"),
            ("tokenize_s", "tokenize prompt + actions (the scorer's tokenizer)"),
            ("scorer_score_s", "scorer.score (all)"),
            ("model_forward_s", f"  of which model forward ({ph['model_forward_calls']} call(s), synchronised)"),
            ("scorer_other_s", "  of which mask/pad/gather outside the model"),
            ("value_distribution_s", "value head + distribution"),
            ("total_s", "sum of phases"),
            ("policy_forward_s", "policy.forward (everything, one call)"),
        ]
        table(
            ["phase", "ms", "share of sum"], [[n, f"{ph[k] * 1e3:.1f}", pct(ph[k] / ph["total_s"])] for k, n in names]
        )
        print()
    up = res.get("update_minibatch")
    if up:
        print("### One PPO minibatch update (full fine-tuning: evaluate_actions + backward + Adam)")
        table(
            [
                "batch",
                "micro-batch",
                "ms",
                "samples/s",
                "TFLOP (fwd+bwd)",
                "TFLOP/s",
                "MFU (measured)",
                "MFU (spec)",
                "peak mem GB",
            ],
            [
                [
                    up["batch_size"],
                    up["micro_batch"] or "none",
                    f"{up['seconds_median'] * 1e3:.1f}",
                    f"{up['samples_per_s']:.1f}",
                    f"{up['flops'] / 1e12:.3f}",
                    fmt(up["achieved_flops_per_s"] and up["achieved_flops_per_s"] / 1e12),
                    pct(up["mfu_measured"]),
                    pct(up["mfu_spec"]),
                    fmt(up["peak_gpu_mem_gb"]),
                ]
            ],
        )
        print()
    for key, title in (("profile_scoring", "scoring batch"), ("profile_update", "minibatch update")):
        p = res.get(key)
        if not p:
            continue
        size = p.get("envs", p.get("batch_size"))
        print(f"### Profile: {title} of {size} (torch.profiler; wall includes profiler overhead)")
        print(
            f"wall {p['wall_s_profiled'] * 1e3:.1f} ms; GPU busy (union of kernels/copies) "
            f"{fmt(p['gpu_busy_s'] and p['gpu_busy_s'] * 1e3)} ms; sum of kernel times "
            f"{fmt(p['gpu_kernel_sum_s'] and p['gpu_kernel_sum_s'] * 1e3)} ms; GPU busy share of wall "
            f"{pct(p['gpu_busy_share'])}; host self CPU total {p['host_self_cpu_total_s'] * 1e3:.1f} ms"
        )
        table(
            ["range", "CPU total ms", "self CPU ms", "device ms", "calls"],
            [
                [k, f"{v['cpu_total_ms']:.1f}", f"{v['self_cpu_ms']:.1f}", f"{v['device_total_ms']:.1f}", v["calls"]]
                for k, v in p["ranges"].items()
            ],
        )
        print()
        table(
            ["top host op (self CPU)", "self CPU ms", "calls"],
            [[o["op"], f"{o['self_cpu_ms']:.1f}", o["calls"]] for o in p["top_host_ops"]],
        )
        print()
        if p.get("top_device_ops"):
            table(
                ["top GPU kernel (self device time)", "ms", "calls"],
                [[o["op"], f"{o['self_device_ms']:.2f}", o["calls"]] for o in p["top_device_ops"]],
            )
            print()
    if res.get("ppo"):
        print("### PPO (stock SB3, rollout + update, after one warm-up)")
        rows = []
        for r in res["ppo"]:
            if "error" in r:
                rows.append([r["mode"], f"failed: {r['error']}"] + [""] * 9)
                continue
            rows.append(
                [
                    r["mode"] + (f" (k={r.get('top_k', '')})" if r["mode"] == "top_k" else ""),
                    f"{r['env_steps_timed']} ({r['minibatches_per_update']} minibatches)",
                    f"{r['seconds']:.1f}",
                    f"{r['env_steps_per_s']:.1f}",
                    f"{r['rollout_s']:.1f}",
                    f"{r['update_s']:.1f}",
                    f"{pct(r.get('rollout_mfu_measured'))} / {pct(r.get('rollout_mfu_spec'))}",
                    f"{pct(r.get('update_mfu_measured'))} / {pct(r.get('update_mfu_spec'))}",
                    fmt(r["peak_gpu_mem_gb"]),
                    r["micro_batch"] or "none",
                    f"{r['trainable_params'] / 1e6:.1f} M",
                ]
            )
        table(
            [
                "mode",
                "env-steps timed",
                "s",
                "env-steps/s",
                "rollout s",
                "update s",
                "rollout MFU (measured / spec)",
                "update MFU (measured / spec)",
                "peak GPU mem GB",
                "micro-batch",
                "trainable",
            ],
            rows,
        )
        for r in res["ppo"]:
            if r["mode"] == "top_k" and r.get("lower_cache_active") is False:
                print(f"note: {r['mode']}: the frozen-block cache was OFF (the update ran full forwards)")
            if "lower_cache_hits" in r:
                print(
                    f"note: {r['mode']}: frozen-block cache (whole process) rows hit {r['lower_cache_hits']}, missed "
                    f"{r.get('lower_cache_misses')}, {r.get('lower_cache_bytes', 0) / 1024**3:.2f} GiB held"
                )
            for w in r.get("warnings", []):
                print(f"warning in {r['mode']}: {w}")
        print()
    if res["errors"]:
        print("### Failed phases")
        for e in res["errors"]:
            print(f"- {e['phase']}: {e['error']}")
        print()


if __name__ == "__main__":
    main()
