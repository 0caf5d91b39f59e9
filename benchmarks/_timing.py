"""What the benchmark scripts share: the device, timing, the matmul peak, FLOPs and peak memory.

``--device cpu`` (the default) runs fp32 on the CPU; ``--device cuda`` runs on the first
GPU under bf16 autocast (fp32 weights, as ``LLMPolicy(autocast="auto")`` does there) and
refuses at once on a machine where torch sees no CUDA device.  Times are medians of calls
synchronised with the GPU; FLOPs are ``torch.utils.flop_counter``'s (matrix products:
attention is not counted), set against a square matmul in the run's own dtype measured in
the same run.  Imported by the scripts as ``_timing`` (``python benchmarks/<script>.py``
puts ``benchmarks/`` on the path).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: the GPU, bf16 autocast")


def select_device(name: str) -> torch.device:
    """``torch.device(name)``; a one-line error and exit status 2 (as for a bad flag) if ``cuda`` is
    asked for and torch sees no CUDA device."""
    if name == "cuda" and not torch.cuda.is_available():
        print(
            f"--device cuda: torch {torch.__version__} sees no CUDA device (built with CUDA {torch.version.cuda}); "
            "run on a GPU machine, or with --device cpu",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return torch.device(name)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"{name}, torch {torch.__version__} (CUDA {torch.version.cuda}), bf16 autocast"
    return f"CPU, torch {torch.__version__}, {torch.get_num_threads()} threads, fp32"


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA, nothing on the CPU."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(methods: dict[str, Callable[[], Any]], device: torch.device, repeats: int) -> dict[str, tuple[float, Any]]:
    """Median seconds and last output of each method (after one warm-up call each), the methods
    taking turns so that machine noise hits them alike."""
    outputs = {name: fn() for name, fn in methods.items()}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            sync(device)
            start = time.perf_counter()
            outputs[name] = fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), outputs[name]) for name in methods}


def matmul_peak(device: torch.device) -> float:
    """FLOP/s of a square matmul in the run's dtype: 10 of 2048^3 fp32 on the CPU, the best of
    3 trials of 20 of 8192^3 bf16 on CUDA."""
    cuda = device.type == "cuda"
    size, repeats, trials = (8192, 20, 3) if cuda else (2048, 10, 1)
    dtype = torch.bfloat16 if cuda else torch.float32
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    rates = []
    for _ in range(trials):
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync(device)
        rates.append(2 * size**3 * repeats / (time.perf_counter() - start))
    return max(rates)


def peak_label(device: torch.device) -> str:
    return "bf16 matmul peak (8192^3)" if device.type == "cuda" else "fp32 matmul peak (2048^3)"


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn``."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_rss_gb() -> float:
    """This process's peak resident set (Linux reports kB; GiB, labelled GB in the tables)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def peak_gpu_gb(device: torch.device) -> float | None:
    """``torch.cuda.max_memory_allocated`` since the last :func:`reset_peak_memory` (GiB); None on the CPU."""
    return torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else None
