"""Measures of what an edit does: of a label map (paper 001, Sec. 4.2) and of an image (papers 001 and 002).

Paper 001 judges its generated, perturbed and interpolated parts by eye (Fig. 3-5). These functions turn what the
figures show into numbers, on label maps [B, H, W] of class ids:

- validity: pixels of a class far from anywhere that class appears in the data (`stray_pixels`), and whether a part's
  area stays inside the range the data shows (`area_range`, `share_in_range`);
- adaptation: how much the rest of the mask changes when one part is edited (`other_parts_change`);
- diversity: how different several generations of one part are (`mean_pairwise_iou_distance`);
- monotonicity: whether a part's area and centroid move steadily along an interpolation (`spearman`).

And on images: where an edit's change lands (`change_inside_share`: chapter 1's mask edits rendered by the SIS
network, chapter 3's style edits) and how far two images are (`l1_per_image`).
"""
from __future__ import annotations

import itertools
import math

import torch
from scipy import stats
import torch.nn.functional as F


def dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Boolean masks [..., H, W] grown by `radius` pixels (a (2r+1) x (2r+1) square neighbourhood)."""
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if radius == 0:
        return masks.bool()
    shape = masks.shape
    flat = masks.reshape(-1, 1, *shape[-2:]).float()
    grown = F.max_pool2d(flat, kernel_size=2 * radius + 1, stride=1, padding=radius)
    return grown.reshape(shape).bool()


def stray_pixels(labels: torch.Tensor, part: int, support: torch.Tensor, margin: int) -> torch.Tensor:
    """Pixels of class `part` more than `margin` px from where the class ever appears in the data, per map [B].

    `support` is the bool [num_classes, H, W] of helpers.metrics.class_support over the training label maps.
    """
    allowed = dilate(support[part], margin)
    return ((labels == part) & ~allowed).flatten(1).sum(dim=1)


def part_areas(labels: torch.Tensor, part: int) -> torch.Tensor:
    """Pixels of class `part` in each label map [B] (int64)."""
    return (labels == part).flatten(1).sum(dim=1)


def area_range(areas: torch.Tensor, low: float = 0.01, high: float = 0.99) -> tuple[float, float]:
    """The `low` and `high` quantiles of a part's areas over the data (its 1-99 % range by default)."""
    values = areas.double()
    return float(torch.quantile(values, low)), float(torch.quantile(values, high))


def share_in_range(areas: torch.Tensor, bounds: tuple[float, float]) -> float:
    """Share of `areas` inside the closed interval `bounds`."""
    low, high = bounds
    return float(((areas >= low) & (areas <= high)).double().mean())


def other_parts_change(before: torch.Tensor, after: torch.Tensor, part: int) -> torch.Tensor:
    """Share of the pixels outside the edited part (before and after) whose label changed, per map [B].

    0 means the edit left the rest of the mask untouched; larger values mean the other parts moved with it.
    """
    outside = (before != part) & (after != part)
    changed = (before != after) & outside
    return changed.flatten(1).sum(dim=1).double() / outside.flatten(1).sum(dim=1).clamp(min=1).double()


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boolean masks [..., H, W] (1 when both are empty)."""
    inter = (a & b).flatten(-2).sum(-1).double()
    union = (a | b).flatten(-2).sum(-1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def mean_pairwise_iou_distance(masks: torch.Tensor) -> float:
    """Mean of 1 - IoU over all pairs of boolean masks [N, H, W] (N >= 2): 0 = identical, 1 = disjoint."""
    if len(masks) < 2:
        raise ValueError(f"need at least 2 masks, got {len(masks)}")
    pairs = torch.tensor(list(itertools.combinations(range(len(masks)), 2)))
    return float((1.0 - iou(masks[pairs[:, 0]], masks[pairs[:, 1]])).mean())


def centroids(masks: torch.Tensor) -> torch.Tensor:
    """Centre of mass (row, column) of boolean masks [B, H, W], in pixels [B, 2] (NaN for empty masks)."""
    h, w = masks.shape[-2:]
    weights = masks.double()
    total = weights.flatten(1).sum(dim=1)
    rows = (weights.sum(dim=2) * torch.arange(h, dtype=torch.double)).sum(dim=1)
    cols = (weights.sum(dim=1) * torch.arange(w, dtype=torch.double)).sum(dim=1)
    centre = torch.stack([rows, cols], dim=1) / total[:, None]
    return torch.where(total[:, None] > 0, centre, torch.full_like(centre, float("nan")))


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rank correlation of two 1-D sequences (ties get average ranks; NaN when either is constant)."""
    if x.shape != y.shape or x.dim() != 1 or len(x) < 2:
        raise ValueError(f"need two 1-D sequences of the same length >= 2, got {tuple(x.shape)} and {tuple(y.shape)}")
    if bool((x == x[0]).all()) or bool((y == y[0]).all()):
        return float("nan")
    return float(stats.spearmanr(x.double().numpy(), y.double().numpy()).statistic)


def change_inside_share(original: torch.Tensor, edited: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Localisation of an edit: share of sum_p |edited(p) - original(p)|^2 that lies inside `region`, float64 [...].

    Images [..., 3, H, W] (broadcast), region bool [..., H, W] broadcastable to the change map; NaN where nothing
    changed. With Algorithm 2's final blur (paper 002), pass blur3(original, scale) so that the blur itself is not
    counted.
    """
    change = (edited.double() - original.double()).pow(2).sum(-3)  # [..., H, W]
    inside = (change * region.to(change.device, torch.float64)).sum((-2, -1))
    total = change.sum((-2, -1))
    return torch.where(total > 0, inside / torch.where(total > 0, total, 1.0), math.nan)


def l1_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of each pair of images [B, ...] -> [B] (the SAE's L1 reconstruction loss per image)."""
    return (a.float() - b.float()).abs().flatten(1).mean(1)
