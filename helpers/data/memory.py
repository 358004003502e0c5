"""Datasets held in memory: render or read a split once, then train on it without waiting for data.

SynthFaces renders a few hundred faces per second on 2 cores; a chapter that trains for thousands of steps renders
its training split once with `render_split` and serves batches from `InMemory`.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torch.utils.data import Dataset

from ..progress import Progress


class InMemory(Dataset):
    """Tensors with a common first dimension served as item dicts; `batch(indices)` applies `transform` once."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], transform: Callable[[dict], dict] | None = None):
        lengths = {name: len(t) for name, t in tensors.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"tensors of different lengths: {lengths}")
        self.tensors, self.transform = dict(tensors), transform
        self.length = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return {k: v[0] for k, v in self.batch([index]).items()}

    def batch(self, indices: Sequence[int]) -> dict:
        """The rows `indices` of every tensor, transformed as one batch."""
        rows = torch.as_tensor(list(indices), dtype=torch.long)
        item = {name: t[rows] for name, t in self.tensors.items()}
        return self.transform(item) if self.transform else item


def render_split(dataset, indices: Sequence[int], keys: Sequence[str], chunk: int = 256,
                 desc: str = "render") -> dict[str, torch.Tensor]:
    """`dataset.batch` over `indices` in chunks, keeping only `keys` (with a progress display)."""
    indices = list(indices)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    with Progress(len(indices), desc, every=max(chunk, len(indices) // 4)) as progress:
        for start in range(0, len(indices), chunk):
            batch = dataset.batch(indices[start:start + chunk])
            missing = [k for k in keys if k not in batch]
            if missing:
                raise KeyError(f"{type(dataset).__name__}.batch gives no {missing}; it gives {sorted(batch)}")
            for k in keys:
                parts[k].append(batch[k])
            progress.update(min(start + chunk, len(indices)))
    return {k: torch.cat(v) for k, v in parts.items()}
