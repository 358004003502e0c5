"""How well an image is reconstructed where a reader looks: L1 inside a region, and sharpness against the original.

A whole-image L1 is dominated by the large, smooth regions (background, skin, hair): a decoder can reach a low one
while the eyes and mouth, a few percent of the pixels, stay blurred. These two measures make that visible.
"""
from __future__ import annotations

import torch


def _check_pair(reconstruction: torch.Tensor, image: torch.Tensor) -> None:
    """Both arguments must be image batches [B,C,H,W] of one shape."""
    if reconstruction.shape != image.shape or image.dim() != 4:
        raise ValueError(f"need two image batches [B,C,H,W] of one shape, got {tuple(reconstruction.shape)} and "
                         f"{tuple(image.shape)}")


def region_l1(reconstruction: torch.Tensor, image: torch.Tensor, region: torch.Tensor) -> float:
    """Mean absolute difference over the pixels of `region` (bool [B,H,W]) of images [B,C,H,W]; NaN if it is empty."""
    _check_pair(reconstruction, image)
    if region.shape != (image.shape[0], *image.shape[2:]) or region.dtype != torch.bool:
        raise ValueError(f"region must be bool [B,H,W] = {(image.shape[0], *image.shape[2:])}, got "
                         f"{region.dtype} {tuple(region.shape)}")
    pixels = region.sum().item() * image.shape[1]
    if pixels == 0:
        return float("nan")
    error = (reconstruction.float() - image.float()).abs() * region.unsqueeze(1)
    return error.sum().item() / pixels


def gradient_energy(image: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """Mean |horizontal| + |vertical| finite difference of images [B,C,H,W] -> [B], over `region` [B,H,W] if given."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs()[..., :-1, :]
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs()[..., :, :-1]
    energy = (dx + dy).float().mean(1)  # [B, H-1, W-1]
    if region is None:
        return energy.flatten(1).mean(1)
    inside = (region[..., :-1, :-1] & region[..., 1:, :-1] & region[..., :-1, 1:]).float()
    return (energy * inside).flatten(1).sum(1) / inside.flatten(1).sum(1)


def sharpness_ratio(reconstruction: torch.Tensor, image: torch.Tensor, region: torch.Tensor | None = None) -> float:
    """Gradient energy of the reconstructions over that of the originals (1 = as much detail; blur < 1), pooled."""
    _check_pair(reconstruction, image)
    ours, theirs = gradient_energy(reconstruction, region), gradient_energy(image, region)
    keep = theirs.isfinite() & ours.isfinite()
    return (ours[keep].sum() / theirs[keep].sum()).item()
