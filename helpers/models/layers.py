"""StyleGAN2's layers, shared by the Swapping Autoencoder (`sae`), Latents2Segments and the StyleGAN2 (`stylegan`).

Equalised learning rate (weights N(0, 1) scaled by 1/sqrt(fan_in) at run time), modulated/demodulated convs, noise
injection, styled convs and blocks, the residual discriminator block and minibatch standard deviation (Karras et al.,
"Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020, Sec. 2.2 and Appendix B).

Fast forms and their plain twins. Three layers fold StyleGAN2's activation gain sqrt(2) and residual 1/sqrt(2) into
their weights (leaky ReLU is positively homogeneous: lrelu(x) sqrt(2) = leaky_relu(sqrt(2) x)), and the modulated conv
runs as ONE ordinary conv on the style-scaled input (StyleGAN2's non-fused form) instead of a grouped conv with one
weight per sample. Each has a plainly written reference form here, computed the way the paper describes it, that the
tests check equal up to float rounding (as nanoGPT keeps its manual attention beside the fused one), and that a
chapter can show:

    fast                                   reference (the paper's order of operations)
    ModulatedConv2d.forward                modulated_conv_reference: per-sample weights, one grouped conv
    StyledConv.forward                     styled_conv_reference: modconv -> + noise -> + bias -> lrelu * sqrt(2)
    StyledResBlock.forward                 styled_res_block_reference: (skip(x) + conv2(conv1(x))) / sqrt(2)
    ResDownBlock.forward                   res_down_block_reference: (pool(lrelu(c2 lrelu(c1 x))) + pool(skip x)) / √2,
                                           or with pool_first (StyleGAN2's order) lrelu(c2 pool(lrelu(c1 x))) in front
    from_rgb_lrelu                         from_rgb_reference: lrelu(conv(2 x - 1))

Simplifications against NVlabs' code, on purpose and stated where the models use them: bilinear upsampling and 2x2
average pooling instead of the [1, 3, 3, 1] FIR filters (upfirdn2d), and no output clamping (conv_clamp) since the
book trains in bf16 autocast, not fp16.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SQRT2 = math.sqrt(2.0)


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate: weight ~ N(0, 1), scaled by 1/sqrt(fan_in) at run time."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale = 1 / math.sqrt(cin * kernel * kernel)
        self.stride, self.padding = stride, kernel // 2

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        """conv(x) * gain, the gain folded into the weight and bias (the graph's full-size multiply is saved)."""
        bias = None if self.bias is None else (self.bias if gain == 1.0 else self.bias * gain)
        return F.conv2d(x, self.weight * (self.scale * gain), bias, self.stride, self.padding)


def from_rgb_lrelu(conv: EqualConv2d, image: Tensor) -> Tensor:
    """lrelu(conv(image * 2 - 1)) for a 1x1 from-RGB conv, as ONE conv + leaky ReLU (exact up to float rounding).

    The input map 2x - 1 and the activation gain sqrt(2) are folded into the 1x1 weight and bias:
    sqrt(2) (W (2x - 1) + b) = (2 sqrt(2) W) x + sqrt(2) (b - sum_i W_i); leaky ReLU is positively homogeneous.
    """
    w = conv.weight * (conv.scale * SQRT2)
    b = conv.bias * SQRT2 - w.sum(dim=(1, 2, 3))
    return F.leaky_relu(F.conv2d(image, w * 2, b, conv.stride, conv.padding), 0.2)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate and a learning-rate multiplier (StyleGAN2's mapping uses 0.01).

    The weight is stored as N(0, 1) / lr_mul and used times lr_mul / sqrt(fan_in), the bias stored as bias_init /
    lr_mul and used times lr_mul: Adam's steps on the stored values then move the used ones lr_mul times as far.
    `bias_init` sets the initial bias (1 for style affines).
    """

    def __init__(self, cin: int, cout: int, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init) / lr_mul))
        self.scale = lr_mul / math.sqrt(cin)
        self.lr_mul = lr_mul

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias if self.lr_mul == 1.0 else self.bias * self.lr_mul
        return F.linear(x, self.weight * self.scale, bias)


def lrelu(x: Tensor) -> Tensor:
    """StyleGAN2's activation: leaky ReLU (0.2) with gain sqrt(2)."""
    return F.leaky_relu(x, 0.2) * SQRT2


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated conv: w'_{oik} = s_i w_{oik}, demodulated w''_{oik} = w'_{oik} / sqrt(sum_ik w'^2 + eps)."""

    def __init__(self, cin: int, cout: int, kernel: int, style_dim: int, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.scale = 1 / math.sqrt(cin * kernel * kernel)
        self.affine = EqualLinear(style_dim, cin, bias_init=1.0)
        self.demodulate = demodulate
        self.padding = kernel // 2

    def sample_weights(self, style: Tensor) -> Tensor:
        """The per-sample (modulated, demodulated) weights [B, cout, cin, k, k] that `forward` applies."""
        s = self.affine(style.float())
        w = self.weight[None] * self.scale * s[:, None, :, None, None]
        if self.demodulate:
            w = w * torch.rsqrt(w.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        return w

    def forward(self, x: Tensor, style: Tensor, gain: float = 1.0, bias: Tensor | None = None) -> Tensor:
        """gain * modulated_conv(x) (+ bias): the gain and the bias ride on the demodulation multiply (one op)."""
        s = self.affine(style)  # [B, cin]
        weight = self.weight * self.scale
        out = F.conv2d(x * s[:, :, None, None].to(x.dtype), weight.to(x.dtype), padding=self.padding)
        if self.demodulate:  # 1 / ||s_i w_oik|| over (i, k) = rsqrt(s^2 @ sum_k w^2), per sample and output channel
            d = torch.rsqrt(s.float().pow(2) @ weight.float().pow(2).sum(dim=(2, 3)).t() + 1e-8)
            d = (d * gain if gain != 1.0 else d)[:, :, None, None].to(out.dtype)
            if bias is None:
                return out * d
            return torch.addcmul(bias[None, :, None, None].to(out.dtype), out, d)
        if gain != 1.0:
            out = out * gain
        return out if bias is None else out + bias[None, :, None, None].to(out.dtype)


class NoiseInjection(nn.Module):
    """x + strength * noise per pixel (strength learned, initially 0).

    `noise` [B or 1, 1, H, W] is used when given (StyleGAN2's const or per-call noise); otherwise N(0, 1) noise is drawn
    in training mode and none is added in eval mode (the SAE decodes deterministically when evaluated).
    """

    def __init__(self):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor, gain: float = 1.0, noise: Tensor | None = None) -> Tensor:
        """x + gain * strength * noise (x already carries the gain)."""
        if noise is None:
            if not self.training:
                return x
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        return x + (self.strength * gain).to(x.dtype) * noise.to(x.dtype)


class StyledConv(nn.Module):
    """Modulated 3x3 conv -> noise -> bias -> lrelu * sqrt(2).

    `forward(x, style, gain)` returns gain / sqrt(2) times that, computed as leaky_relu(gain * (conv + noise + bias)):
    the gain rides on the demodulation coefficients, the noise strength and the bias (leaky ReLU is positively
    homogeneous), so lrelu's sqrt(2) and a following residual 1/sqrt(2) cost no full-size multiply.
    """

    def __init__(self, cin: int, cout: int, style_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, style_dim)
        self.noise = NoiseInjection()
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: Tensor, style: Tensor, gain: float = SQRT2, noise: Tensor | None = None) -> Tensor:
        out = self.noise(self.conv(x, style, gain=gain, bias=self.bias * gain), gain, noise)
        return F.leaky_relu(out, 0.2)


class StyledResBlock(nn.Module):
    """(bilinear x2) -> two styled convs, plus a 1x1 skip, summed and scaled by 1/sqrt(2)."""

    def __init__(self, cin: int, cout: int, style_dim: int, upsample: bool):
        super().__init__()
        self.upsample = upsample
        self.conv1 = StyledConv(cin, cout, style_dim)
        self.conv2 = StyledConv(cout, cout, style_dim)
        self.skip = EqualConv2d(cin, cout, 1, bias=False)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        # (skip(x) + lrelu(c2)) / sqrt(2) = skip(x) / sqrt(2) + leaky_relu(c2): gains folded, see StyledConv
        return self.skip(x, gain=1 / SQRT2) + self.conv2(self.conv1(x, style), style, gain=1.0)


def avg_pool2x2(x: Tensor) -> Tensor:
    """2x2 average pooling, equal to F.avg_pool2d(x, 2) up to float rounding, by the fastest CPU route per layout.

    Measured forward + backward on one CPU core (torch 2.15, fp32 and bf16): channels_last -> avg_pool2d;
    NCHW fp32 -> a depthwise 2x2 stride-2 conv with weights 1/4; NCHW bf16 -> sums of the four strided views (oneDNN's
    bf16 depthwise backward and avg_pool2d's NCHW kernels are several times slower there).
    """
    if x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last):
        return F.avg_pool2d(x, 2)
    if x.dtype == torch.float32:
        kernel = torch.full((x.shape[1], 1, 2, 2), 0.25, device=x.device, dtype=x.dtype)
        return F.conv2d(x, kernel, stride=2, groups=x.shape[1])
    x = x.unflatten(3, (-1, 2))
    x = x[..., 0] + x[..., 1]
    x = x.unflatten(2, (-1, 2))
    return (x[:, :, :, 0] + x[:, :, :, 1]) * 0.25


class ResDownBlock(nn.Module):
    """conv3x3 + lrelu, conv3x3 + lrelu, with a 2x2 average pool, plus a 1x1 skip; sum scaled by 1/sqrt(2).

    Where the pool sits in the main path: `pool_first=True` is StyleGAN2's order (NVlabs' `conv2d_layer(down=True)`
    filters and downsamples, then convolves at the lower resolution; the activation follows), with the book's 2x2
    box for the [1, 3, 3, 1] blur: the second conv runs on the pooled map, at a quarter of its cost.
    `pool_first=False` runs the second conv and its activation at the input's resolution and pools the result (the
    book's first form, kept for the checkpoints that were trained with it).

    With downsampling, the skip path avgpool(conv1x1(x)) is computed as ONE 2x2 stride-2 conv whose four taps are the
    1x1 weight / 4 (both maps are linear and commute, so this is exact up to float rounding; `test_sae` checks it),
    a quarter of the skip's cost and one op fewer.
    """

    def __init__(self, cin: int, cout: int, downsample: bool = True, pool_first: bool = False):
        super().__init__()
        self.conv1 = EqualConv2d(cin, cin, 3)
        self.conv2 = EqualConv2d(cin, cout, 3)
        self.skip = EqualConv2d(cin, cout, 1, bias=False)
        self.downsample, self.pool_first = downsample, pool_first

    def forward(self, x: Tensor) -> Tensor:
        # lrelu(c) = leaky_relu(sqrt(2) c),
        # (pool(lrelu(c2)) + skip) / sqrt(2) = pool(leaky_relu(c2)) + skip / sqrt(2), and the same with c2 on the pool;
        # the sqrt(2) gains and the residual scale are folded into conv weights (exact up to float rounding)
        h = F.leaky_relu(self.conv1(x, gain=SQRT2), 0.2)
        if not self.downsample:
            return F.leaky_relu(self.conv2(h), 0.2) + self.skip(x, gain=1 / SQRT2)
        if self.pool_first:
            h = F.leaky_relu(self.conv2(avg_pool2x2(h)), 0.2)
        else:
            h = avg_pool2x2(F.leaky_relu(self.conv2(h), 0.2))
        skip_weight = (self.skip.weight * (self.skip.scale / (4 * SQRT2))).expand(-1, -1, 2, 2)
        return h + F.conv2d(x, skip_weight, stride=2)


def minibatch_stddev(x: Tensor, group_size: int = 4, channels: int = 1) -> Tensor:
    """StyleGAN's minibatch standard deviation: append `channels` feature maps holding the mean, over features and
    pixels, of the standard deviation of each feature within groups of `group_size` items (Karras et al. 2018)."""
    b, c, h, w = x.shape
    g = min(group_size, b)
    if b % g:
        raise ValueError(f"minibatch std: batch {b} must be divisible by the group size {g}")
    y = x.float().reshape(g, -1, channels, c // channels, h, w)  # [G, B/G, F, C/F, H, W]
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(2, 3, 4))  # [B/G, F]
    y = y.reshape(-1, channels, 1, 1).repeat(g, 1, h, w)  # item i of a group is at i * (B/G) + group
    return torch.cat([x, y.to(x.dtype)], dim=1)


# ----------------------------------------------------------------------------------------------------------------
# Reference forms: the paper's order of operations, one op at a time (slow; for tests and chapters)


def equal_conv_reference(conv: EqualConv2d, x: Tensor) -> Tensor:
    """conv(x) with the equalised weight, no folded gain."""
    return F.conv2d(x, conv.weight * conv.scale, conv.bias, conv.stride, conv.padding)


def from_rgb_reference(conv: EqualConv2d, image: Tensor) -> Tensor:
    """lrelu(conv(2 x - 1)) * sqrt(2): what `from_rgb_lrelu` computes as one conv."""
    return lrelu(equal_conv_reference(conv, image * 2 - 1))


def modulated_conv_reference(conv: ModulatedConv2d, x: Tensor, style: Tensor) -> Tensor:
    """Modulated (and demodulated) conv with one weight per sample (Eq. 1-3 of StyleGAN2), as a grouped conv."""
    weights = conv.sample_weights(style)  # [B, cout, cin, k, k]
    b, cin = x.shape[:2]
    out = F.conv2d(x.reshape(1, b * cin, *x.shape[2:]), weights.flatten(0, 1).to(x.dtype), padding=conv.padding,
                   groups=b)
    return out.view(b, -1, *out.shape[2:])


def styled_conv_reference(layer: StyledConv, x: Tensor, style: Tensor, noise: Tensor | None = None) -> Tensor:
    """modulated conv -> + strength * noise -> + bias -> leaky ReLU * sqrt(2) (noise: as `NoiseInjection` draws it)."""
    out = modulated_conv_reference(layer.conv, x, style)
    if noise is None and layer.training:
        noise = torch.randn(out.shape[0], 1, *out.shape[2:], device=out.device, dtype=out.dtype)
    if noise is not None:
        out = out + layer.noise.strength * noise
    return lrelu(out + layer.bias[None, :, None, None])


def styled_res_block_reference(block: StyledResBlock, x: Tensor, style: Tensor) -> Tensor:
    """(bilinear x2) then (skip(x) + styled_conv2(styled_conv1(x))) / sqrt(2)."""
    if block.upsample:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    h = styled_conv_reference(block.conv2, styled_conv_reference(block.conv1, x, style), style)
    return (equal_conv_reference(block.skip, x) + h) / SQRT2


def res_down_block_reference(block: ResDownBlock, x: Tensor) -> Tensor:
    """(pool(lrelu(conv2(lrelu(conv1(x))))) + pool(skip(x))) / sqrt(2), or with `pool_first` (StyleGAN2's order)
    (lrelu(conv2(pool(lrelu(conv1(x))))) + pool(skip(x))) / sqrt(2) (pool: 2x2 average, when downsampling)."""
    h = lrelu(equal_conv_reference(block.conv1, x))
    skip = equal_conv_reference(block.skip, x)
    if not block.downsample:
        return (lrelu(equal_conv_reference(block.conv2, h)) + skip) / SQRT2
    if block.pool_first:
        h = lrelu(equal_conv_reference(block.conv2, F.avg_pool2d(h, 2)))
    else:
        h = F.avg_pool2d(lrelu(equal_conv_reference(block.conv2, h)), 2)
    return (h + F.avg_pool2d(skip, 2)) / SQRT2


__all__ = [
    "SQRT2", "EqualConv2d", "EqualLinear", "from_rgb_lrelu", "lrelu", "ModulatedConv2d", "NoiseInjection",
    "StyledConv", "StyledResBlock", "avg_pool2x2", "ResDownBlock", "minibatch_stddev", "equal_conv_reference",
    "from_rgb_reference", "modulated_conv_reference", "styled_conv_reference", "styled_res_block_reference",
    "res_down_block_reference",
]
