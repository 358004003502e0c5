"""helpers.models.l2s: slices as channel masks, ROI decoding, segmentation rules and a 2-step run from an SAE state."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from helpers.data.memory import InMemory
from helpers.data.transforms import ToROI
from helpers.metrics import confusion_matrix, f1_per_class
from helpers.models import l2s, sae
from helpers.train import train


def tiny(dataset: str = "synthfaces") -> l2s.L2SConfig:
    return l2s.scaled_config(32, 2, dataset)


def test_slices_of_the_paper_and_of_helen():
    cfg = l2s.paper_config()
    assert cfg.slices == ((0, 2), (2, 4), (4, 6), (6, 7), (7, 8))
    assert cfg.roi_names == ("hair", "skin", "nose", "eyes", "lips_mouth")
    assert cfg.channel_lists == [[0, 1], [2, 3], [4, 5], [6], [7]]
    assert l2s.slice_masks(cfg).tolist() == [
        [1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 0, 1]]
    helen = tiny("helen")
    assert helen.slices == ((0, 4), (4, 8)) and helen.roi_names == ("hair", "skin")
    json.dumps(dataclasses.asdict(cfg))


def test_masked_structures_zero_the_other_channels_without_renormalising():
    cfg = l2s.paper_config()
    structure = sae.l2_normalize(torch.randn(3, 8, 8, 8))
    masked = l2s.masked_structures(structure, l2s.slice_masks(cfg)).view(5, 3, 8, 8, 8)
    for i, (start, stop) in enumerate(cfg.slices):
        assert torch.equal(masked[i, :, start:stop], structure[:, start:stop])
        others = [c for c in range(8) if not start <= c < stop]
        assert masked[i, :, others].abs().sum() == 0
    assert torch.allclose(masked.sum(0), structure)  # the slices are parts of the full code
    assert not torch.all(masked[3, :, 6].abs() == 1)  # a 1-channel slice is not a sign map


@pytest.mark.parametrize("bad, name", [(dict(slices=((0, 2), (1, 4))), "overlaps"),
                                       (dict(slices=((0, 9),)), "slices"),
                                       (dict(slices=((0, 2),)), "roi_names"),
                                       (dict(roi_names=("hair", "ears", "nose", "eyes", "lips_mouth")), "ears"),
                                       (dict(lambda_gan_rec=-1.0), "lambda_gan_rec")])
def test_bad_configs_name_the_parameter(bad, name):
    with pytest.raises(ValueError, match=name):
        dataclasses.replace(tiny(), **bad)


def test_decode_rois_is_one_shared_decoder_per_masked_code():
    cfg = tiny()
    model = sae.SwappingAutoencoder(cfg.sae).eval()
    image = torch.rand(2, 3, 32, 32)
    rois = l2s.roi_images(model, image, cfg)
    assert rois.shape == (2, 5, 3, 32, 32)
    structure, texture = model.encode(image)
    eyes = structure * torch.tensor([0, 0, 0, 0, 0, 0, 1.0, 0])[None, :, None, None]
    assert torch.allclose(rois[:, 3], model.decode(eyes, texture), atol=1e-5)


def test_paper_rule_paints_in_order_with_a_tolerance():
    decoded = torch.zeros(1, 5, 3, 1, 4)
    decoded[0, 0, :, 0, :3] = 0.5  # hair at pixels 0..2
    decoded[0, 1, :, 0, 1:3] = 0.5  # skin at 1..2, painted over hair
    decoded[0, 4, :, 0, 2] = 0.5  # lips at 2, painted last
    decoded[0, 2, :, 0, 3] = 0.04  # nose below the tolerance: background
    assert l2s.segment(decoded, rule="paper").tolist() == [[[1, 2, 5, 0]]]
    assert l2s.segment(decoded, rule="paper", tolerance=0.01).tolist() == [[[1, 2, 5, 3]]]


def test_consistency_and_argmax_rules():
    image = torch.tensor([0.8, 0.6, 0.0, 0.1]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    decoded = torch.zeros(1, 2, 3, 1, 4)
    decoded[0, 0, :, 0, 0] = 0.8  # ROI 0 reproduces pixel 0 exactly
    decoded[0, 1, :, 0, 0] = 0.3  # ROI 1 is partly on at pixel 0 too
    decoded[0, 1, :, 0, 1] = 0.6  # ROI 1 reproduces pixel 1
    decoded[0, 0, :, 0, 2] = 0.9  # ROI 0 bright where the image is black: no evidence for it
    # pixel 3: all decodes black -> background
    assert l2s.segment(decoded, image, rule="consistency").tolist() == [[[1, 2, 0, 0]]]
    assert l2s.segment(decoded, image, rule="argmax").tolist() == [[[1, 2, 1, 0]]]
    with pytest.raises(ValueError, match="image"):
        l2s.segment(decoded, rule="consistency")
    with pytest.raises(ValueError, match="rule"):
        l2s.segment(decoded, image, rule="vote")


def test_per_roi_margins_shift_each_rois_evidence():
    image = torch.full((1, 3, 1, 3), 0.3)
    decoded = torch.zeros(1, 2, 3, 1, 3)
    decoded[0, 0, :, 0, 0] = 0.1  # ROI 0 decodes its pixel too dark: e_0 = 3 * (0.2 - 0.1) = +0.3, against it
    decoded[0, 1, :, 0, 1] = 0.3  # ROI 1 reproduces its pixel: e_1 = -0.9
    assert l2s.consistency_evidence(decoded, image)[0, :, 0, 0].tolist() == pytest.approx([0.3, 0.9])
    assert l2s.segment(decoded, image).tolist() == [[[0, 2, 0]]]
    assert l2s.segment(decoded, image, margin=torch.tensor([-0.4, 0.0])).tolist() == [[[1, 2, 0]]]
    assert l2s.segment(decoded, image, margin=torch.tensor([0.0, 1.0])).tolist() == [[[0, 0, 0]]]
    assert l2s.segment(decoded, image, margin=0.5).tolist() == l2s.segment(decoded, image, margin=torch.tensor(
        [0.5, 0.5])).tolist()
    with pytest.raises(ValueError, match="one value per ROI"):
        l2s.segment(decoded, image, margin=torch.zeros(3))


def test_fit_margins_recovers_a_too_dark_roi_and_keeps_the_others_at_zero():
    image = torch.full((1, 3, 1, 4), 0.3)
    decoded = torch.zeros(1, 2, 3, 1, 4)
    decoded[0, 0, :, 0, :2] = 0.1  # ROI 0 (true at pixels 0, 1) decodes too dark: e_0 = +0.3 there
    decoded[0, 1, :, 0, 2] = 0.3  # ROI 1 (true at pixel 2) exact; pixel 3 is background
    truth = torch.tensor([[[1, 1, 2, 0]]])
    margins = l2s.fit_margins(decoded, image, truth, grid=torch.arange(-5, 6) * 0.1)
    assert margins[0].item() == pytest.approx(-0.4)  # the margin nearest 0 that takes e_0 = 0.3 below 0
    assert margins[1].item() == 0.0  # ROI 1 was right already: ties keep 0
    assert l2s.segment(decoded, image, margin=margins).tolist() == truth.tolist()
    with pytest.raises(ValueError, match="truth"):
        l2s.fit_margins(decoded, image, truth[:, :, :2])


def test_fit_margins_is_the_coordinate_ascent_it_describes():
    """The fast count of fit_margins against coordinate ascent written out: label the faces for every candidate."""
    gen = torch.Generator().manual_seed(3)
    b, k, size = 6, 4, 8
    image = torch.rand(b, 3, size, size, generator=gen)
    decoded = torch.rand(b, k, 3, size, size, generator=gen) * (torch.rand(b, k, 1, size, size, generator=gen) > 0.6)
    decoded[:, 1] = decoded[:, 2] = 0  # two all-black decodes: exact ties of e_1 and e_2, to the lower index
    truth = torch.randint(0, k + 1, (b, size, size), generator=gen)
    grid = torch.arange(-10, 11) * 0.1
    ordered = grid[grid.abs().argsort(stable=True)]
    expected = torch.zeros(k)
    for _ in range(3):
        for i in range(k):
            scores = []
            for value in ordered:
                candidate = expected.clone()
                candidate[i] = value
                labels = l2s.segment(decoded, image, margin=candidate)
                scores.append(f1_per_class(confusion_matrix(labels, truth, k + 1))[1:].nanmean())
            expected[i] = ordered[int(torch.stack(scores).argmax())]
    assert torch.equal(l2s.fit_margins(decoded, image, truth, grid=grid), expected)
    assert expected.abs().sum() > 0  # the random decodes do need margins: the test compares non-trivial ascents


@pytest.mark.parametrize("dataset", ["synthfaces", "helen"])
def test_two_training_steps_from_an_sae_state(dataset):
    cfg = tiny(dataset)
    k = len(cfg.slices)
    labels = torch.randint(0, 11, (4, 32, 32))
    data = InMemory({"image": torch.rand(4, 3, 32, 32), "labels": labels}, transform=ToROI(cfg.roi_names))
    assert data.batch([0, 1])["roi_images"].shape == (2, k, 3, 32, 32)
    torch.manual_seed(0)
    init = {name: net.state_dict() for name, net in sae.build(cfg.sae).items()}
    spec = l2s.training_spec(cfg, data, init, steps=2, batch_size=2, seed=0, init_id={"sae": "random"},
                             precision="fp32")
    json.dumps(spec.config)
    start = spec.build()
    assert torch.equal(start["sae"].encoder.from_rgb.weight, init["sae"]["encoder.from_rgb.weight"])
    result = train(spec, progress=False)
    assert len(result.history["l1"]) == 2 and all(math.isfinite(v) for v in result.history["l1"])
    labels = l2s.segment_images(result.nets["sae"], data.batch([0, 1])["image"], cfg)
    assert labels.shape == (2, 32, 32) and int(labels.max()) <= k
    with pytest.raises(ValueError, match="init lacks"):
        l2s.training_spec(cfg, data, {"sae": init["sae"]}, steps=2, batch_size=2, seed=0)


def test_roi_major_orders_rois_like_the_codes_and_follows_the_image_layout():
    rois = torch.rand(2, 5, 3, 8, 8)
    flat = l2s.roi_major(rois, torch.rand(2, 3, 8, 8))
    assert torch.equal(flat.view(5, 2, 3, 8, 8), rois.transpose(0, 1))
    image = torch.rand(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    cl = l2s.roi_major(rois, image)
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, flat)


def test_roi_targets_keep_the_configs_rois_in_slice_order():
    roi_labels = torch.tensor([[0, 1, 2, 3, 4, 5]])  # background, hair, skin, nose, eyes, lips_mouth
    assert l2s.roi_targets(roi_labels, tiny("synthfaces")).tolist() == [[0, 1, 2, 3, 4, 5]]
    assert l2s.roi_targets(roi_labels, tiny("helen")).tolist() == [[0, 1, 2, 0, 0, 0]]


def test_paper_l1_has_no_pixel_weights():
    assert l2s.l1_pixel_weights(torch.zeros(2, 4, 4, dtype=torch.long), tiny("synthfaces")) is None


def test_roi_balanced_weights_split_each_image_half_and_half():
    cfg = dataclasses.replace(tiny("synthfaces"), l1_weights="roi_balanced")
    roi_labels = torch.zeros(2, 4, 4, dtype=torch.long)
    roi_labels[0, :1, :1] = 3  # nose: 1 of 16 pixels in image 0; absent from image 1
    roi_labels[:, 2:, :] = 2  # skin: half of both images
    weights = l2s.l1_pixel_weights(roi_labels, cfg)  # [K * B, 1, H, W], ROI-major
    assert weights.shape == (5 * 2, 1, 4, 4)
    nose0 = weights[2 * 2 + 0, 0]
    assert nose0[0, 0] == pytest.approx(0.5 * 16) and nose0[1, 1] == pytest.approx(0.5 * 16 / 15)
    assert torch.allclose(weights.mean(dim=(1, 2, 3)), torch.ones(10))  # mean 1 per item
    assert torch.equal(weights[2 * 2 + 1], torch.ones(1, 4, 4))  # nose absent from image 1: the plain mean
    assert torch.allclose(weights[1 * 2 + 0], torch.ones(1, 4, 4))  # skin is half the image: weights 1
    # the ROI's pixels carry half of the loss however small the ROI is
    inside = roi_labels[0] == 3
    assert (nose0 * inside).sum() / nose0.sum() == pytest.approx(0.5)


def test_region_balanced_weights_give_every_other_region_an_equal_share():
    cfg = dataclasses.replace(tiny("synthfaces"), l1_weights="region_balanced")
    roi_labels = torch.zeros(2, 4, 4, dtype=torch.long)  # background everywhere else
    roi_labels[:, 2:, :] = 2  # skin: 8 of 16 pixels
    roi_labels[0, 0, 0] = 4  # eyes: 1 pixel of image 0 (a hole in the skin's complement); absent from image 1
    roi_labels[:, 0, 3] = 3  # nose: 1 pixel of both images
    weights = l2s.l1_pixel_weights(roi_labels, cfg)
    assert torch.allclose(weights.mean(dim=(1, 2, 3)), torch.ones(10))  # mean 1 per item
    skin0 = weights[1 * 2 + 0, 0]  # skin target of image 0: skin 1/2; background, nose, eyes 1/6 each
    assert (skin0 * (roi_labels[0] == 2)).sum() / 16 == pytest.approx(0.5)
    for region in (0, 3, 4):
        assert (skin0 * (roi_labels[0] == region)).sum() / 16 == pytest.approx(0.5 / 3)
    assert skin0[0, 0] == pytest.approx(16 / 6)  # the one eye pixel weighs as much as all six background pixels
    eyes1 = weights[3 * 2 + 1, 0]  # eyes absent from image 1: background, skin, nose a third each
    for region in (0, 2, 3):
        assert (eyes1 * (roi_labels[1] == region)).sum() / 16 == pytest.approx(1 / 3)


def test_region_equal_weights_give_every_region_the_roi_included_an_equal_share():
    cfg = dataclasses.replace(tiny("synthfaces"), l1_weights="region_equal")
    roi_labels = torch.zeros(1, 4, 4, dtype=torch.long)  # background everywhere else
    roi_labels[:, 2:, :] = 2  # skin: 8 of 16 pixels
    roi_labels[0, 0, 0] = 4  # eyes: 1 pixel
    roi_labels[0, 0, 3] = 3  # nose: 1 pixel
    weights = l2s.l1_pixel_weights(roi_labels, cfg)
    assert torch.allclose(weights.mean(dim=(1, 2, 3)), torch.ones(5))  # mean 1 per item
    skin = weights[1, 0]  # skin target: background, skin, nose, eyes a quarter each
    for region in (0, 2, 3, 4):
        assert (skin * (roi_labels[0] == region)).sum() / 16 == pytest.approx(0.25)
    assert skin[0, 0] == pytest.approx(4.0) and skin[3, 3] == pytest.approx(0.5)  # an eye pixel weighs 8 skin pixels
    hair = weights[0, 0]  # hair absent: the four present regions share the weight in the same way
    assert hair[0, 0] == pytest.approx(4.0) and hair[3, 3] == pytest.approx(0.5)
