"""Wall-clock timing of competing functions, measured side by side so that machine noise hits all of them alike."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Mapping


def interleaved_ms(calls: Mapping[str, Callable[[], object]], rounds: int = 5, repeats: int = 3,
                   warmup: int = 1) -> dict[str, float]:
    """Median milliseconds per call of each function: `rounds` rounds, each timing every function `repeats` times in turn.

    Every function first runs `warmup` times untimed (allocations, lazy initialisation).
    """
    if rounds < 1 or repeats < 1:
        raise ValueError(f"rounds={rounds}, repeats={repeats}: both must be >= 1")
    for call in calls.values():
        for _ in range(warmup):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            began = time.perf_counter()
            for _ in range(repeats):
                call()
            samples[name].append((time.perf_counter() - began) / repeats * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}
