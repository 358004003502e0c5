"""helpers.metrics.segmentation: known answers on tiny label maps."""
import math

import torch

from helpers import metrics


def test_class_pixel_counts_and_frequencies_on_a_known_map():
    labels = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 2], [0, 0, 0, 0], [0, 0, 0, 0]]])
    counts = metrics.class_pixel_counts([labels], 3)
    assert counts.tolist() == [12, 3, 1]
    assert torch.allclose(metrics.class_frequencies(counts), torch.tensor([12 / 16, 3 / 16, 1 / 16], dtype=torch.float64))


def test_class_pixel_counts_refuses_out_of_range_ids():
    try:
        metrics.class_pixel_counts([torch.tensor([[0, 5]])], 3)
    except ValueError as error:
        assert "0..2" in str(error)
    else:
        raise AssertionError("an id of 5 with 3 classes must be refused")


def test_confusion_iou_f1_accuracy_known_answer():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 0]])
    predicted = torch.tensor([[0, 1, 1, 1], [2, 2, 0, 0]])
    confusion = metrics.confusion_matrix(predicted, target, 4)
    assert confusion[:3, :3].tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    iou = metrics.iou_per_class(confusion)
    assert math.isclose(iou[0], 2 / 4) and math.isclose(iou[1], 2 / 3) and math.isclose(iou[2], 2 / 3)
    assert math.isnan(iou[3])  # class 3 never appears
    f1 = metrics.f1_per_class(confusion)
    assert math.isclose(f1[0], 4 / 6) and math.isclose(f1[1], 4 / 5) and math.isclose(f1[2], 4 / 5)
    assert math.isclose(metrics.pixel_accuracy(confusion), 6 / 8)


def test_class_support_is_the_union_of_occurrences():
    a = torch.tensor([[[0, 1], [0, 0]]])
    b = torch.tensor([[[0, 0], [2, 0]]])
    support = metrics.class_support([a, b], 3)
    assert support[1].tolist() == [[False, True], [False, False]]
    assert support[2].tolist() == [[False, False], [True, False]]
    assert support[0].tolist() == [[True, True], [True, True]]
