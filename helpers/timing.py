"""Wall-clock timing of competing functions, measured side by side so that machine noise hits all of them alike."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Mapping

import torch

from .train import cpu_has_native_bf16


def synchronizer(device: torch.device | str | None) -> Callable[[], None]:
    """A function that waits for the device's queued work: CUDA kernels run asynchronously, so a timer that does not
    synchronise measures kernel launches, not the work. A no-op on the CPU."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def interleaved_ms(calls: Mapping[str, Callable[[], object]], rounds: int = 5, repeats: int = 3,
                   warmup: int = 1, device: torch.device | str | None = None) -> dict[str, float]:
    """Median milliseconds per call of each function: `rounds` rounds, each timing every function `repeats` times in turn.

    Every function first runs `warmup` times untimed (allocations, lazy initialisation). On a CUDA `device` every
    timed block starts and ends with a synchronisation, so the time is that of the work done, not of its launch.
    """
    if rounds < 1 or repeats < 1:
        raise ValueError(f"rounds={rounds}, repeats={repeats}: both must be >= 1")
    sync = synchronizer(device)
    for call in calls.values():
        for _ in range(warmup):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            sync()
            began = time.perf_counter()
            for _ in range(repeats):
                call()
            sync()
            samples[name].append((time.perf_counter() - began) / repeats * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def gemm_peak(dtype: torch.dtype, n: int | None = None, repeats: int = 10,
              device: torch.device | str = "cpu") -> float:
    """GFLOP/s of an n x n matmul in `dtype` on `device` (median of `repeats`, synchronised on CUDA): the machine's
    practical peak, printed beside the achieved GFLOP/s of the benchmarks.

    n defaults to 2048 on a CPU, 8192 on a GPU, and 512 for bf16 on a CPU without native bf16 (AVX2 only), where a
    bf16 matmul runs about 100x slower than fp32 and n = 2048 would take minutes to say so.
    """
    device = torch.device(device)
    if n is None:
        n = 8192 if device.type == "cuda" else 512 if dtype == torch.bfloat16 and not cpu_has_native_bf16() else 2048
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    ms = interleaved_ms({"mm": lambda: torch.mm(a, b)}, rounds=repeats, repeats=1, device=device)["mm"]
    return 2 * n ** 3 / ms / 1e6
