"""Segmentation measures on label maps of class ids: pixel counts, confusion matrices, IoU, F1, accuracy, support."""
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


def confusion_matrix(predicted: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts [target class, predicted class] over all pixels of label maps of the same shape (int64)."""
    if predicted.shape != target.shape:
        raise ValueError(f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} differ in shape")
    index = target.reshape(-1).long().cpu() * num_classes + predicted.reshape(-1).long().cpu()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """IoU = TP / (TP + FP + FN) of each class from one dataset-level confusion matrix (NaN for absent classes)."""
    tp = confusion.diag().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def f1_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """F1 = 2TP / (2TP + FP + FN) of each class (NaN for absent classes)."""
    tp = confusion.diag().double()
    denominator = confusion.sum(0).double() + confusion.sum(1).double()
    return torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.full_like(tp, float("nan")))


def pixel_accuracy(confusion: torch.Tensor) -> float:
    """Share of pixels whose predicted class is right: trace / sum."""
    return float(confusion.diag().sum() / confusion.sum().clamp(min=1))


def class_support(label_batches: Iterable[torch.Tensor], num_classes: int) -> torch.Tensor:
    """Where each class ever appears in a set of label maps: bool [num_classes, H, W]."""
    support = None
    for labels in label_batches:
        present = torch.nn.functional.one_hot(labels.long(), num_classes).amax(0).permute(2, 0, 1).bool()
        support = present if support is None else support | present
    if support is None:
        raise ValueError("class_support needs at least one batch of label maps")
    return support
