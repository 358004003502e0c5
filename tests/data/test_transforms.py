import pytest
import torch

from helpers.data.labels import (
    CELEBAMASK_HQ_CLASSES, HELEN_ID, ROI_NAMES, celebamask_hq_to_helen_table,
)
from helpers.data.transforms import Compose, MapLabels, OneHotParts, Resize, ROIImages, ToROI


def test_resize_known_answers():
    image = torch.zeros(3, 4, 4)
    image[:, :, 2:] = 1.0
    labels = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    item = {"image": image, "labels": labels, "attributes": torch.ones(2), "index": 7,
            "depth": torch.ones(1, 4, 4)}
    out = Resize(2)(item)
    # antialiased bilinear = a tent filter twice as wide: output pixel 0 (centre 0.5) weighs source pixels 0, 1, 2
    # by 0.75, 0.75, 0.25, so it reads 0.25 / 1.75 = 1/7 of the bright half
    assert out["image"].shape == (3, 2, 2)
    assert torch.allclose(out["image"][0], torch.tensor([[1 / 7, 6 / 7], [1 / 7, 6 / 7]]), atol=1e-5)
    assert torch.equal(out["labels"], torch.tensor([[0, 1], [2, 3]])) and out["labels"].dtype == torch.int64
    assert out["depth"].shape == (1, 2, 2) and out["index"] == 7 and out["attributes"].shape == (2,)
    assert item["image"].shape == (3, 4, 4)  # input untouched
    up = Resize(8)({"image": image, "labels": labels})
    assert torch.equal(up["labels"], labels.repeat_interleave(2, 0).repeat_interleave(2, 1))
    # antialias: a one-pixel checkerboard goes to about its mean (without it: samples of 0 or 1)
    checker = ((torch.arange(8)[:, None] + torch.arange(8)[None]) % 2).float().expand(3, 8, 8)
    assert torch.allclose(Resize(2)({"image": checker})["image"], torch.full((3, 2, 2), 0.5), atol=0.01)
    batched = Resize(2)({"image": image.expand(5, 3, 4, 4), "labels": labels.expand(5, 4, 4)})
    assert batched["image"].shape == (5, 3, 2, 2) and batched["labels"].shape == (5, 2, 2)


def test_map_labels_celebamask_to_helen():
    names = ["background", "skin", "eye_g", "l_eye", "mouth", "u_lip", "hair", "hat", "cloth", "l_ear"]
    ids = torch.tensor([[CELEBAMASK_HQ_CLASSES.index(n) for n in names]])
    out = MapLabels(celebamask_hq_to_helen_table())({"labels": ids})
    expected = ["background", "skin", "skin", "left_eye", "inner_mouth", "upper_lip", "hair", "background",
                "background", "skin"]
    assert out["labels"].tolist() == [[HELEN_ID[n] for n in expected]]
    assert torch.equal(MapLabels.celebamask_hq_to_helen()({"labels": ids})["labels"], out["labels"])
    with pytest.raises(ValueError, match="outside"):
        MapLabels(torch.arange(3))({"labels": torch.tensor([3])})


def test_roi_known_answer():
    h = HELEN_ID
    labels = torch.tensor([[h["hair"], h["skin"], h["nose"]],
                           [h["left_brow"], h["right_eye"], h["inner_mouth"]]])
    image = torch.arange(1, 19, dtype=torch.float32).reshape(3, 2, 3)
    out = ToROI()({"image": image, "labels": labels})
    assert out["roi_labels"].tolist() == [[1, 2, 3], [4, 4, 5]]
    roi = out["roi_images"]
    assert roi.shape == (5, 3, 2, 3)
    for k in range(5):
        mask = out["roi_labels"] == k + 1
        assert torch.equal(roi[k], image * mask), ROI_NAMES[k]
    assert torch.equal(roi.sum(0), image)  # no background pixel here: the ROIs partition the image
    sub = ROIImages(["nose", "hair"])({"image": image, "labels": labels})
    assert sub["roi_images"].shape == (2, 3, 2, 3)
    assert torch.equal(sub["roi_images"][0], image * (labels == h["nose"]))
    assert torch.equal(sub["roi_images"][1], image * (labels == h["hair"]))
    batched = ToROI()({"image": image.expand(4, 3, 2, 3), "labels": labels.expand(4, 2, 3)})
    assert batched["roi_images"].shape == (4, 5, 3, 2, 3) and torch.equal(batched["roi_images"][2], roi)
    with pytest.raises(ValueError, match="unknown ROI"):
        ToROI(["ears"])


def test_one_hot_parts():
    labels = torch.tensor([[0, 1], [2, 2]])
    out = OneHotParts(3)({"labels": labels})
    assert out["parts"].dtype == torch.float32 and out["parts"].shape == (2, 2, 2)
    assert out["parts"].tolist() == [[[0, 1], [0, 0]], [[0, 0], [1, 1]]]
    assert (1 - out["parts"].sum(0)).tolist() == [[1, 0], [0, 0]]  # background implied
    full = OneHotParts(3, drop_background=False)({"labels": labels})["parts"]
    assert full.shape == (3, 2, 2) and full[0].tolist() == [[1, 0], [0, 0]]
    with pytest.raises(ValueError):
        OneHotParts(2)({"labels": labels})


def test_compose():
    h = HELEN_ID
    labels = torch.full((4, 4), h["nose"])
    t = Compose([Resize(2), ToROI(), OneHotParts(11)])
    out = t({"image": torch.ones(3, 4, 4), "labels": labels})
    assert out["roi_images"].shape == (5, 3, 2, 2) and out["parts"].shape == (10, 2, 2)
    assert torch.equal(out["roi_images"][2], torch.ones(3, 2, 2)) and out["roi_images"][0].sum() == 0
    assert "Resize(2)" in repr(t)
