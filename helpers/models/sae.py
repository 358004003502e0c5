"""The Swapping Autoencoder (Park et al., NeurIPS 2020), the base model of Latents2Segments (paper 000) and paper 002.

An image x (in [0, 1]) is encoded into a structure tensor S_s [B, 8, s, s] (8 channels on an s x s grid) and a
texture vector S_t [B, 64w]; a StyleGAN2-style generator decodes (S_s, S_t) back to an image. Training: L1
reconstruction, a non-saturating GAN loss on reconstructions and on swapped decodes (structure of image 2i with the
texture of image 2i+1 and vice versa), a patch co-occurrence GAN loss that asks patches of a swapped decode to look
like patches of the texture source, and lazy R1 on both discriminators (REFERENCE.md, "Swapping Autoencoder").

Sizes are set by one base width w (the paper's w = 32, `paper_config`):

- Encoder: 1x1 from-RGB 3 -> w, four residual blocks w -> 2w -> 4w -> 8w -> 16w. At 128 px every block halves the
  resolution (128 -> 8, the paper's H/16); with a larger structure tensor (`structure_size`, see `scaled_config`)
  only the FIRST log2(resolution / structure_size) blocks downsample (64 px with 16 x 16: 2 blocks).
  Structure head: 1x1 16w -> 16w + lrelu, 1x1 16w -> 8. Texture head: 3x3 stride-2 convs 16w -> 32w -> 64w (+ lrelu),
  spatial mean, linear 64w -> 64w (the paper's 512 -> 1024 -> 2048 -> 2048).
  Both codes are L2-normalised over channels (the structure at every position), as in the paper.
- Generator: the structure tensor enters two styled residual blocks 8 -> 8w -> 16w at s x s, then four styled
  residual blocks 16w, 16w, 8w, 4w of which the LAST log2(resolution / s) upsample x2 (bilinear), then a modulated
  1x1 to-RGB without demodulation. Every 3x3 conv is a StyleGAN2 modulated/demodulated conv whose style is an affine
  map of the texture vector, followed by noise injection, a bias and lrelu(0.2) * sqrt(2); residual sums are scaled
  by 1/sqrt(2). The output is mapped to [0, 1] image units as 0.5 * (rgb + 1) (not clamped).
- Image discriminator (StyleGAN2 residual D): 1x1 from-RGB, residual downsampling blocks to 4x4, 3x3 conv, linear,
  linear -> 1 logit; widths min(16w, 4w * 2**i).
- Patch co-occurrence discriminator: 8 random square crops per image with sides uniform in [1/8, 1/4] of the image,
  resampled to resolution/4 pixels (one batched `grid_sample`, border padding so that a crop touching the image edge
  never blends in black); a residual patch encoder gives a 16w feature per crop; the logit of a crop is an MLP of
  [its feature, the mean feature of the 8 reference crops of the texture source].

Choices made here, on purpose:

- Equalised learning rate (weights drawn N(0, 1) and scaled by 1/sqrt(fan_in) at run time), as StyleGAN2, so that
  Adam's lr 2e-3 acts alike on every layer.
- The modulated conv is computed in StyleGAN2's non-fused form (scale the input by the style, one ordinary conv with
  the shared weight, scale the output by the demodulation coefficients). It equals the grouped conv with per-sample
  weights (`ModulatedConv2d.sample_weights`) and runs as one ordinary conv (fast on CPU, bf16 and channels_last).
- Noise injection is applied only in training mode: a model in eval mode decodes deterministically (activeness maps
  and segmentation by masked decoding need a deterministic decoder).
- Downsampling is 2x2 average pooling and upsampling bilinear (StyleGAN2 uses FIR blur filters); no minibatch-stddev
  layer in D. Both are small simplifications that keep the model cheap on a CPU. A downsampling residual block pools
  before its second conv, StyleGAN2's order (`pool_first`; the book's first form convolved at the higher resolution
  and pooled after the activation, 1.25x the step).
- Losses: L1 (1.0), GAN on reconstructions (1.0), GAN on swaps (1.0), co-occurrence (1.0); the discriminator sees
  reals against reconstructions and swaps weighted 0.5 each. R1 gamma 10 (image D) and 1 (patch D, on the real
  target crops), lazily every 16 steps with the penalty multiplied by 16; Adam lr 2e-3, betas (0, 0.99), with the
  discriminators' Adam corrected for the lazy R1 as in StyleGAN2 (`gan.lazy_adam`: lr * 16/17, betas ** 16/17).
- Swap pairs are neighbours in the batch (2i <-> 2i+1): the batch size must be even.

The layers and the GAN losses are StyleGAN2's, shared with the book's StyleGAN2: `helpers.models.layers` (with the
plain reference form of every folded block) and `helpers.models.gan`.

How it is computed (each restructuring equals the straightforward computation up to float rounding; tests/models/
test_layers.py and test_sae.py check every one against the plain version):

- A training step is FLOP-bound in the 3x3 convs, spread evenly over the resolutions (every x2 step halves the width
  and quadruples the area), with the discriminators about half of all FLOPs; at 64 px, w = 4 the SAE step is about
  36 GFLOP (D phase 20, G phase 16). So the sizes are kept as above, and the work is cut where it is not needed:
- The reconstruction and the swap are ONE generator call on 2B items (`decode_pair`), made once per step and shared
  by the D phase (detached) and the G phase (the loop's `SharedForward`); the image discriminator sees
  reals, reconstructions and swaps as ONE batch, the patch discriminator encodes reference, real and swapped crops
  as ONE batch, and the crops are batched `grid_sample` calls that never copy the image once per crop.
  In the G phase the reference crops' features are computed without autograd (they are data; the G phase trains only
  the encoder and generator, and the book's loop freezes the discriminators' parameters there).
- Activation gains are folded into weights: lrelu(x) = leaky_relu(sqrt(2) x) (positive homogeneity), so sqrt(2)
  and the residual 1/sqrt(2) ride on conv weights, biases, the demodulation coefficients and the noise strength
  (`StyledConv`, `ResDownBlock`); from-RGB's 2x - 1 is folded into its 1x1 weight and bias (`from_rgb_lrelu`).
- In a downsampling residual block the skip avgpool(conv1x1(x)) is one 2x2 stride-2 conv (linear maps commute);
  2x2 average pooling takes the fastest CPU route for the layout and dtype (`avg_pool2x2`).
- Layouts: encoder, generator and both discriminators turn their input channels_last, so every activation is
  channels_last whatever the caller's layout (on CPU bilinear upsampling and pooling are several times faster in
  that layout, and oneDNN convs are at least as fast); the weights may be in either layout. The book's loop also
  trains with bf16 autocast where the CPU has native bf16; the model works in fp32 and bf16 alike.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.memory import InMemory
from ..train import Phase, SharedForward, TrainSpec
from .gan import lazy_adam, non_saturating, r1_penalty
from .layers import EqualConv2d, EqualLinear, ModulatedConv2d, ResDownBlock, StyledResBlock, from_rgb_lrelu, lrelu


# ----------------------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class SAEConfig:
    """Every setting of the Swapping Autoencoder and its training (JSON-able through dataclasses.asdict)."""

    resolution: int = 128  # input and output side: 8 * 2**k with 2 <= k <= 4 (32, 64 or 128)
    width: int = 32  # base width w: encoder w..16w, texture 64w, generator up to 16w, discriminators 4w..16w
    structure_channels: int = 8
    structure_size: int = 8  # side of the structure tensor (the paper's 128 / 16)
    pool_first: bool = True  # down blocks convolve after pooling, StyleGAN2's order (False: the book's first form)
    lambda_l1: float = 1.0
    lambda_gan_rec: float = 1.0
    lambda_gan_swap: float = 1.0
    lambda_cooccur: float = 1.0
    r1_gamma: float = 10.0  # image discriminator
    r1_gamma_patch: float = 1.0  # patch co-occurrence discriminator
    r1_every: int = 16
    patch_crops: int = 8  # crops per image (target crops and reference crops alike)
    patch_min: float = 1 / 8  # crop side, as a share of the image side
    patch_max: float = 1 / 4
    lr: float = 2e-3
    beta1: float = 0.0
    beta2: float = 0.99

    def __post_init__(self) -> None:
        errors = []
        k = math.log2(self.resolution / self.structure_size) if self.resolution > 0 and self.structure_size > 0 else -1
        if k != int(k) or not 1 <= k <= 4:
            errors.append(f"resolution={self.resolution} must be structure_size * 2**k with 1 <= k <= 4 "
                          f"(structure_size={self.structure_size})")
        elif self.resolution < 32:
            errors.append(f"resolution={self.resolution} must be at least 32")
        if self.width < 1:
            errors.append(f"width={self.width}: must be >= 1")
        if self.structure_channels < 1:
            errors.append(f"structure_channels={self.structure_channels}: must be >= 1")
        if not 0 < self.patch_min <= self.patch_max <= 1:
            errors.append(f"patch_min={self.patch_min}, patch_max={self.patch_max}: need 0 < min <= max <= 1")
        if self.patch_crops < 1:
            errors.append(f"patch_crops={self.patch_crops}: must be >= 1")
        if self.r1_every < 1:
            errors.append(f"r1_every={self.r1_every}: must be >= 1")
        for name in ("lambda_l1", "lambda_gan_rec", "lambda_gan_swap", "lambda_cooccur", "r1_gamma", "r1_gamma_patch"):
            if getattr(self, name) < 0:
                errors.append(f"{name}={getattr(self, name)}: must be >= 0")
        if self.lr <= 0:
            errors.append(f"lr={self.lr}: must be > 0")
        if errors:
            raise ValueError("; ".join(errors))

    @property
    def scale_steps(self) -> int:
        """Number of x2 resolution steps between the image and the structure tensor."""
        return round(math.log2(self.resolution / self.structure_size))

    @property
    def texture_dim(self) -> int:
        """Length of the texture vector (64w; the paper's 2048)."""
        return 64 * self.width

    @property
    def patch_size(self) -> int:
        """Side, in pixels, to which every crop is resampled for the patch discriminator."""
        return self.resolution // 4


def paper_config() -> SAEConfig:
    """The paper's model: 128 px, w = 32 (encoder 32..512, texture 2048, generator 256..512..128)."""
    return SAEConfig()


def scaled_config(resolution: int, width: int, structure_size: int | None = None) -> SAEConfig:
    """The model of a profile: the resolution, the base width and the side of the structure tensor change; losses and
    optimiser stay the paper's.

    structure_size None: the paper's H/16 (8 x 8) at 128 px and above; H/4 below (16 x 16 at 64 px, 8 x 8 at 32 px).
    At 64 px an eye is 2-3 px tall and H/16 would be a 4 x 4 grid: measured on 2 CPU cores (book/training.md), a
    16 x 16 structure tensor reconstructs faster and more sharply than 8 x 8 at the same cost per step, and the slices
    of the small ROIs get cells of about their size.
    """
    if structure_size is None:
        structure_size = 8 if resolution >= 128 else max(8, int(resolution) // 4)
    return SAEConfig(resolution=int(resolution), width=int(width), structure_size=int(structure_size))


# ----------------------------------------------------------------------------------------------------------------
# Codes


def l2_normalize(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Divide by the L2 norm over dim 1 (channels): per position for a map, per vector for a code (float32)."""
    x = x.float()
    return x * torch.rsqrt(x.pow(2).sum(1, keepdim=True) + eps)


# ----------------------------------------------------------------------------------------------------------------
# Networks


class Encoder(nn.Module):
    """Image [B, 3, H, W] in [0, 1] -> structure [B, 8, s, s] and texture [B, 64w], both L2-normalised."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        w = cfg.width
        widths = [w, 2 * w, 4 * w, 8 * w, 16 * w]
        self.from_rgb = EqualConv2d(3, w, 1)
        self.blocks = nn.Sequential(*[ResDownBlock(widths[i], widths[i + 1], downsample=i < cfg.scale_steps,
                                                   pool_first=cfg.pool_first) for i in range(4)])
        self.structure = nn.Sequential(EqualConv2d(16 * w, 16 * w, 1), nn.LeakyReLU(0.2),
                                       EqualConv2d(16 * w, cfg.structure_channels, 1))
        self.texture_convs = nn.Sequential(EqualConv2d(16 * w, 32 * w, 3, stride=2), nn.LeakyReLU(0.2),
                                           EqualConv2d(32 * w, 64 * w, 3, stride=2), nn.LeakyReLU(0.2))
        self.texture_linear = EqualLinear(64 * w, 64 * w)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        h = self.blocks(from_rgb_lrelu(self.from_rgb, image.contiguous(memory_format=torch.channels_last)))
        structure = l2_normalize(self.structure(h))
        texture = l2_normalize(self.texture_linear(self.texture_convs(h).float().mean(dim=(2, 3))))
        return structure, texture


class Generator(nn.Module):
    """(structure [B, 8, s, s], texture [B, 64w]) -> image [B, 3, H, W] in [0, 1] units (not clamped)."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        w, d = cfg.width, cfg.texture_dim
        first_up = 4 - cfg.scale_steps
        self.head = nn.ModuleList([StyledResBlock(cfg.structure_channels, 8 * w, d, False),
                                   StyledResBlock(8 * w, 16 * w, d, False)])
        widths = [16 * w, 16 * w, 16 * w, 8 * w, 4 * w]
        self.blocks = nn.ModuleList([StyledResBlock(widths[i], widths[i + 1], d, upsample=i >= first_up)
                                     for i in range(4)])
        self.to_rgb = ModulatedConv2d(4 * w, 3, 1, d, demodulate=False)
        self.rgb_bias = nn.Parameter(torch.zeros(3))

    def forward(self, structure: Tensor, texture: Tensor) -> Tensor:
        x = structure.contiguous(memory_format=torch.channels_last)  # see "Layouts" in the module doc
        for block in [*self.head, *self.blocks]:
            x = block(x, texture)
        rgb = self.to_rgb(x, texture).float() + self.rgb_bias[None, :, None, None]
        return 0.5 * (rgb + 1.0)


class SwappingAutoencoder(nn.Module):
    """Encoder + generator: `encode`, `decode`, `forward` (reconstruction) and `swap`."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.generator = Generator(cfg)

    def encode(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """Image [B, 3, H, W] in [0, 1] -> (structure S_s [B, 8, s, s], texture S_t [B, 64w])."""
        return self.encoder(image)

    def decode(self, structure: Tensor, texture: Tensor) -> Tensor:
        """(S_s, S_t) -> image [B, 3, H, W] in [0, 1] units (deterministic in eval mode)."""
        return self.generator(structure, texture)

    def forward(self, image: Tensor) -> Tensor:
        """Reconstruction of `image`."""
        return self.decode(*self.encode(image))


def swap_index(batch: int, device: torch.device | None = None) -> Tensor:
    """The swap partner of each item: 2i <-> 2i+1 (batch must be even)."""
    if batch % 2:
        raise ValueError(f"the swap pairs neighbours 2i <-> 2i+1: batch size must be even, got {batch}")
    return torch.arange(batch, device=device) ^ 1


def discriminator_widths(width: int, downs: int) -> list[int]:
    """Channels of a discriminator trunk: 4w at the input, doubling at each of `downs` downsamplings, at most 16w."""
    return [min(16 * width, 4 * width * 2 ** i) for i in range(downs + 1)]


class Discriminator(nn.Module):
    """StyleGAN2 residual image discriminator: image [B, 3, H, W] in [0, 1] -> logit [B]."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        w = cfg.width
        downs = round(math.log2(cfg.resolution / 4))
        widths = discriminator_widths(w, downs)
        self.from_rgb = EqualConv2d(3, widths[0], 1)
        self.blocks = nn.Sequential(*[ResDownBlock(widths[i], widths[i + 1], pool_first=cfg.pool_first)
                                      for i in range(downs)])
        self.conv = EqualConv2d(widths[-1], widths[-1], 3)
        self.fc = EqualLinear(widths[-1] * 16, widths[-1])
        self.out = EqualLinear(widths[-1], 1)

    def forward(self, image: Tensor) -> Tensor:
        h = self.blocks(from_rgb_lrelu(self.from_rgb, image.contiguous(memory_format=torch.channels_last)))
        h = lrelu(self.conv(h)).flatten(1)
        return self.out(lrelu(self.fc(h))).float().squeeze(1)


class PatchDiscriminator(nn.Module):
    """Patch co-occurrence discriminator: (crops [B, N, 3, P, P], reference crops [B, M, 3, P, P]) -> logits [B, N]."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        w = cfg.width
        downs = round(math.log2(cfg.patch_size / 4))
        widths = discriminator_widths(w, downs)
        feat = 16 * w
        self.from_rgb = EqualConv2d(3, widths[0], 1)
        self.blocks = nn.Sequential(*[ResDownBlock(widths[i], widths[i + 1], pool_first=cfg.pool_first)
                                      for i in range(downs)])
        self.project = EqualLinear(widths[-1] * 16, feat)
        self.classifier = nn.ModuleList([EqualLinear(2 * feat, feat), EqualLinear(feat, feat), EqualLinear(feat, 1)])

    def features(self, crops: Tensor) -> Tensor:
        """Crops [B, N, 3, P, P] -> features [B, N, 16w]."""
        b, n = crops.shape[:2]
        crops = crops.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        h = self.blocks(from_rgb_lrelu(self.from_rgb, crops))
        return lrelu(self.project(h.flatten(1))).view(b, n, -1)

    def classify(self, features: Tensor, reference: Tensor) -> Tensor:
        """Crop features [B, N, F] and reference features [B, M, F] (or their mean [B, 1, F]) -> logits [B, N]."""
        ref = reference.mean(1, keepdim=True).expand_as(features)
        h = torch.cat([features, ref.to(features.dtype)], dim=2)
        for layer in self.classifier[:-1]:
            h = lrelu(layer(h))
        return self.classifier[-1](h).float().squeeze(2)

    def forward(self, crops: Tensor, reference: Tensor) -> Tensor:
        if crops.shape[0] == reference.shape[0] and crops.shape[2:] == reference.shape[2:]:
            n = crops.shape[1]  # both crop sets through the encoder as one batch
            f = self.features(torch.cat([crops, reference.to(crops.dtype)], dim=1))
            return self.classify(f[:, :n], f[:, n:])
        return self.classify(self.features(crops), self.features(reference))


def random_crops(image: Tensor, n: int, size: int, low: float, high: float) -> Tensor:
    """n square crops per image [B, 3, H, W], side uniform in [low, high] * H, at random places: [B, n, 3, size, size].

    One bilinear `grid_sample` per call (border padding: sample points between the outermost pixel centres and the
    image edge take the edge pixel, never black); the randomness comes from torch's global generator (seeded per step
    by the loop).
    """
    b = image.shape[0]
    side = torch.empty(b, n, device=image.device).uniform_(low, high)  # share of the image side
    centre = (torch.rand(b, n, 2, device=image.device) * 2 - 1) * (1 - side)[..., None]  # crop stays inside
    theta = torch.zeros(b, n, 2, 3, device=image.device)
    theta[..., 0, 0] = side
    theta[..., 1, 1] = side
    theta[..., :, 2] = centre
    grid = F.affine_grid(theta.view(b * n, 2, 3), [b * n, 3, size, size], align_corners=False)
    # the n crop grids of an image stacked along the height: one sample of the image, no n-fold copy of it
    out = F.grid_sample(image.float(), grid.view(b, n * size, size, 2), mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out.view(b, 3, n, size, size).transpose(1, 2)


def decode_pair(model: SwappingAutoencoder, structure: Tensor, texture: Tensor) -> tuple[Tensor, Tensor]:
    """(reconstruction, swap) in ONE generator call: structure i decoded with texture i and with its partner's."""
    partner = swap_index(structure.shape[0], structure.device)
    out = model.decode(torch.cat([structure, structure]), torch.cat([texture, texture[partner]]))
    rec, swap = out.chunk(2)
    return rec, swap


def build(cfg: SAEConfig) -> dict[str, nn.Module]:
    """The networks: 'sae' (encoder + generator), 'disc' (image D) and 'patch_disc' (co-occurrence D)."""
    return {"sae": SwappingAutoencoder(cfg), "disc": Discriminator(cfg), "patch_disc": PatchDiscriminator(cfg)}


# ----------------------------------------------------------------------------------------------------------------
# Losses


def crops_of(cfg: SAEConfig, image: Tensor) -> Tensor:
    """The patch discriminator's crops of `image`: patch_crops per image at patch_size pixels."""
    return random_crops(image, cfg.patch_crops, cfg.patch_size, cfg.patch_min, cfg.patch_max)


def generator_terms(cfg: SAEConfig, nets: Mapping[str, nn.Module], target: Tensor, structure: Tensor, texture: Tensor,
                    pixel_weights: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The G-side terms, unweighted: (reconstruction, L1, GAN rec, GAN swap, co-occurrence).

    `pixel_weights` [B, 1, H, W] (mean 1 per item) weigh the L1 per pixel; None is the plain mean.

    `structure` and `texture` are codes of an image; `target` is what their reconstruction should equal (the image
    itself for the SAE, an ROI image for L2S). The swap decodes structure i with the texture of its partner
    (2i <-> 2i+1); its co-occurrence reference crops come from the partner's target.
    """
    rec, swap = decode_pair(nets["sae"], structure, texture)  # one generator call
    return (rec, *decoded_generator_terms(cfg, nets, target, rec, swap, pixel_weights))


def decoded_generator_terms(cfg: SAEConfig, nets: Mapping[str, nn.Module], target: Tensor, rec: Tensor, swap: Tensor,
                            pixel_weights: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`generator_terms` from decodes already made (`decode_pair`): (L1, GAN rec, GAN swap, co-occurrence)."""
    partner = swap_index(target.shape[0], target.device)
    l1 = (rec - target.float()).abs()
    l1 = (l1 * pixel_weights).mean() if pixel_weights is not None else l1.mean()
    logits_rec, logits_swap = nets["disc"](torch.cat([rec, swap])).chunk(2)  # one image-D call
    gan_rec = non_saturating(logits_rec, real=True)
    gan_swap = non_saturating(logits_swap, real=True)
    p = nets["patch_disc"]
    # the reference crops are data (no gradient reaches G through them, and the G phase does not train D)
    with torch.no_grad():
        reference = p.features(crops_of(cfg, target[partner].detach())).mean(1, keepdim=True)
    cooccur = non_saturating(p.classify(p.features(crops_of(cfg, swap)), reference), real=True)
    return l1, gan_rec, gan_swap, cooccur


def discriminator_terms(cfg: SAEConfig, nets: Mapping[str, nn.Module], target: Tensor, rec: Tensor,
                        swap: Tensor) -> tuple[Tensor, Tensor]:
    """D-side losses: image D (reals vs reconstructions and swaps, 0.5 each) and patch D (real vs swapped crops)."""
    b = target.shape[0]
    partner = swap_index(b, target.device)
    target = target.float()
    real, fake_rec, fake_swap = nets["disc"](torch.cat([target, rec.float(), swap.float()])).split(b)  # one D call
    image_loss = (non_saturating(real, real=True) + 0.5 * non_saturating(fake_rec, real=False)
                  + 0.5 * non_saturating(fake_swap, real=False))
    p = nets["patch_disc"]
    # reference crops, real crops (both of the partner's target) and swap crops: one grid_sample, one patch-D call
    crops = crops_of(cfg, torch.cat([target[partner], target[partner], swap.float()]))
    features = p.features(crops)
    reference, real_f, swap_f = features.split(b)
    logits_real, logits_swap = p.classify(torch.cat([real_f, swap_f]), reference.repeat(2, 1, 1)).split(b)
    patch_loss = non_saturating(logits_real, real=True) + non_saturating(logits_swap, real=False)
    return image_loss, patch_loss


def r1_terms(cfg: SAEConfig, nets: Mapping[str, nn.Module], target: Tensor) -> tuple[Tensor, Tensor]:
    """R1 penalties of the image D (on real images) and of the patch D (on real target crops)."""
    real = target.detach().float().requires_grad_(True)
    r1 = r1_penalty(nets["disc"](real), real)
    partner = swap_index(target.shape[0], target.device)
    crops = crops_of(cfg, target[partner]).detach().requires_grad_(True)
    r1_patch = r1_penalty(nets["patch_disc"](crops, crops_of(cfg, target[partner]).detach()), crops)
    return r1, r1_patch


# ----------------------------------------------------------------------------------------------------------------
# Training


def optimizers(nets: Mapping[str, nn.Module], cfg: SAEConfig) -> dict[str, torch.optim.Optimizer]:
    """'g' (encoder + generator) and 'd' (both discriminators): Adam lr 2e-3, betas (0, 0.99)."""
    d_params = [*nets["disc"].parameters(), *nets["patch_disc"].parameters()]
    return {"g": torch.optim.Adam(nets["sae"].parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2)),
            "d": lazy_adam(d_params, cfg.lr, (cfg.beta1, cfg.beta2), cfg.r1_every)}


def losses(cfg: SAEConfig):
    """The SAE's step as functions (nets, batch, step): the shared forward (the decodes of Eq. 1's two GAN terms, made
    once per step with the generator's gradients) and the phase losses (d, r1, g) -> (loss, logs)."""

    def decodes(nets, batch, step):
        rec, swap = decode_pair(nets["sae"], *nets["sae"].encode(batch["image"]))
        return {"rec": rec, "swap": swap}

    def d_loss(nets, batch, step):
        image_loss, patch_loss = discriminator_terms(cfg, nets, batch["image"], batch["rec"].detach(),
                                                     batch["swap"].detach())
        return image_loss + patch_loss, {"d": image_loss.detach(), "d_patch": patch_loss.detach()}

    def r1_loss(nets, batch, step):
        r1, r1_patch = r1_terms(cfg, nets, batch["image"])
        loss = (cfg.r1_gamma / 2 * r1 + cfg.r1_gamma_patch / 2 * r1_patch) * cfg.r1_every
        return loss, {"r1": r1.detach(), "r1_patch": r1_patch.detach()}

    def g_loss(nets, batch, step):
        image = batch["image"]
        l1, gan_rec, gan_swap, cooccur = decoded_generator_terms(cfg, nets, image, batch["rec"], batch["swap"])
        loss = (cfg.lambda_l1 * l1 + cfg.lambda_gan_rec * gan_rec + cfg.lambda_gan_swap * gan_swap
                + cfg.lambda_cooccur * cooccur)
        return loss, {"l1": l1.detach(), "g_rec": gan_rec.detach(), "g_swap": gan_swap.detach(),
                      "g_cooccur": cooccur.detach()}

    return decodes, d_loss, r1_loss, g_loss


def training_spec(cfg: SAEConfig, data, steps: int, batch_size: int, seed: int, **loop: Any) -> TrainSpec:
    """The TrainSpec "sae": per step the decodes (one generator forward, shared), a D phase, lazy R1 (every r1_every
    steps) and a G phase, 1:1.

    `data` yields dicts with "image" [3, H, W] in [0, 1]. Extra keyword arguments go to TrainSpec (data_id,
    precision, schedule, ema, evaluate...).
    """
    if batch_size % 2:
        raise ValueError(f"batch_size={batch_size}: must be even (swap pairs 2i <-> 2i+1)")
    decodes, d_loss, r1_loss, g_loss = losses(cfg)
    phases = [Phase("d", d_loss, "d"), Phase("r1", r1_loss, "d", every=cfg.r1_every), Phase("g", g_loss, "g")]
    return TrainSpec(name="sae", config={"model": dataclasses.asdict(cfg)}, build=lambda: build(cfg),
                     optimizers=lambda n: optimizers(n, cfg), phases=phases, steps=steps, batch_size=batch_size,
                     seed=seed, data=data, shared=SharedForward("decodes", decodes, "g"), **loop)


EVALUATED_NETS = ("sae",)  # encoder + generator; the discriminators only train it


def book_config(row: Any) -> SAEConfig:
    """The SAE of a profile's row (helpers.config.Family): its size, with the row's deviations (`row.model`)."""
    return dataclasses.replace(scaled_config(row.resolution, row.width), **row.model)


def book_spec(row: Any, split: Mapping[str, Tensor], seed: int, config: SAEConfig | None = None) -> TrainSpec:
    """The book's SAE (helpers.book_models): `config` or the row's (`book_config`), the row's lr, on the split's
    "image"."""
    cfg = config or book_config(row)
    if row.lr is not None:
        cfg = dataclasses.replace(cfg, lr=row.lr)
    return training_spec(cfg, InMemory({"image": split["image"]}), steps=row.steps, batch_size=row.batch_size,
                         seed=seed)


__all__ = [
    "SAEConfig", "paper_config", "scaled_config", "Encoder", "Generator", "SwappingAutoencoder", "Discriminator",
    "PatchDiscriminator", "swap_index", "random_crops", "decode_pair", "build", "l2_normalize", "crops_of",
    "generator_terms", "decoded_generator_terms", "discriminator_terms", "r1_terms", "optimizers", "losses", "training_spec", "EVALUATED_NETS",
    "book_config", "book_spec",
]
