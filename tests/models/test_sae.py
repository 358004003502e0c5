"""helpers.models.sae: shapes at every resolution, modulated convs, discriminators, losses and a 2-step training run."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from helpers.data.memory import InMemory
from helpers.models import sae
from helpers.train import count_parameters, train


@pytest.mark.parametrize("resolution, side", [(32, 8), (64, 16), (128, 8)])
def test_structure_side_and_decode_has_the_image_size(resolution, side):
    """The paper's H/16 (8 x 8) at 128 px and above, H/4 below (scaled_config)."""
    model = sae.SwappingAutoencoder(sae.scaled_config(resolution, 2)).eval()
    structure, texture = model.encode(torch.rand(2, 3, resolution, resolution))
    assert structure.shape == (2, 8, side, side) and texture.shape == (2, 128)
    assert torch.allclose(structure.norm(dim=1), torch.ones(2, side, side), atol=1e-5)  # unit norm at every position
    assert torch.allclose(texture.norm(dim=1), torch.ones(2), atol=1e-5)
    assert model.decode(structure, texture).shape == (2, 3, resolution, resolution)
    downs = [b.downsample for b in model.encoder.blocks]
    assert sum(downs) == round(math.log2(resolution / side)) and downs == sorted(downs, reverse=True)
    assert sae.scaled_config(64, 2, structure_size=8).structure_size == 8  # the side can be set


def test_eval_decoding_is_deterministic_and_training_adds_noise():
    model = sae.SwappingAutoencoder(sae.scaled_config(32, 2))
    for block in model.generator.blocks:
        block.conv1.noise.strength.data.fill_(1.0)
    s, t = model.encode(torch.rand(2, 3, 32, 32))
    assert not torch.equal(model.decode(s, t), model.decode(s, t))
    model.eval()
    assert torch.equal(model.decode(s, t), model.decode(s, t))


def test_discriminators_swap_and_crops():
    cfg = sae.scaled_config(32, 2)
    nets = sae.build(cfg)
    x = torch.rand(4, 3, 32, 32)
    assert nets["disc"](x).shape == (4,)
    crops = sae.crops_of(cfg, x)
    assert crops.shape == (4, cfg.patch_crops, 3, 8, 8)
    assert nets["patch_disc"](crops, sae.crops_of(cfg, x)).shape == (4, cfg.patch_crops)
    assert sae.swap_index(6).tolist() == [1, 0, 3, 2, 5, 4]
    with pytest.raises(ValueError, match="even"):
        sae.swap_index(3)
    # a crop of a constant image is that constant; a crop of a gradient stays inside the image's range
    const = torch.full((2, 3, 32, 32), 0.3)
    assert torch.allclose(sae.random_crops(const, 5, 8, 0.125, 0.25), torch.full((2, 5, 3, 8, 8), 0.3))


def test_config_validation_names_the_parameter_and_paper_sizes():
    for bad, name in [(dict(resolution=48), "resolution"), (dict(resolution=16), "resolution"),
                      (dict(width=0), "width"), (dict(patch_min=0.5, patch_max=0.25), "patch_min"),
                      (dict(r1_gamma=-1.0), "r1_gamma"), (dict(lr=0.0), "lr")]:
        with pytest.raises(ValueError, match=name):
            dataclasses.replace(sae.paper_config(), **bad)
    cfg = sae.paper_config()
    json.dumps(dataclasses.asdict(cfg))
    assert (cfg.resolution, cfg.texture_dim, cfg.r1_gamma, cfg.r1_gamma_patch, cfg.r1_every) == (128, 2048, 10, 1, 16)
    assert sae.scaled_config(128, 32) == cfg
    enc = sae.Encoder(cfg)
    assert [b.conv2.weight.shape[0] for b in enc.blocks] == [64, 128, 256, 512]
    assert enc.texture_linear.weight.shape == (2048, 2048)
    gen = sae.Generator(cfg)
    assert [b.conv2.conv.weight.shape[0] for b in [*gen.head, *gen.blocks]] == [256, 512, 512, 512, 256, 128]
    assert count_parameters(sae.SwappingAutoencoder(cfg)) == 56_140_735


def test_two_training_steps_through_the_book_loop():
    cfg = sae.scaled_config(32, 2)
    data = InMemory({"image": torch.rand(8, 3, 32, 32)})
    spec = sae.training_spec(cfg, data, steps=2, batch_size=4, seed=0, data_id={"name": "noise"}, precision="fp32")
    assert [(p.name, p.optimizer, p.every) for p in spec.phases] == [("d", "d", 1), ("r1", "d", 16), ("g", "g", 1)]
    json.dumps(spec.config)
    result = train(spec, progress=False)
    assert len(result.history["l1"]) == 2 and "r1" in result.history
    assert all(math.isfinite(v) for v in result.history["l1"] + result.history["d"])
    with pytest.raises(ValueError, match="batch_size"):
        sae.training_spec(cfg, data, steps=2, batch_size=3, seed=0)


# ----------------------------------------------------------------------------------------------------------------
# Restructured computations equal their straightforward versions (float error only)


def test_random_crops_equal_one_sample_per_crop_of_the_repeated_image():
    image = torch.rand(3, 3, 32, 32)
    torch.manual_seed(5)
    got = sae.random_crops(image, 4, 8, 0.125, 0.25)
    torch.manual_seed(5)  # the straightforward version: the same random boxes, the image repeated once per crop
    side = torch.empty(3, 4).uniform_(0.125, 0.25)
    centre = (torch.rand(3, 4, 2) * 2 - 1) * (1 - side)[..., None]
    theta = torch.zeros(3, 4, 2, 3)
    theta[..., 0, 0], theta[..., 1, 1], theta[..., :, 2] = side, side, centre
    grid = F.affine_grid(theta.view(12, 2, 3), [12, 3, 8, 8], align_corners=False)
    want = F.grid_sample(image.repeat_interleave(4, dim=0), grid, padding_mode="border", align_corners=False)
    assert torch.allclose(got, want.view(3, 4, 3, 8, 8), atol=1e-6)


def test_batched_decodes_and_discriminator_calls_equal_separate_calls():
    cfg = sae.scaled_config(32, 2)
    nets = {k: v.eval() for k, v in sae.build(cfg).items()}
    image = torch.rand(4, 3, 32, 32)
    s, t = nets["sae"].encode(image)
    rec, swap = sae.decode_pair(nets["sae"], s, t)
    assert torch.allclose(rec, nets["sae"].decode(s, t), atol=1e-5)
    assert torch.allclose(swap, nets["sae"].decode(s, t[sae.swap_index(4)]), atol=1e-5)
    p = nets["patch_disc"]
    crops, reference = sae.crops_of(cfg, image), sae.crops_of(cfg, image.flip(0))
    assert torch.allclose(p(crops, reference), p.classify(p.features(crops), p.features(reference)), atol=1e-5)


def test_outputs_do_not_depend_on_the_memory_layout():
    cfg = sae.scaled_config(32, 2)
    nets = {k: v.eval() for k, v in sae.build(cfg).items()}
    image = torch.rand(2, 3, 32, 32)
    s, t = nets["sae"].encode(image)
    want = (s, t, nets["sae"].decode(s, t), nets["disc"](image))
    for net in nets.values():
        net.to(memory_format=torch.channels_last)
    cl = image.contiguous(memory_format=torch.channels_last)
    s2, t2 = nets["sae"].encode(cl)
    got = (s2, t2, nets["sae"].decode(s2, t2), nets["disc"](cl))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, want))
