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


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_structure_is_8x8_and_decode_has_the_image_size(resolution):
    model = sae.SwappingAutoencoder(sae.scaled_config(resolution, 2)).eval()
    structure, texture = model.encode(torch.rand(2, 3, resolution, resolution))
    assert structure.shape == (2, 8, 8, 8) and texture.shape == (2, 128)
    assert torch.allclose(structure.norm(dim=1), torch.ones(2, 8, 8), atol=1e-5)  # unit norm at every position
    assert torch.allclose(texture.norm(dim=1), torch.ones(2), atol=1e-5)
    assert model.decode(structure, texture).shape == (2, 3, resolution, resolution)
    downs = [b.downsample for b in model.encoder.blocks]
    assert sum(downs) == round(math.log2(resolution / 8)) and downs == sorted(downs, reverse=True)


def test_modulated_conv_demodulates_to_unit_norm_weights_and_matches_the_grouped_conv():
    conv = sae.ModulatedConv2d(6, 5, 3, style_dim=7)
    style = torch.randn(4, 7)
    weights = conv.sample_weights(style)  # [B, out, in, k, k]
    # demodulation: every output channel's weights have unit L2 norm, so unit-variance inputs give unit-variance outputs
    assert torch.allclose(weights.pow(2).sum(dim=(2, 3, 4)), torch.ones(4, 5), atol=1e-4)
    x = torch.randn(4, 6, 9, 9)
    grouped = F.conv2d(x.reshape(1, 24, 9, 9), weights.reshape(20, 6, 3, 3), padding=1, groups=4).view(4, 5, 9, 9)
    assert torch.allclose(conv(x, style), grouped, atol=1e-4)
    out = sae.ModulatedConv2d(64, 32, 3, style_dim=7)(torch.randn(8, 64, 16, 16), torch.randn(8, 7))
    assert 0.8 < out.std().item() < 1.2


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


def test_r1_penalty_known_answer():
    x = torch.randn(3, 4, requires_grad=True)
    assert sae.r1_penalty((2 * x).sum(1), x).item() == pytest.approx(16.0)  # ||grad||^2 = 4 * 2^2


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
