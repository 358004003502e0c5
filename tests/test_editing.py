"""helpers.editing: known answers for validity, adaptation, diversity and monotonicity measures."""
from __future__ import annotations

import math

import pytest
import torch

from helpers import editing


def test_dilate_grows_a_pixel_into_a_square():
    mask = torch.zeros(1, 7, 7, dtype=torch.bool)
    mask[0, 3, 3] = True
    grown = editing.dilate(mask, 2)
    assert grown.sum() == 25 and grown[0, 1:6, 1:6].all()
    assert torch.equal(editing.dilate(mask, 0), mask)
    with pytest.raises(ValueError, match="radius"):
        editing.dilate(mask, -1)


def test_stray_pixels_counts_only_pixels_beyond_the_margin():
    support = torch.zeros(3, 10, 10, dtype=torch.bool)
    support[2, 0:3, 0:3] = True  # class 2 only ever appears in the top-left corner
    labels = torch.zeros(2, 10, 10, dtype=torch.long)
    labels[0, 4, 4] = 2  # 2 px from the support: allowed with margin 2
    labels[1, 9, 9] = 2  # far away
    labels[1, 0, 0] = 2  # inside
    assert editing.stray_pixels(labels, 2, support, margin=2).tolist() == [0, 1]
    assert editing.stray_pixels(labels, 2, support, margin=0).tolist() == [1, 1]


def test_area_range_and_share_in_range():
    areas = torch.arange(101)
    low, high = editing.area_range(areas)
    assert (low, high) == pytest.approx((1.0, 99.0))
    assert editing.share_in_range(torch.tensor([0, 1, 50, 99, 100]), (low, high)) == pytest.approx(3 / 5)


def test_other_parts_change_ignores_the_edited_part():
    before = torch.zeros(1, 4, 4, dtype=torch.long)
    before[0, 0, 0] = 1
    after = before.clone()
    after[0, 0, 1] = 1  # the edited part grows: not counted
    assert editing.other_parts_change(before, after, part=1).tolist() == [0.0]
    after[0, 3, 3] = 2  # another part appears: 1 of the 14 pixels outside part 1 changed
    assert editing.other_parts_change(before, after, part=1).tolist() == pytest.approx([1 / 14])


def test_pairwise_iou_distance_identical_disjoint_and_half():
    a = torch.zeros(4, 4, dtype=torch.bool)
    a[:2] = True
    b = ~a
    c = torch.zeros(4, 4, dtype=torch.bool)
    c[:1] = True  # IoU(a, c) = 4 / 8
    assert editing.mean_pairwise_iou_distance(torch.stack([a, a])) == 0.0
    assert editing.mean_pairwise_iou_distance(torch.stack([a, b])) == 1.0
    assert editing.mean_pairwise_iou_distance(torch.stack([a, c])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least 2"):
        editing.mean_pairwise_iou_distance(a[None])


def test_centroids():
    masks = torch.zeros(2, 5, 5, dtype=torch.bool)
    masks[0, 1, 1] = masks[0, 3, 3] = True
    centre = editing.centroids(masks)
    assert centre[0].tolist() == [2.0, 2.0]
    assert torch.isnan(centre[1]).all()


def test_spearman_known_answers():
    x = torch.arange(6.0)
    assert editing.spearman(x, x ** 3) == pytest.approx(1.0)
    assert editing.spearman(x, -x) == pytest.approx(-1.0)
    # ties get average ranks: y ranks (1.5, 1.5, 3, 4) against x ranks (1..4)
    y = torch.tensor([1.0, 1.0, 2.0, 3.0])
    assert editing.spearman(torch.arange(4.0), y) == pytest.approx(0.9486832980505138)
    assert math.isnan(editing.spearman(x, torch.ones(6)))
    with pytest.raises(ValueError, match="same length"):
        editing.spearman(x, x[:3])
