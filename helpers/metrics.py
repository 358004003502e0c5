"""Metrics of the book, each with its paper's equation number where it has one."""
from __future__ import annotations

from typing import Iterable

import torch


def class_pixel_counts(label_batches: Iterable[torch.Tensor], num_classes: int) -> torch.Tensor:
    """Pixels of each class over all label maps ([N, H, W] batches of ids), as int64 [num_classes]."""
    counts = torch.zeros(num_classes, dtype=torch.long)
    for labels in label_batches:
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"label ids must lie in 0..{num_classes - 1}; got {labels.min()}..{labels.max()}")
        counts += torch.bincount(labels.reshape(-1).long().cpu(), minlength=num_classes)
    return counts


def class_frequencies(counts: torch.Tensor) -> torch.Tensor:
    """Mean area of each class: its share of all pixels, (1 / NHW) sum over images and pixels of the class mask."""
    return counts.double() / counts.sum().clamp(min=1)


def mask_vae_class_weights(frequencies: torch.Tensor) -> torch.Tensor:
    """Weights of the class-weighted cross-entropy of paper 001, Eq. 1: w_c = 1 - mean area of class c."""
    return (1.0 - frequencies).float()
