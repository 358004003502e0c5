"""Inference over a whole split: a function applied chunk by chunk on the run's device, results gathered on the CPU."""
from __future__ import annotations

from typing import Callable

import torch


@torch.no_grad()
def in_chunks(fn: Callable[..., torch.Tensor], *tensors: torch.Tensor, size: int = 64,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """fn(*chunk) for consecutive `size`-item chunks of `tensors` (moved to `device`), concatenated on the CPU."""
    if size < 1:
        raise ValueError(f"size={size}: must be >= 1")
    lengths = {len(t) for t in tensors}
    if len(lengths) != 1:
        raise ValueError(f"tensors of different lengths: {sorted(lengths)}")
    count = lengths.pop()
    parts = [fn(*(t[s:s + size].to(device) for t in tensors)).cpu() for s in range(0, count, size)]
    return torch.cat(parts)
