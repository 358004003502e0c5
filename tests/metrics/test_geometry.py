"""helpers.metrics.geometry: SIDE and MAD, known answers."""
import math

import torch

from helpers import metrics


def test_side_and_mad_are_zero_for_the_truth_and_side_ignores_scale():
    torch.manual_seed(2)
    depth = 1 + 0.05 * torch.rand(2, 1, 12, 12)
    mask = torch.ones(2, 1, 12, 12)
    assert torch.allclose(metrics.scale_invariant_depth_error(depth, depth, mask), torch.zeros(2), atol=1e-6)
    assert torch.allclose(metrics.scale_invariant_depth_error(1.3 * depth, depth, mask), torch.zeros(2), atol=1e-6)
    flat = torch.ones(2, 1, 12, 12)
    assert torch.allclose(metrics.mean_angle_deviation(depth, depth, mask), torch.zeros(2), atol=1e-3)
    assert metrics.mean_angle_deviation(depth, flat, mask).min() > 0.1
    # SIDE of a known log error: delta = +-0.1 on half the pixels each -> std 0.1
    shifted = depth * torch.where(torch.arange(12) < 6, math.exp(0.1), math.exp(-0.1)).view(1, 1, 1, 12)
    assert torch.allclose(metrics.scale_invariant_depth_error(shifted, depth, mask), torch.full((2,), 0.1), atol=1e-5)
