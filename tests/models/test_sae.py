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


# ----------------------------------------------------------------------------------------------------------------
# Restructured computations equal their straightforward versions (float error only)


def _lrelu(x):
    return F.leaky_relu(x, 0.2) * math.sqrt(2)


def _conv(conv, x):
    return F.conv2d(x, conv.weight * conv.scale, conv.bias, conv.stride, conv.padding)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_avg_pool2x2_equals_avg_pool2d(dtype, channels_last):
    x = torch.randn(3, 5, 8, 6, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    tol = 1e-6 if dtype == torch.float32 else 2e-2
    assert torch.allclose(sae.avg_pool2x2(x).float(), F.avg_pool2d(x.float(), 2), atol=tol)


def _randomise(module):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.dim() == 1 and p.shape[0] == 1 else 0.0))
    return module


@pytest.mark.parametrize("downsample", [True, False])
def test_res_down_block_equals_the_straightforward_block(downsample):
    block = _randomise(sae.ResDownBlock(4, 6, downsample=downsample))
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    h = _lrelu(_conv(block.conv2, _lrelu(_conv(block.conv1, x))))
    skip = _conv(block.skip, x)
    if downsample:
        h, skip = F.avg_pool2d(h, 2), F.avg_pool2d(skip, 2)
    want = (h + skip) / math.sqrt(2)
    got = block(x)
    assert torch.allclose(got, want, atol=1e-5)
    g_got, = torch.autograd.grad(got.square().sum(), x)
    g_want, = torch.autograd.grad(want.square().sum(), x)
    assert torch.allclose(g_got, g_want, atol=1e-4)


def test_from_rgb_lrelu_equals_lrelu_of_the_conv_of_2x_minus_1():
    conv = _randomise(sae.EqualConv2d(3, 5, 1))
    x = torch.rand(2, 3, 6, 6)
    assert torch.allclose(sae.from_rgb_lrelu(conv, x), _lrelu(_conv(conv, x * 2 - 1)), atol=1e-5)


def test_styled_res_block_with_folded_gains_equals_the_straightforward_block():
    block = _randomise(sae.StyledResBlock(4, 6, style_dim=5, upsample=True))
    x, style = torch.randn(2, 4, 4, 4), torch.randn(2, 5)

    def styled(layer, h):  # modulated/demodulated conv -> noise -> bias -> lrelu, per-sample weights (grouped conv)
        w = layer.conv.sample_weights(style)
        b, c = h.shape[:2]
        out = F.conv2d(h.reshape(1, b * c, *h.shape[2:]), w.flatten(0, 1), padding=1, groups=b)
        out = out.view(b, -1, *h.shape[2:])
        if layer.training:
            out = out + layer.noise.strength * torch.randn(b, 1, *out.shape[2:])
        return _lrelu(out + layer.bias[None, :, None, None])

    for training in (False, True):
        block.train(training)
        up = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        torch.manual_seed(3)
        want = (_conv(block.skip, up) + styled(block.conv2, styled(block.conv1, up))) / math.sqrt(2)
        torch.manual_seed(3)
        assert torch.allclose(block(x, style), want, atol=1e-4)


def test_modulated_conv_gain_and_bias_ride_on_the_demodulation():
    conv = sae.ModulatedConv2d(6, 5, 3, style_dim=7)
    x, style, bias = torch.randn(2, 6, 5, 5), torch.randn(2, 7), torch.randn(5)
    want = conv(x, style) * 1.7 + bias[None, :, None, None]
    assert torch.allclose(conv(x, style, gain=1.7, bias=bias), want, atol=1e-5)


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
