"""helpers.metrics.activeness: known answers for the activeness map (paper 000, Eq. 3) and the ACS."""
import math

import pytest
import torch

from helpers import metrics


def _column_decoder(size: int, n: int):
    """A decoder where structure channel i (its mean over positions) paints only column block i of the image."""
    def decode(structure, texture):
        out = torch.zeros(structure.shape[0], 3, size, size)
        for i in range(n):
            out[:, :, :, 2 * i:2 * i + 2] = structure[:, i].mean(dim=(1, 2))[:, None, None, None]
        return out
    return decode


def _column_regions(batch: int, size: int, n: int) -> torch.Tensor:
    regions = torch.zeros(batch, n, size, size, dtype=torch.bool)
    for i in range(n):
        regions[:, i, :, 2 * i:2 * i + 2] = True
    return regions


def test_activeness_of_a_disentangled_decoder_is_diagonal_with_the_known_variance():
    decode, regions = _column_decoder(8, 4), _column_regions(3, 8, 4)
    structure, texture = torch.randn(3, 4, 2, 2), torch.randn(3, 5)
    amap = metrics.activeness_map(decode, structure, texture, [[0], [1], [2], [3]], regions, noise_std=0.1,
                                  n_noise=400, generator=torch.Generator().manual_seed(0))
    assert amap.shape == (4, 4)
    assert torch.count_nonzero(amap - torch.diag(amap.diag())) == 0
    # the mean of 4 positions of N(0, 0.1^2) noise has variance 0.01 / 4
    assert torch.allclose(amap.diag(), torch.full((4,), 0.0025, dtype=torch.float64), rtol=0.15)
    assert metrics.activeness_compaction_score(amap) == 1.0
    # chunked decoding gives the same map for the same noise
    chunked = metrics.activeness_map(decode, structure, texture, [[0], [1], [2], [3]], regions, noise_std=0.1,
                                     n_noise=400, generator=torch.Generator().manual_seed(0), max_batch=7)
    assert torch.allclose(chunked, amap)


def test_activeness_of_a_decoder_ignoring_the_structure_is_zero_and_slices_may_be_wide():
    regions = _column_regions(2, 8, 4)
    amap = metrics.activeness_map(lambda s, t: t[:, :3, None, None].expand(-1, 3, 8, 8), torch.randn(2, 4, 2, 2),
                                  torch.randn(2, 5), [[0], [1, 2], [3]], regions)
    assert amap.shape == (3, 4) and amap.abs().sum() == 0
    assert math.isnan(metrics.activeness_compaction_score(torch.zeros(3, 3)))


def test_activeness_slice_entangled_over_two_regions_and_absent_regions():
    decode = _column_decoder(8, 2)
    regions = _column_regions(2, 8, 3)
    regions[:, 2] = False  # region 2 appears in no image
    regions[:, 1, :, 0:2] = True  # region 1 also covers column block 0 (where channel 0 acts)
    amap = metrics.activeness_map(decode, torch.randn(2, 2, 2, 2), torch.randn(2, 5), [[0], [1]], regions,
                                  n_noise=64, generator=torch.Generator().manual_seed(1))
    assert math.isnan(amap[0, 2]) and math.isnan(amap[1, 2])
    assert torch.allclose(amap[0, 1], amap[0, 0] / 2)  # half of region 1 sees channel 0's variance


def test_activeness_refuses_bad_arguments():
    with pytest.raises(ValueError, match="n_noise"):
        metrics.activeness_map(lambda s, t: s, torch.zeros(1, 2, 2, 2), torch.zeros(1, 3), [[0]],
                               torch.ones(1, 1, 2, 2, dtype=torch.bool), n_noise=1)
    with pytest.raises(ValueError, match="regions"):
        metrics.activeness_map(lambda s, t: s, torch.zeros(1, 2, 2, 2), torch.zeros(1, 3), [[0]],
                               torch.ones(2, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="square"):
        metrics.activeness_compaction_score(torch.ones(2, 3))


def test_acs_known_answer():
    amap = torch.tensor([[3.0, 1.0], [0.0, 1.0]])
    assert metrics.activeness_compaction_score(amap) == pytest.approx(4 / 5)
    assert metrics.activeness_compaction_score(torch.ones(5, 5)) == pytest.approx(0.2)
