"""helpers.models.layers: every folded fast block equals its plain reference form (values and gradients), the
equalised learning rate and its multiplier, noise injection and minibatch standard deviation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from helpers.models import layers


def _randomise(module):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.dim() == 1 and p.shape[0] == 1 else 0.0))
    return module


def _lrelu(x):  # written out here too, so that the references are checked against the paper's formula
    return F.leaky_relu(x, 0.2) * math.sqrt(2)


def test_modulated_conv_demodulates_to_unit_norm_weights_and_matches_the_grouped_conv():
    conv = layers.ModulatedConv2d(6, 5, 3, style_dim=7)
    style = torch.randn(4, 7)
    weights = conv.sample_weights(style)  # [B, out, in, k, k]
    # demodulation: every output channel's weights have unit L2 norm, so unit-variance inputs give unit-variance outputs
    assert torch.allclose(weights.pow(2).sum(dim=(2, 3, 4)), torch.ones(4, 5), atol=1e-4)
    x = torch.randn(4, 6, 9, 9)
    by_hand = torch.stack([F.conv2d(x[i:i + 1], weights[i], padding=1)[0] for i in range(4)])
    assert torch.allclose(layers.modulated_conv_reference(conv, x, style), by_hand, atol=1e-4)
    assert torch.allclose(conv(x, style), by_hand, atol=1e-4)
    out = layers.ModulatedConv2d(64, 32, 3, style_dim=7)(torch.randn(8, 64, 16, 16), torch.randn(8, 7))
    assert 0.8 < out.std().item() < 1.2


def test_modulated_conv_gain_and_bias_ride_on_the_demodulation():
    conv = layers.ModulatedConv2d(6, 5, 3, style_dim=7)
    x, style, bias = torch.randn(2, 6, 5, 5), torch.randn(2, 7), torch.randn(5)
    want = conv(x, style) * 1.7 + bias[None, :, None, None]
    assert torch.allclose(conv(x, style, gain=1.7, bias=bias), want, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_avg_pool2x2_equals_avg_pool2d(dtype, channels_last):
    x = torch.randn(3, 5, 8, 6, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    tol = 1e-6 if dtype == torch.float32 else 2e-2
    assert torch.allclose(layers.avg_pool2x2(x).float(), F.avg_pool2d(x.float(), 2), atol=tol)


@pytest.mark.parametrize("downsample,pool_first", [(True, False), (True, True), (False, False)])
def test_res_down_block_equals_its_reference(downsample, pool_first):
    block = _randomise(layers.ResDownBlock(4, 6, downsample=downsample, pool_first=pool_first))
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    conv = layers.equal_conv_reference
    h = _lrelu(conv(block.conv1, x))
    if pool_first:  # StyleGAN2's order: the second conv on the pooled map
        h = _lrelu(conv(block.conv2, F.avg_pool2d(h, 2)))
    else:
        h = _lrelu(conv(block.conv2, h))
        h = F.avg_pool2d(h, 2) if downsample else h
    skip = F.avg_pool2d(conv(block.skip, x), 2) if downsample else conv(block.skip, x)
    assert h.shape == skip.shape == (2, 6, 4 if downsample else 8, 4 if downsample else 8)
    by_hand = (h + skip) / math.sqrt(2)
    want = layers.res_down_block_reference(block, x)
    assert torch.allclose(want, by_hand, atol=1e-6)
    got = block(x)
    assert torch.allclose(got, want, atol=1e-5)
    g_got, = torch.autograd.grad(got.square().sum(), x)
    g_want, = torch.autograd.grad(want.square().sum(), x)
    assert torch.allclose(g_got, g_want, atol=1e-4)


def test_from_rgb_lrelu_equals_lrelu_of_the_conv_of_2x_minus_1():
    conv = _randomise(layers.EqualConv2d(3, 5, 1))
    x = torch.rand(2, 3, 6, 6)
    by_hand = _lrelu(F.conv2d(x * 2 - 1, conv.weight / math.sqrt(3), conv.bias))
    assert torch.allclose(layers.from_rgb_reference(conv, x), by_hand, atol=1e-5)
    assert torch.allclose(layers.from_rgb_lrelu(conv, x), by_hand, atol=1e-5)


@pytest.mark.parametrize("upsample", [True, False])
def test_styled_res_block_with_folded_gains_equals_its_reference(upsample):
    block = _randomise(layers.StyledResBlock(4, 6, style_dim=5, upsample=upsample))
    x, style = torch.randn(2, 4, 4, 4, requires_grad=True), torch.randn(2, 5)
    for training in (False, True):
        block.train(training)
        torch.manual_seed(3)
        want = layers.styled_res_block_reference(block, x, style)
        torch.manual_seed(3)
        got = block(x, style)
        assert torch.allclose(got, want, atol=1e-4)
        g_got, = torch.autograd.grad(got.square().sum(), x)
        torch.manual_seed(3)
        g_want, = torch.autograd.grad(layers.styled_res_block_reference(block, x, style).square().sum(), x)
        assert torch.allclose(g_got, g_want, atol=1e-3)


def test_styled_conv_uses_a_given_noise_in_any_mode_and_none_in_eval_without_it():
    layer = _randomise(layers.StyledConv(3, 4, style_dim=5)).eval()
    x, style, noise = torch.randn(2, 3, 6, 6), torch.randn(2, 5), torch.randn(1, 1, 6, 6)
    assert torch.equal(layer(x, style), layer(x, style))  # eval without noise: deterministic
    with_noise = layer(x, style, noise=noise)
    assert torch.allclose(with_noise, layers.styled_conv_reference(layer, x, style, noise), atol=1e-4)
    assert not torch.allclose(with_noise, layer(x, style))


def test_equal_linear_lr_multiplier_scales_the_used_weights_and_their_steps():
    torch.manual_seed(0)
    plain, slow = layers.EqualLinear(8, 4, bias_init=1.0), layers.EqualLinear(8, 4, bias_init=1.0, lr_mul=0.01)
    with torch.no_grad():  # the same used weights: the stored ones differ by the factor 1 / lr_mul
        slow.weight.copy_(plain.weight / 0.01)
    x = torch.randn(5, 8)
    assert torch.allclose(plain(x), slow(x), atol=1e-5)
    assert torch.allclose(slow.bias * slow.lr_mul, torch.ones(4))  # bias_init is the used bias
    # one SGD step of lr 1 on the stored values moves the used weight lr_mul^2 as far (gradient and step both scaled)
    for layer in (plain, slow):
        layer(x).sum().backward()
    used_step_plain = plain.weight.grad * plain.scale
    used_step_slow = slow.weight.grad * slow.scale
    assert torch.allclose(used_step_slow, used_step_plain * 0.01 ** 2, atol=1e-7)


def test_minibatch_stddev_known_answer():
    x = torch.zeros(4, 2, 3, 3)
    x[0], x[1] = 1.0, 3.0  # groups of 4 items are items (0, 1, 2, 3): values 1, 3, 0, 0: mean 1, variance 1.5
    out = layers.minibatch_stddev(x, group_size=4)
    assert out.shape == (4, 3, 3, 3)
    assert torch.allclose(out[:, 2], torch.full((4, 3, 3), math.sqrt(1.5)), atol=1e-4)
    assert torch.equal(out[:, :2], x)
    y = torch.randn(8, 4, 2, 2)  # group size 2: item i and i + 4 share a group
    out = layers.minibatch_stddev(y, group_size=2)
    want = (y[:4] - y[4:]).abs().div(2).mean(dim=(1, 2, 3))  # std of two values = |a - b| / 2
    assert torch.allclose(out[:4, 4, 0, 0], want, atol=1e-3) and torch.allclose(out[4:, 4, 0, 0], want, atol=1e-3)
    with pytest.raises(ValueError, match="divisible"):
        layers.minibatch_stddev(torch.randn(6, 2, 2, 2), group_size=4)
