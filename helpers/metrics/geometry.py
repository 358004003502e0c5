"""3D reconstructions against the true depth: unsup3d's scale-invariant depth error and mean angle deviation, the
measures its paper reports on synthetic faces (and chapter 4 on SynthFaces)."""
from __future__ import annotations

import torch
from torch import Tensor

from .. import render


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1)


def scale_invariant_depth_error(depth: Tensor, true_depth: Tensor, mask: Tensor) -> Tensor:
    """SIDE per image [B]: sqrt(mean(delta^2) - mean(delta)^2), delta = log depth - log true depth, over `mask`."""
    delta = depth.clamp_min(1e-6).log() - true_depth.clamp_min(1e-6).log()
    return (_masked_mean(delta ** 2, mask) - _masked_mean(delta, mask) ** 2).clamp_min(0).sqrt()


def mean_angle_deviation(depth: Tensor, true_depth: Tensor, mask: Tensor, fov: float = 10.0) -> Tensor:
    """MAD per image [B]: mean angle in degrees between the normals of the two view depth maps, over `mask`."""
    n1, n2 = render.depth_to_normals(depth, fov), render.depth_to_normals(true_depth, fov)
    cross = torch.linalg.cross(n1, n2, dim=1).norm(dim=1, keepdim=True)
    angle = torch.rad2deg(torch.atan2(cross, (n1 * n2).sum(1, keepdim=True)))  # exact near 0, unlike acos
    return _masked_mean(angle, mask)
