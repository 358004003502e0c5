import math

import pytest
import torch
import torch.nn.functional as F

from helpers import metrics


def test_region_l1_counts_only_the_region():
    image = torch.zeros(2, 3, 4, 4)
    rec = image.clone()
    rec[0, :, 0, 0] = 0.5  # inside the region
    rec[1, :, 3, 3] = 1.0  # outside it
    region = torch.zeros(2, 4, 4, dtype=torch.bool)
    region[0, 0, :2] = True
    region[1, 0, 0] = True
    assert metrics.region_l1(rec, image, region) == pytest.approx(0.5 * 3 / (3 * 3))


def test_region_l1_empty_region_is_nan_and_bad_shapes_are_errors():
    image = torch.zeros(1, 3, 4, 4)
    assert math.isnan(metrics.region_l1(image, image, torch.zeros(1, 4, 4, dtype=torch.bool)))
    with pytest.raises(ValueError, match="region"):
        metrics.region_l1(image, image, torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="one shape"):
        metrics.region_l1(image, image[..., :2], torch.zeros(1, 4, 4, dtype=torch.bool))


def test_gradient_energy_of_a_ramp():
    ramp = torch.arange(5.0).repeat(5, 1)[None, None]  # +1 per column, constant down the rows
    assert metrics.gradient_energy(ramp).item() == pytest.approx(1.0)
    assert metrics.gradient_energy(torch.ones(1, 3, 5, 5)).item() == 0.0


def test_sharpness_ratio_is_one_for_the_image_and_below_one_for_a_blur():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(4, 3, 16, 16, generator=g)
    assert metrics.sharpness_ratio(image, image) == pytest.approx(1.0)
    blurred = F.avg_pool2d(image, 3, stride=1, padding=1, count_include_pad=False)
    assert metrics.sharpness_ratio(blurred, image) < 0.6
    region = torch.zeros(4, 16, 16, dtype=torch.bool)
    region[:, 4:12, 4:12] = True
    assert metrics.sharpness_ratio(2 * image, image, region) == pytest.approx(2.0)
