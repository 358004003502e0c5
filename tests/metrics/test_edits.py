"""helpers.metrics.edits: known answers for validity, adaptation, diversity, monotonicity and localisation measures."""
from __future__ import annotations

import math

import pytest
import torch

from helpers import metrics


def test_dilate_grows_a_pixel_into_a_square():
    mask = torch.zeros(1, 7, 7, dtype=torch.bool)
    mask[0, 3, 3] = True
    grown = metrics.dilate(mask, 2)
    assert grown.sum() == 25 and grown[0, 1:6, 1:6].all()
    assert torch.equal(metrics.dilate(mask, 0), mask)
    with pytest.raises(ValueError, match="radius"):
        metrics.dilate(mask, -1)


def test_stray_pixels_counts_only_pixels_beyond_the_margin():
    support = torch.zeros(3, 10, 10, dtype=torch.bool)
    support[2, 0:3, 0:3] = True  # class 2 only ever appears in the top-left corner
    labels = torch.zeros(2, 10, 10, dtype=torch.long)
    labels[0, 4, 4] = 2  # 2 px from the support: allowed with margin 2
    labels[1, 9, 9] = 2  # far away
    labels[1, 0, 0] = 2  # inside
    assert metrics.stray_pixels(labels, 2, support, margin=2).tolist() == [0, 1]
    assert metrics.stray_pixels(labels, 2, support, margin=0).tolist() == [1, 1]


def test_area_range_and_share_in_range():
    areas = torch.arange(101)
    low, high = metrics.area_range(areas)
    assert (low, high) == pytest.approx((1.0, 99.0))
    assert metrics.share_in_range(torch.tensor([0, 1, 50, 99, 100]), (low, high)) == pytest.approx(3 / 5)


def test_other_parts_change_ignores_the_edited_part():
    before = torch.zeros(1, 4, 4, dtype=torch.long)
    before[0, 0, 0] = 1
    after = before.clone()
    after[0, 0, 1] = 1  # the edited part grows: not counted
    assert metrics.other_parts_change(before, after, part=1).tolist() == [0.0]
    after[0, 3, 3] = 2  # another part appears: 1 of the 14 pixels outside part 1 changed
    assert metrics.other_parts_change(before, after, part=1).tolist() == pytest.approx([1 / 14])


def test_pairwise_iou_distance_identical_disjoint_and_half():
    a = torch.zeros(4, 4, dtype=torch.bool)
    a[:2] = True
    b = ~a
    c = torch.zeros(4, 4, dtype=torch.bool)
    c[:1] = True  # IoU(a, c) = 4 / 8
    assert metrics.mean_pairwise_iou_distance(torch.stack([a, a])) == 0.0
    assert metrics.mean_pairwise_iou_distance(torch.stack([a, b])) == 1.0
    assert metrics.mean_pairwise_iou_distance(torch.stack([a, c])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.mean_pairwise_iou_distance(a[None])


def test_centroids():
    masks = torch.zeros(2, 5, 5, dtype=torch.bool)
    masks[0, 1, 1] = masks[0, 3, 3] = True
    centre = metrics.centroids(masks)
    assert centre[0].tolist() == [2.0, 2.0]
    assert torch.isnan(centre[1]).all()


def test_spearman_known_answers():
    x = torch.arange(6.0)
    assert metrics.spearman(x, x ** 3) == pytest.approx(1.0)
    assert metrics.spearman(x, -x) == pytest.approx(-1.0)
    # ties get average ranks: y ranks (1.5, 1.5, 3, 4) against x ranks (1..4)
    y = torch.tensor([1.0, 1.0, 2.0, 3.0])
    assert metrics.spearman(torch.arange(4.0), y) == pytest.approx(0.9486832980505138)
    assert math.isnan(metrics.spearman(x, torch.ones(6)))
    with pytest.raises(ValueError, match="same length"):
        metrics.spearman(x, x[:3])


def test_change_inside_share_hand_made():
    original = torch.zeros(2, 3, 4, 4)
    edited = original.clone()
    edited[0, 1, 0, 0] = 1.0  # squared change 1 inside
    edited[0, 2, 3, 3] = 2.0  # squared change 4 outside
    region = torch.zeros(2, 4, 4, dtype=torch.bool)
    region[:, :2, :2] = True
    share = metrics.change_inside_share(original, edited, region)
    assert share.dtype == torch.float64
    assert share[0].item() == pytest.approx(1 / 5)
    assert math.isnan(share[1].item())  # image 1 did not change: NaN, not 0


def test_change_inside_share_broadcasts_over_edits_and_draws():
    original = torch.zeros(2, 1, 3, 4, 4)  # [B, 1, 3, H, W] against edits [B, E, 3, H, W]
    edited = torch.zeros(2, 3, 3, 4, 4)
    edited[:, :, :, 0, 0] = 1.0  # every edit changes one pixel inside the region
    edited[1, 2, :, 3, 3] = 1.0  # and one edit of face 1 a pixel outside as well
    region = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    region[..., 0, 0] = True
    share = metrics.change_inside_share(original, edited, region)
    assert share.shape == (2, 3)
    assert share.tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 0.5]]


def test_l1_per_image():
    a = torch.zeros(3, 3, 2, 2)
    b = torch.zeros(3, 3, 2, 2)
    b[1] = 0.5
    b[2, 0, 0, 0] = 1.2
    assert metrics.l1_per_image(a, b).tolist() == pytest.approx([0.0, 0.5, 0.1])

