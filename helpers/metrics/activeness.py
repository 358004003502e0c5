"""Disentanglement of a sliced structure code: paper 000's activeness map (Eq. 3) and its compaction score (ACS)."""
from __future__ import annotations

from typing import Callable, Sequence

import torch


def activeness_map(decode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], structure: torch.Tensor,
                   texture: torch.Tensor, slices: Sequence[Sequence[int]], regions: torch.Tensor,
                   noise_std: float = 0.01, n_noise: int = 8, generator: torch.Generator | None = None,
                   max_batch: int | None = None) -> torch.Tensor:
    """Average activeness map of paper 000, Eq. 3: Map_ij = E_x A_ij, as float64 [n_slices, n_regions].

    A_ij (one image x) is the per-pixel variance of decode(S_s masked to slice i + n, S_t) over `n_noise` draws of
    n = noise_std * N(0, 1) added to the channels of slice i only (other channels zero), averaged over RGB and over
    the pixels of region j (`regions` bool [B, n_regions, H, W]); Map_ij averages A_ij over the images where region j
    is present (NaN if it is present in none). `structure` [B, C, ...] and `texture` [B, ...] are the codes of the
    batch; `slices` lists the channel indices of each slice along dim 1 of `structure`. All slices and noise draws go
    through `decode` as one batch of n_slices * n_noise * B items, or in chunks of at most `max_batch` items.
    """
    if n_noise < 2:
        raise ValueError(f"n_noise={n_noise}: a variance needs at least 2 noise draws")
    if regions.dim() != 4 or regions.shape[0] != structure.shape[0]:
        raise ValueError(f"regions must be bool [batch={structure.shape[0]}, n_regions, H, W], got "
                         f"{tuple(regions.shape)}")
    b, c = structure.shape[:2]
    k = len(slices)
    masks = torch.zeros(k, c, dtype=structure.dtype, device=structure.device)
    for i, channels in enumerate(slices):
        masks[i, list(channels)] = 1.0
    view = (k, 1, 1, c) + (1,) * (structure.dim() - 2)
    device = generator.device if generator is not None else structure.device
    noise = torch.randn((k, n_noise, b, *structure.shape[1:]), generator=generator, device=device)
    noise = noise.to(structure.device, structure.dtype) * noise_std
    codes = (masks.view(view) * (structure[None, None] + noise)).flatten(0, 2)  # [k * n_noise * B, C, ...]
    textures = texture.repeat(k * n_noise, *([1] * (texture.dim() - 1)))
    step = max_batch or codes.shape[0]
    images = torch.cat([decode(codes[s:s + step], textures[s:s + step]).float()
                        for s in range(0, codes.shape[0], step)])
    images = images.view(k, n_noise, b, *images.shape[1:])
    variance = images.var(dim=1).mean(dim=2)  # per pixel over the noise draws, mean over RGB: [k, B, H, W]
    weights = regions.to(variance.device, torch.float64)  # [B, n_regions, H, W]
    area = weights.sum(dim=(2, 3))  # [B, n_regions]
    per_image = torch.einsum("kbhw,brhw->kbr", variance.double(), weights) / area.clamp(min=1)  # A_ij per image
    present = (area > 0).double()
    count = present.sum(0)
    return torch.where(count > 0, (per_image * present).sum(1) / count.clamp(min=1), float("nan"))


def activeness_compaction_score(activeness: torch.Tensor) -> float:
    """ACS of paper 000: trace(Map) / sum(Map) of a square activeness map (NaN when the map sums to 0)."""
    if activeness.dim() != 2 or activeness.shape[0] != activeness.shape[1]:
        raise ValueError(f"the ACS needs a square activeness map [n, n] (as many slices as regions), got "
                         f"{tuple(activeness.shape)}")
    total = activeness.double().sum()
    return float(activeness.double().trace() / total) if total != 0 else float("nan")
