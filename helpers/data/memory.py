"""Datasets held in memory: render or read a split once, then train on it without waiting for data.

SynthFaces renders a few hundred faces per second on 2 cores; a chapter that trains for thousands of steps renders
its training split once with `render_split` and serves batches from `InMemory`. A dataset that names what decides
its pixels (`render_key()`, as SynthFaces does: its settings and the source of its renderer) is rendered once per
machine: `render_split` keeps each tensor of the split in `<checkpoint cache>/renders/` under the hash of that key,
the indices and the tensor's name, and reads it back on the next run (chapters 2 and 3's 4,608 faces at 64 px: about
30 s to render on 2 cores, about a second to read). `BOOK_RENDER_CACHE=off` renders every time and stores nothing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch.utils.data import Dataset

from ..checkpoint import config_hash, default_cache_dir, save_atomic
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
    """`dataset.batch` over `indices` in chunks, keeping only `keys` (with a progress display); read from and written
    to the render cache, one entry per key, when the dataset has a `render_key()` (module doc)."""
    indices, keys = [int(i) for i in indices], list(keys)
    render_key = getattr(dataset, "render_key", None)
    switch = os.environ.get("BOOK_RENDER_CACHE", "on")
    if switch not in ("on", "off"):
        raise ValueError(f"BOOK_RENDER_CACHE={switch!r}: expected 'on' (the default) or 'off'")
    if render_key is None or switch == "off":
        return _render(dataset, indices, keys, chunk, desc)
    split_key = {**render_key(), "indices": indices}
    entries = {k: {**split_key, "tensor": k} for k in keys}
    paths = {k: render_cache_path(entry) for k, entry in entries.items()}
    tensors = {k: _read_cached(paths[k], entries[k]) for k in keys if paths[k].exists()}
    missing = [k for k in keys if k not in tensors]
    if missing:
        tensors.update(_render(dataset, indices, missing, chunk, desc))
        for k in missing:
            _write_cached(paths[k], entries[k], tensors[k])
    else:
        print(f"[{desc}] {len(indices)} faces read from the render cache", flush=True)
    return {k: tensors[k] for k in keys}


def render_cache_path(entry: Mapping[str, Any]) -> Path:
    """Where the render cache keeps one tensor of a split, named by `entry` (render_key(), indices and the key)."""
    return default_cache_dir() / "renders" / f"{entry.get('dataset', 'data')}-{config_hash(entry)}.pt"


def _write_cached(path: Path, entry: Mapping[str, Any], tensor: torch.Tensor) -> None:
    """Store a rendered tensor; integer tensors with values in 0..255 (label maps) as uint8, read back exactly."""
    small = not tensor.is_floating_point() and tensor.dtype != torch.bool and tensor.numel() > 0 \
        and int(tensor.min()) >= 0 and int(tensor.max()) <= 255
    save_atomic({"key": dict(entry), "dtype": str(tensor.dtype).removeprefix("torch."),
                 "tensor": tensor.to(torch.uint8) if small else tensor}, path)


def _read_cached(path: Path, entry: Mapping[str, Any]) -> torch.Tensor:
    stored = torch.load(path, map_location="cpu", weights_only=True)
    if stored.get("key") != dict(entry):
        raise ValueError(f"{path}: this render cache entry was written for other data (its key differs from the "
                         f"requested one); delete the file")
    return stored["tensor"].to(getattr(torch, stored["dtype"]))


def _render(dataset, indices: list[int], keys: list[str], chunk: int, desc: str) -> dict[str, torch.Tensor]:
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
