"""Small transforms on item dicts (as made by FaceDataset / SynthFaces), unbatched or batched.

Every transform takes a dict and returns a new dict (the input is not modified). Spatial tensors have the spatial
dimensions last: ``image`` [...,3,H,W], ``labels`` [...,H,W], so the same transform works on one item or a batch.

- ``Resize(resolution)``: images and other continuous maps bilinear with antialias; labels and masks nearest.
- ``MapLabels(table)``: ``labels = table[labels]``, e.g. CelebAMask-HQ -> HELEN ids with
  ``MapLabels(celebamask_hq_to_helen_table())`` (or ``MapLabels.celebamask_hq_to_helen()``).
- ``ToROI(roi_names)`` (alias ``ROIImages``): from HELEN labels, ``roi_labels`` [...,H,W] (0 background, 1..5 =
  ROI_NAMES in order) and ``roi_images`` [...,K,3,H,W] = the image with only that ROI kept, black elsewhere.
- ``OneHotParts(num_classes, drop_background=True)``: ``parts`` float32 [...,C',H,W] one-hot masks.
- ``Compose(transforms)``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .labels import ROI_NAMES, celebamask_hq_to_helen_table, helen_to_roi_table

def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label maps [..., H, W] of class ids -> float32 one-hot masks [..., num_classes, H, W]."""
    return F.one_hot(labels.long(), num_classes).movedim(-1, -3).float()


# Keys resized with bilinear + antialias (continuous values) and with nearest (ids, masks).
CONTINUOUS_KEYS = ("image", "albedo", "depth", "roi_images")
DISCRETE_KEYS = ("labels", "roi_labels", "parts", "mask", "masks")


def _resize(x: torch.Tensor, size: int, spatial_dims: int, discrete: bool) -> torch.Tensor:
    """Resize the last two dims of x to size x size (x may have any leading dims)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, *x.shape[-2:])
    if discrete:
        # nearest-exact samples pixel centres (as PIL's NEAREST): a 2x downsampling keeps pixel 2i+1
        out = F.interpolate(flat.float(), size=(size, size), mode="nearest-exact").to(x.dtype)
    else:
        dtype = x.dtype if x.is_floating_point() else torch.float32
        out = F.interpolate(flat.to(dtype), size=(size, size), mode="bilinear", align_corners=False,
                            antialias=True).to(dtype)
    return out.reshape(*lead, size, size)


class Resize:
    """Resize every spatial entry to ``resolution``: CONTINUOUS_KEYS bilinear/antialias, DISCRETE_KEYS nearest.

    Other tensors whose last two dims equal the image's are resized too: nearest when integer or bool, bilinear
    otherwise. Non-spatial entries (attributes, view, index, ...) pass through.
    """

    def __init__(self, resolution: int, continuous_keys: Sequence[str] = CONTINUOUS_KEYS,
                 discrete_keys: Sequence[str] = DISCRETE_KEYS):
        if int(resolution) <= 0:
            raise ValueError(f"resolution must be positive, got {resolution}")
        self.resolution = int(resolution)
        self.continuous_keys = tuple(continuous_keys)
        self.discrete_keys = tuple(discrete_keys)

    def __call__(self, item: dict) -> dict:
        out = dict(item)
        image = item.get("image")
        hw = tuple(image.shape[-2:]) if isinstance(image, torch.Tensor) else None
        for key, value in item.items():
            if not isinstance(value, torch.Tensor) or value.dim() < 2:
                continue
            if key in self.discrete_keys:
                discrete = True
            elif key in self.continuous_keys:
                discrete = False
            elif hw is not None and tuple(value.shape[-2:]) == hw and value.dim() >= 3:
                discrete = not value.is_floating_point()
            else:
                continue
            out[key] = _resize(value, self.resolution, 2, discrete)
        return out

    def __repr__(self) -> str:
        return f"Resize({self.resolution})"


class MapLabels:
    """``item[key] = table[item[key]]``: convert label ids with an integer lookup table."""

    def __init__(self, table, key: str = "labels"):
        self.table = torch.as_tensor(table, dtype=torch.long)
        self.key = key

    @classmethod
    def celebamask_hq_to_helen(cls) -> "MapLabels":
        return cls(celebamask_hq_to_helen_table())

    def __call__(self, item: dict) -> dict:
        labels = item[self.key]
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(self.table)):
            raise ValueError(f"{self.key} has ids outside 0..{len(self.table) - 1} of the lookup table")
        return {**item, self.key: self.table[labels.long()]}

    def __repr__(self) -> str:
        return f"MapLabels({len(self.table)} ids)"


class ToROI:
    """Latents2Segments ROI inputs from HELEN ``labels`` and ``image``.

    Adds ``roi_labels`` int64 [...,H,W] (0 background, 1..5 = ROI_NAMES in order, always the full ROI ids) and,
    when ``images`` is true, ``roi_images`` float [...,K,3,H,W]: slice k is the image where the pixel belongs to
    ``roi_names[k]`` and 0 (black) elsewhere. ``roi_names`` selects and orders the slices (default all five).
    """

    def __init__(self, roi_names: Sequence[str] = ROI_NAMES, images: bool = True):
        unknown = [r for r in roi_names if r not in ROI_NAMES]
        if unknown:
            raise ValueError(f"unknown ROI names {unknown}; allowed: {list(ROI_NAMES)}")
        self.roi_names = tuple(roi_names)
        self.roi_ids = [ROI_NAMES.index(r) + 1 for r in self.roi_names]
        self.images = images
        self.table = helen_to_roi_table()

    def __call__(self, item: dict) -> dict:
        labels = item["labels"].long()
        if labels.numel() and int(labels.max()) >= len(self.table):
            raise ValueError(f"labels has ids >= {len(self.table)}: ToROI expects HELEN ids "
                             "(use MapLabels.celebamask_hq_to_helen() first for CelebAMask-HQ)")
        roi = self.table[labels]
        out = {**item, "roi_labels": roi}
        if self.images:
            image = item["image"]
            ids = torch.tensor(self.roi_ids, dtype=torch.long)
            keep = (roi.unsqueeze(-3) == ids.view(-1, 1, 1))  # [...,K,H,W]
            out["roi_images"] = image.unsqueeze(-4) * keep.unsqueeze(-3).to(image.dtype)  # [...,K,3,H,W]
        return out

    def __repr__(self) -> str:
        return f"ToROI({list(self.roi_names)})"


ROIImages = ToROI


class OneHotParts:
    """One-hot part masks ``parts`` float32 [...,C',H,W] from ``labels`` [...,H,W].

    With ``drop_background`` (default, as the mask VAE of paper 001), C' = num_classes - 1 and channel c - 1 is
    the mask of class c (c = 1..num_classes-1): background is not a channel, it is implied where every channel is
    0 (background = 1 - parts.sum(-3)). Without it, C' = num_classes and channel c is class c.
    """

    def __init__(self, num_classes: int, drop_background: bool = True, key: str = "labels", out_key: str = "parts"):
        self.num_classes = int(num_classes)
        self.drop_background = drop_background
        self.key, self.out_key = key, out_key

    def __call__(self, item: dict) -> dict:
        labels = item[self.key].long()
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"{self.key} has ids outside 0..{self.num_classes - 1}")
        parts = one_hot(labels, self.num_classes)
        if self.drop_background:
            parts = parts[..., 1:, :, :]
        return {**item, self.out_key: parts}

    def __repr__(self) -> str:
        return f"OneHotParts({self.num_classes}, drop_background={self.drop_background})"


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[dict], dict]]):
        self.transforms = list(transforms)

    def __call__(self, item: dict) -> dict:
        for t in self.transforms:
            item = t(item)
        return item

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(map(repr, self.transforms)) + "])"
