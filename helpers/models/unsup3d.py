"""unsup3d (Wu, Rupprecht & Vedaldi, CVPR 2020) with paper 004's mutual reconstruction (Sec. 3.2) and yaw
augmentation (Sec. 3.4), trained on a StyleGAN2's generations.

Decomposition (unsup3d's networks, at the profile's resolution): an image I gives
- a canonical depth map (encoder-decoder; raw output minus its mean, tanh, mapped to [0.9, 1.1]; a border of
  resolution/32 pixels set to 0.7 max + 0.3 min as in unsup3d),
- a canonical albedo (encoder-decoder, tanh, in [0, 1]),
- the light (encoder, tanh): paper 004's coloured light, ambient RGB and diffuse RGB in [0, 1] and a direction
  (dx, dy) in [-1, 1] (towards the light: normalise(dx, dy, -1)); unsup3d has one ambient and one diffuse number,
- the view (encoder, tanh): yaw, pitch, roll x `rotation_range` degrees, x/y translation x 0.1, z translation x 0
  (unsup3d's synface/CelebA ranges: 60 degrees, 0.1, 0),
- a confidence network: two sigma maps (the reconstruction and its flipped twin).
Reconstruction: canonical image = albedo x (ambient + diffuse max(0, n . l)) with normals from the canonical depth,
warped into the view by the book's ray-marching renderer (`helpers.render`: the same image model, an inverse warp
instead of unsup3d's mesh rasteriser), once with the canonical depth and albedo and once with both flipped
horizontally (the symmetry prior). Loss: unsup3d's confidence-weighted L1, |I - I_hat| sqrt(2) / sigma + log sigma
averaged over the rendered pixels, for the reconstruction plus `lam_flip` (0.5) x the flipped one.

Perceptual term: unsup3d adds `lam_perc` (1) x a perceptual loss, a Gaussian likelihood of the difference of
ImageNet-VGG16 relu3_3 features (a quarter of the resolution) with its own confidence maps, for the reconstruction and
its flipped twin. Those weights cannot be downloaded here. Deviation: with `lam_perc` > 0 the book takes the same
layer of its own feature network instead (`PerceptualFeatures`: the stem and first two stages of
`helpers.models.features.FeatureNet`, trained on SynthFaces' attributes, frozen, a quarter of the resolution), and
the confidence network's two extra sigma maps are average-pooled to that size (unsup3d decodes them there);
`lam_perc` = 0 drops the term. Chapter 04 states which.

Mutual reconstruction (paper 004): with probability `mutual` (epsilon; 0.5 for CASIA, 0.1 for FFHQ, 0 = unsup3d) an
image is reconstructed from the canonical depth and albedo of another image of the batch (the next one), with its own
light and view, and the sigma maps come from a mutual confidence network that sees both images concatenated channel
wise. Per image this is a draw; its expectation is the paper's (1 - eps) L_recon + eps L~_recon.

Yaw augmentation (Sec. 3.4, Eq. 4): v_yaw is regressed (Eq. 2-3) from the latent codes of the training generations
and the model's own yaw predictions, every 10 iterations, averaged with momentum 0.995 (the paper's, over its 60k
iterations; the book's shorter rows scale it so the average forgets as much over the run, `scaled_momentum`: at 0.995,
600 steps would keep three quarters of the first estimates, made by an untrained network); a share of each batch is
generated from w' = w - (w.v) v + (mean + s sigma_w) v with s ~ U[-10, 10] (`helpers.directions.extrapolate`; mean is
the average projection, see there).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import directions, render
from ..metrics import mean_angle_deviation, scale_invariant_depth_error
from ..train import Phase, TrainSpec
from .mask_vae import group_count
from .semantics import SEMANTIC_NAMES, semantics_from_parts, true_semantics
from .stylegan import Generator

EPS = 1e-7


@dataclass(frozen=True)
class Unsup3dConfig:
    """Every setting of unsup3d with mutual reconstruction and yaw augmentation (JSON-able)."""

    resolution: int = 64
    width: int = 64  # unsup3d's nf: channels of the first layer, doubled per level up to 8 x width
    zdim: int = 256  # bottleneck of the depth and albedo networks
    depth_resolution: int | None = None  # None: unsup3d's full-resolution depth; else decoded at this size, upsampled
    rotation_range: float = 60.0  # degrees: the tanh bounds |yaw|, |pitch|, |roll| by this
    xy_translation_range: float = 0.1
    z_translation_range: float = 0.0
    min_depth: float = 0.9
    max_depth: float = 1.1
    fov: float = 10.0
    lam_flip: float = 0.5
    lam_perc: float = 0.0  # the perceptual term's weight (unsup3d: 1, on VGG16; 0 = dropped; see PerceptualFeatures)
    mutual: float = 0.0  # epsilon: probability of reconstructing from another image's depth and albedo
    yaw_augment: float = 0.0  # share of each batch generated along v_yaw (Eq. 4); 0 = none
    augment_scale: float = 10.0  # s ~ U[-scale, scale]
    augment_every: int = 10  # re-estimate v_yaw every this many iterations
    augment_momentum: float = 0.995
    lr: float = 1e-4
    view_noise_deg: float = 0.0  # training only: uniform noise on the predicted angles (0 = unsup3d; see view_noise)
    view_noise_px: float = 0.0  # training only: uniform noise on the x/y translation, image pixels at depth 1
    canonical_scale: int = 1  # canonical depth and albedo at this multiple of `resolution`, area-averaged (1 = unsup3d)
    loss_border: int = 0  # pixels along the image's edges left out of the photometric loss (0 = unsup3d)

    def __post_init__(self) -> None:
        errors = []
        if self.resolution < 16 or self.resolution & (self.resolution - 1):
            errors.append(f"resolution={self.resolution}: must be a power of two >= 16")
        if self.depth_resolution is not None and not (4 <= self.depth_resolution <= self.resolution and
                                                      self.depth_resolution & (self.depth_resolution - 1) == 0):
            errors.append(f"depth_resolution={self.depth_resolution}: must be None or a power of two in "
                          f"4..resolution")
        if not 0 <= self.loss_border < self.resolution // 4:
            errors.append(f"loss_border={self.loss_border}: must be in 0..{self.resolution // 4 - 1}")
        if self.canonical_scale not in (1, 2, 4):
            errors.append(f"canonical_scale={self.canonical_scale}: must be 1, 2 or 4")
        if self.width < 1 or self.zdim < 1:
            errors.append(f"width={self.width}, zdim={self.zdim}: must be >= 1")
        if not 0 <= self.mutual <= 1 or not 0 <= self.yaw_augment < 1:
            errors.append(f"mutual={self.mutual}, yaw_augment={self.yaw_augment}: need 0 <= mutual <= 1 and "
                          "0 <= yaw_augment < 1")
        if not 0 < self.min_depth < self.max_depth:
            errors.append(f"min_depth={self.min_depth}, max_depth={self.max_depth}: need 0 < min < max")
        if self.lam_perc < 0:
            errors.append(f"lam_perc={self.lam_perc}: must be >= 0")
        if self.view_noise_deg < 0 or self.view_noise_px < 0:
            errors.append(f"view_noise_deg={self.view_noise_deg}, view_noise_px={self.view_noise_px}: must be >= 0")
        if not 0 < self.augment_momentum < 1 or self.augment_every < 1:
            errors.append(f"augment_momentum={self.augment_momentum}, augment_every={self.augment_every}: need "
                          "0 < momentum < 1 and every >= 1")
        if errors:
            raise ValueError("; ".join(errors))


def paper_config(mutual: float = 0.5) -> Unsup3dConfig:
    """unsup3d's published network sizes and perceptual term at 64 px (paper 004 resizes every generation to 64 x 64)
    with paper 004's swap probability (0.5 for CASIA, 0.1 for FFHQ)."""
    return Unsup3dConfig(resolution=64, width=64, zdim=256, mutual=mutual, lam_perc=1.0)


# ----------------------------------------------------------------------------------------------------------------
# Networks


def _levels(resolution: int) -> int:
    """Stride-2 levels from `resolution` down to 4 x 4."""
    return int(math.log2(resolution)) - 2


def _channels(width: int, level: int) -> int:
    return width * min(2 ** level, 8)


class Encoder(nn.Module):
    """unsup3d's Encoder: 4x4 stride-2 convs with ReLU down to 4 x 4, a 4x4 valid conv to 1 x 1, a 1x1 conv, tanh."""

    def __init__(self, cin: int, cout: int, resolution: int, width: int):
        super().__init__()
        layers: list[nn.Module] = []
        c = cin
        for level in range(_levels(resolution)):
            layers += [nn.Conv2d(c, _channels(width, level), 4, 2, 1), nn.ReLU()]
            c = _channels(width, level)
        layers += [nn.Conv2d(c, c, 4, 1, 0), nn.ReLU(), nn.Conv2d(c, cout, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.net(x).flatten(1).float())


class EncoderDecoder(nn.Module):
    """unsup3d's EDDeconv: GroupNorm/LeakyReLU encoder to a zdim code at 1 x 1, a transposed-conv decoder with
    GroupNorm/ReLU to `out_resolution` (default: `size`), a 5x5 output conv (no activation: the caller applies its
    own), then bilinear upsampling to `size` (default: the input's resolution) where `out_resolution` is smaller."""

    def __init__(self, cin: int, cout: int, resolution: int, width: int, zdim: int, out_resolution: int | None = None,
                 size: int | None = None):
        super().__init__()
        levels = _levels(resolution)
        self.size = size or resolution
        skipped = levels - _levels(out_resolution or self.size)  # < 0: levels above the input's resolution
        enc: list[nn.Module] = []
        c = cin
        for level in range(levels):
            cnext = _channels(width, level)
            enc += [nn.Conv2d(c, cnext, 4, 2, 1)]
            if level:
                enc += [nn.GroupNorm(group_count(cnext, 16), cnext)]
            enc += [nn.LeakyReLU(0.2)]
            c = cnext
        enc += [nn.Conv2d(c, zdim, 4, 1, 0), nn.ReLU()]
        dec: list[nn.Module] = [nn.ConvTranspose2d(zdim, c, 4, 1, 0), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1), nn.ReLU()]
        for level in reversed(range(skipped, levels)):
            cnext = _channels(width, level - 1) if level > 0 else width
            dec += [nn.ConvTranspose2d(c, cnext, 4, 2, 1), nn.GroupNorm(group_count(cnext, 16), cnext), nn.ReLU(),
                    nn.Conv2d(cnext, cnext, 3, 1, 1), nn.GroupNorm(group_count(cnext, 16), cnext), nn.ReLU()]
            c = cnext
        dec += [nn.Conv2d(c, cout, 5, 1, 2)]
        self.net = nn.Sequential(*enc, *dec)

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x).float()
        if out.shape[-1] != self.size:
            out = F.interpolate(out, size=self.size, mode="bilinear", align_corners=False)
        return out


class YawDirection(nn.Module):
    """The state of Sec. 3.4's augmentation: v_yaw [d], the mean and std of w.v, and a ring buffer of recent
    (w, predicted yaw) pairs of non-augmented generations (buffers only: checkpointed, never optimised)."""

    def __init__(self, w_dim: int, capacity: int):
        super().__init__()
        self.register_buffer("v", torch.zeros(w_dim))
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.zeros(()))
        self.register_buffer("w", torch.zeros(capacity, w_dim))
        self.register_buffer("yaw", torch.zeros(capacity))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @property
    def ready(self) -> bool:
        return bool(self.v.abs().sum() > 0)

    @torch.no_grad()
    def remember(self, w: Tensor, yaw: Tensor) -> None:
        n, cap = w.shape[0], self.w.shape[0]
        at = (self.filled + torch.arange(n, device=w.device)) % cap
        self.w[at] = w.float()
        self.yaw[at] = yaw.float()
        self.filled += n

    @torch.no_grad()
    def update(self, momentum: float) -> None:
        """Eq. 2-3 on the buffer (N/2 pairs > w_dim needed), then the moving average of the unit direction."""
        n = int(min(self.filled, self.w.shape[0]))
        if n // 2 <= self.w.shape[1]:
            return
        dW, dY = directions.pair_differences(self.w[:n], self.yaw[:n])
        estimate = directions.regress_direction(dW, dY)
        if not torch.isfinite(estimate).all() or estimate.norm() == 0:
            return
        v = directions.moving_direction(self.v if self.ready else None, estimate, momentum)
        self.v.copy_(v)
        projection = self.w[:n] @ v
        self.mean.copy_(projection.mean())
        self.std.copy_(projection.std())


class Unsup3d(nn.Module):
    """All of unsup3d's networks; `decompose(image)` gives the canonical depth, albedo, light and view."""

    def __init__(self, cfg: Unsup3dConfig):
        super().__init__()
        self.cfg = cfg
        r, w, canon = cfg.resolution, cfg.width, cfg.resolution * cfg.canonical_scale
        self.depth_net = EncoderDecoder(3, 1, r, w, cfg.zdim, cfg.depth_resolution, size=canon)
        self.albedo_net = EncoderDecoder(3, 3, r, w, cfg.zdim, size=canon)
        self.light_net = Encoder(3, 8, r, w)
        self.view_net = Encoder(3, 6, r, w)
        maps = 4 if cfg.lam_perc > 0 else 2  # sigma of the reconstruction and its flip (+ the perceptual two)
        self.confidence_net = EncoderDecoder(3, maps, r, w // 2 or 1, cfg.zdim // 2)
        self.mutual_confidence_net = (EncoderDecoder(6, maps, r, w // 2 or 1, cfg.zdim // 2) if cfg.mutual > 0
                                      else None)

    def canonical_depth(self, raw: Tensor) -> Tensor:
        """unsup3d's depth: raw minus its mean, tanh, to [min, max]; a border set to 0.7 max + 0.3 min."""
        cfg = self.cfg
        d = torch.tanh(raw - raw.mean(dim=(1, 2, 3), keepdim=True))
        d = (1 + d) / 2 * cfg.max_depth + (1 - d) / 2 * cfg.min_depth
        border = max(1, d.shape[-1] // 32)
        inside = torch.zeros_like(d, dtype=torch.bool)
        inside[..., border:-border, border:-border] = True
        return torch.where(inside, d, torch.full_like(d, 0.7 * cfg.max_depth + 0.3 * cfg.min_depth))

    def view_vector(self, raw: Tensor) -> Tensor:
        """[B, 6] yaw, pitch, roll (radians), translation x, y, z from the view network's tanh outputs."""
        cfg = self.cfg
        scale = raw.new_tensor([math.radians(cfg.rotation_range)] * 3 + [cfg.xy_translation_range] * 2
                               + [cfg.z_translation_range])
        return raw * scale

    def decompose(self, image: Tensor) -> dict[str, Tensor]:
        """image [B, 3, R, R] in [0, 1] -> depth [B,1,R,R], albedo [B,3,R,R], light [B,8] (ambient RGB, diffuse RGB,
        dx, dy), view [B,6]."""
        r = self.cfg.resolution
        if image.dim() != 4 or image.shape[1] != 3 or image.shape[-2:] != (r, r):
            raise ValueError(f"image of shape {tuple(image.shape)}: this unsup3d takes [B, 3, {r}, {r}] (its "
                             f"config's resolution); resize the images or build the model at their size")
        x = image * 2 - 1
        light = self.light_net(x)
        return {"depth": self.canonical_depth(self.depth_net(x)),
                "albedo": (torch.tanh(self.albedo_net(x)) + 1) / 2,
                "light": torch.cat([(light[:, :6] + 1) / 2, light[:, 6:]], 1),
                "view": self.view_vector(self.view_net(x))}

    def semantics(self, parts: Mapping[str, Tensor]) -> Tensor:
        """The 14 semantics [B, 14] (SEMANTIC_NAMES) of a decomposition."""
        light = parts["light"]
        return semantics_from_parts(parts["view"], light[:, 0:3], light[:, 3:6], light[:, 6:8])

    def confidence(self, image: Tensor, source: Tensor | None = None) -> Tensor:
        """sigma maps [B, 2, R, R] (reconstruction, flipped reconstruction; with `lam_perc` two more for the perceptual
        term, [B, 4, R, R]); `source` = the images whose depth and albedo are used (mutual reconstruction: the mutual
        network sees both)."""
        x = image * 2 - 1
        if source is None:
            return F.softplus(self.confidence_net(x)) + EPS
        if self.mutual_confidence_net is None:
            raise ValueError("this model has no mutual confidence network (mutual = 0)")
        return F.softplus(self.mutual_confidence_net(torch.cat([x, source * 2 - 1], 1))) + EPS


def canonical_image(depth: Tensor, albedo: Tensor, light: Tensor, fov: float = 10.0) -> Tensor:
    """albedo x (ambient_rgb + diffuse_rgb max(0, n . l)), normals from the canonical depth, [B, 3, R, R]."""
    normals = render.depth_to_normals(depth, fov)
    direction = render.light_direction(light[:, 6], light[:, 7])
    lambert = (normals * direction[:, :, None, None]).sum(1, keepdim=True).clamp_min(0)
    shading = light[:, 0:3, None, None] + light[:, 3:6, None, None] * lambert
    return albedo * shading


def reconstruct(depth: Tensor, albedo: Tensor, light: Tensor, view: Tensor, fov: float = 10.0,
                size: int | None = None) -> dict[str, Tensor]:
    """The canonical image warped into the view by the book's renderer: image, mask (share of the pixel that hit a
    surface), view depth; at `size` pixels (default: the canonical maps'), each the average of its rays that hit when
    the canonical maps are finer (one ray per canonical pixel, area sampling)."""
    with torch.autocast(depth.device.type, enabled=False):  # the ray marcher's root finding needs float32
        return _reconstruct(depth.float(), albedo.float(), light.float(), view.float(), fov, size)


def _reconstruct(depth: Tensor, albedo: Tensor, light: Tensor, view: Tensor, fov: float,
                 size: int | None) -> dict[str, Tensor]:
    canon = canonical_image(depth, albedo, light, fov)
    b, fine = depth.shape[0], depth.shape[-1]
    flat = render.Light(ambient=depth.new_ones(b, 1), diffuse=depth.new_zeros(b, 1),
                        direction=depth.new_tensor([0.0, 0.0, -1.0]).expand(b, 3))
    out = render.render(depth, canon, flat, view, fov_deg=fov, supersample=1)
    hit = out["mask_hard"].float()
    if size is None or size == fine:
        return {"image": out["image"], "mask": hit, "depth": out["depth"]}
    if fine % size:
        raise ValueError(f"size={size}: the canonical maps ({fine} px) must be a multiple of it")
    k = fine // size
    cover = F.avg_pool2d(hit, k)

    def mean_over_hits(x: Tensor) -> Tensor:
        return F.avg_pool2d(x * hit, k) / cover.clamp_min(1 / k ** 2)

    depth_seen = torch.where(cover > 0, mean_over_hits(out["depth"]), F.avg_pool2d(out["depth"], k))
    return {"image": mean_over_hits(out["image"]), "mask": cover, "depth": depth_seen}


def canonical_pixel(cfg: Unsup3dConfig) -> float:
    """The width of one image pixel at depth 1 (the object centre), in the view's translation units."""
    return 2 * math.tan(math.radians(cfg.fov) / 2) / cfg.resolution


def view_noise(cfg: Unsup3dConfig, n: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> Tensor:
    """[n, 6] uniform noise for predicted views during training: +-view_noise_deg on yaw, pitch, roll (radians),
    +-view_noise_px image pixels at depth 1 on the x and y translation, none on z. Not in unsup3d: the objective
    averaged over nearby views (randomised smoothing); at 32 px it lets the view network read more of each turn
    (book/training.md)."""
    scale = torch.tensor([math.radians(cfg.view_noise_deg)] * 3 + [cfg.view_noise_px * canonical_pixel(cfg)] * 2
                         + [0.0])
    return ((torch.rand(n, 6, generator=generator) * 2 - 1) * scale).to(device)


def noisy_view(cfg: Unsup3dConfig, view: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """view [B, 6] plus `view_noise` during training; unchanged (and no random numbers drawn) without view noise."""
    if not (cfg.view_noise_deg or cfg.view_noise_px):
        return view
    return view + view_noise(cfg, view.shape[0], generator, view.device)


def photometric_loss(image: Tensor, target: Tensor, mask: Tensor, sigma: Tensor) -> Tensor:
    """unsup3d's confidence-weighted L1 (a Laplacian likelihood): mean over mask of |I - I_hat| sqrt(2) / sigma +
    log sigma, per channel."""
    loss = (image - target).abs() * math.sqrt(2) / sigma + sigma.log()
    mask = mask.expand_as(loss)
    return (loss * mask).sum() / mask.sum().clamp_min(1)


class PerceptualFeatures(nn.Module):
    """The perceptual term's features: the stem and first two stages of a trained `FeatureNet` (the analog of VGG16's
    relu3_3: a quarter of the resolution), frozen; image [B, 3, R, R] in [0, 1] -> [B, 2w, R/4, R/4]."""

    def __init__(self, feature_net: nn.Module):
        super().__init__()
        self.layers = copy.deepcopy(nn.Sequential(feature_net.stem, *feature_net.stages[:2])).eval()
        self.layers.requires_grad_(False)

    def train(self, mode: bool = True) -> "PerceptualFeatures":
        return self  # always in eval mode: a fixed measure, as unsup3d's VGG

    def forward(self, image: Tensor) -> Tensor:
        return self.layers(image * 2 - 1).float()


def feature_likelihood(f_image: Tensor, f_target: Tensor, mask: Tensor, sigma: Tensor) -> Tensor:
    """unsup3d's perceptual term on features already computed (a Gaussian likelihood): mean over the mask [B, 1, R, R],
    pooled to the features' resolution, of (f(I) - f(I_hat))^2 / (2 sigma^2) + log sigma, sigma pooled the same way."""
    k = mask.shape[-1] // f_image.shape[-1]
    sigma, mask = F.avg_pool2d(sigma, k), F.avg_pool2d(mask, k).expand_as(f_image)
    loss = (f_image - f_target) ** 2 / (2 * sigma ** 2 + EPS) + (sigma + EPS).log()
    return (loss * mask).sum() / mask.sum().clamp_min(1)


def central_window(size: int, border: int, like: Tensor) -> Tensor:
    """[1, 1, size, size]: 1 except on the `border` outermost pixels of every edge, where a turned view looks past
    the canonical maps' edge (their pixels leave the rendered mask, which the loss's gradient does not see)."""
    window = like.new_zeros(1, 1, size, size)
    window[..., border:size - border, border:size - border] = 1
    return window


def symmetric_loss(depth: Tensor, albedo: Tensor, light: Tensor, view: Tensor, image: Tensor, sigma: Tensor,
                   cfg: Unsup3dConfig, pixels: Tensor | None = None,
                   features: nn.Module | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """unsup3d's objective for one batch: the photometric loss of the reconstruction plus `lam_flip` x that of the
    reconstruction from the horizontally flipped depth and albedo (sigma [B, 2, R, R]), and with `cfg.lam_perc` the
    perceptual terms of both on `features` (sigma [B, 4, R, R]); returns (total, l1, l1_flip). `pixels`
    [B, 1, R, R] (measurements only) restricts every term to those pixels of the image."""
    b = image.shape[0]
    both = reconstruct(torch.cat([depth, depth.flip(3)]), torch.cat([albedo, albedo.flip(3)]), light.repeat(2, 1),
                       view.repeat(2, 1), cfg.fov, size=image.shape[-1])
    mask = both["mask"].detach()
    if cfg.loss_border:
        mask = mask * central_window(image.shape[-1], cfg.loss_border, mask)
    if pixels is not None:
        mask = mask * pixels.repeat(2, 1, 1, 1)
    l1 = photometric_loss(both["image"][:b], image, mask[:b], sigma[:, 0:1])
    l1_flip = photometric_loss(both["image"][b:], image, mask[b:], sigma[:, 1:2])
    total = l1 + cfg.lam_flip * l1_flip
    if cfg.lam_perc > 0:
        if features is None or sigma.shape[1] != 4:
            raise ValueError(f"lam_perc={cfg.lam_perc}: the perceptual term needs `features` (PerceptualFeatures) and "
                             f"four sigma maps (got {sigma.shape[1]})")
        recon = both["image"] * both["mask"].detach()  # unsup3d: the reconstruction is 0 where nothing is rendered
        f = features(torch.cat([recon, image]))  # the input's features once for both terms
        perc = feature_likelihood(f[:b], f[2 * b:], mask[:b], sigma[:, 2:3])
        perc_flip = feature_likelihood(f[b:2 * b], f[2 * b:], mask[b:], sigma[:, 3:4])
        total = total + cfg.lam_perc * (perc + cfg.lam_flip * perc_flip)
    return total, l1, l1_flip


def mutual_swap(model: Unsup3d, parts: Mapping[str, Tensor], sigma: Tensor, image: Tensor,
                partner: Mapping[str, Tensor], partner_image: Tensor,
                swapped: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """Mutual reconstruction (paper 004, Sec. 3.2): where `swapped` [B] is true, the partner's canonical depth and
    albedo replace the image's and the sigma maps come from the mutual confidence network, which sees the image and
    its partner's; light and view stay the image's own."""
    pick = swapped[:, None, None, None]
    mixed = {**parts, **{k: torch.where(pick, partner[k], parts[k]) for k in ("depth", "albedo")}}
    return mixed, torch.where(pick, model.confidence(image, partner_image), sigma)


# ----------------------------------------------------------------------------------------------------------------
# Training data: generations of a frozen StyleGAN2


class Generations:
    """Images of a frozen StyleGAN2 with their w (no truncation, random noise), resized to `resolution` (paper 004
    resizes every generation to 64 px), optionally kept only with a probability `accept(image) -> [B] in [0, 1]`
    (e.g. to make a pose distribution in which profiles are rare)."""

    def __init__(self, G: Generator, resolution: int | None = None,
                 accept: Callable[[Tensor], Tensor] | None = None):
        self.G = copy.deepcopy(G).eval().requires_grad_(False)
        self.resolution = int(resolution or G.cfg.resolution)
        self.accept = accept

    @torch.no_grad()
    def from_w(self, w: Tensor) -> Tensor:
        image = self.G.synthesis(self.G.broadcast(w.to(self.G.w_avg.device)), noise_mode="random").float()
        if image.shape[-1] != self.resolution:
            image = F.interpolate(image, size=self.resolution, mode="bilinear", antialias=True, align_corners=False)
        return image.clamp(0, 1)

    @torch.no_grad()
    def sample(self, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """(w [n, d], images [n, 3, R, R]) drawn with the global torch RNG (the training loop seeds it per step)."""
        if self.G.w_avg.device != device:
            self.G.to(device)
        ws, images, tries = [], [], 0
        while sum(len(w) for w in ws) < n:
            w = self.G.mapping(torch.randn(n, self.G.cfg.z_dim, device=device))
            image = self.from_w(w)
            if self.accept is not None:
                keep = torch.rand(n, device=device) < self.accept(image)
                w, image = w[keep], image[keep]
            ws.append(w)
            images.append(image)
            tries += 1
            if tries > 1000:
                raise RuntimeError("Generations.accept kept almost no generation in 1000 batches")
        return torch.cat(ws)[:n], torch.cat(images)[:n]


# ----------------------------------------------------------------------------------------------------------------
# Training


def losses(cfg: Unsup3dConfig, generations: Generations, batch_size: int,
           features: PerceptualFeatures | None = None):
    """The loss (nets, batch, step) -> (loss, logs) of unsup3d with mutual reconstruction and yaw augmentation
    (`features`: the perceptual term's, with `cfg.lam_perc`)."""

    def loss(nets, batch, step):
        model, yaw_state = nets["unsup3d"], nets["yaw_direction"]
        device = next(model.parameters()).device
        if features is not None:
            features.to(device)
        w, image = generations.sample(batch_size, device)
        n_aug = round(cfg.yaw_augment * batch_size) if yaw_state.ready else 0
        if n_aug:
            s = (torch.rand(n_aug, device=device) * 2 - 1) * cfg.augment_scale
            w_aug = directions.extrapolate(w[-n_aug:], yaw_state.v, s, float(yaw_state.std), float(yaw_state.mean))
            image = torch.cat([image[:-n_aug], generations.from_w(w_aug)])
        parts = model.decompose(image)
        if cfg.yaw_augment > 0:
            plain = batch_size - n_aug
            yaw_state.remember(w[:plain], parts["view"][:plain, 0].detach())
            if (step + 1) % cfg.augment_every == 0:
                yaw_state.update(cfg.augment_momentum)
        sigma = model.confidence(image)
        swapped = torch.zeros(batch_size, dtype=torch.bool, device=device)
        if cfg.mutual > 0:
            swapped = torch.rand(batch_size, device=device) < cfg.mutual
            partner = {k: parts[k].roll(1, 0) for k in ("depth", "albedo")}  # the next image of the batch
            parts, sigma = mutual_swap(model, parts, sigma, image, partner, image.roll(1, 0), swapped)
        total, l1, l1_flip = symmetric_loss(parts["depth"], parts["albedo"], parts["light"],
                                            noisy_view(cfg, parts["view"]), image, sigma, cfg, features=features)
        logs = {"l1": l1.detach(), "l1_flip": l1_flip.detach(), "swapped": swapped.float().mean()}
        if cfg.yaw_augment > 0:
            logs["augmented"] = torch.tensor(float(n_aug))
        return total, logs

    return loss


def training_spec(cfg: Unsup3dConfig, generations: Generations, steps: int, batch_size: int, seed: int,
                  features: PerceptualFeatures | None = None, **loop: Any) -> TrainSpec:
    """The TrainSpec "unsup3d": one Adam phase on every network, on fresh generations each step (no dataset);
    `features` (frozen, not checkpointed) for the perceptual term when `cfg.lam_perc` > 0."""
    if cfg.mutual > 0 and batch_size < 2:
        raise ValueError(f"batch_size={batch_size}: mutual reconstruction swaps within a batch, so it needs >= 2")
    if (cfg.lam_perc > 0) != (features is not None):
        raise ValueError(f"lam_perc={cfg.lam_perc} with features={'given' if features is not None else None}: the "
                         "perceptual term needs its feature network, and only it uses one")
    w_dim = generations.G.cfg.w_dim
    if generations.resolution != cfg.resolution:
        raise ValueError(f"the generations are {generations.resolution} px; the unsup3d config is for "
                         f"{cfg.resolution} px")

    def build():
        return {"unsup3d": Unsup3d(cfg), "yaw_direction": YawDirection(w_dim, capacity=8 * w_dim)}

    def optimizers(nets):
        return {"unsup3d": torch.optim.Adam(nets["unsup3d"].parameters(), lr=cfg.lr, betas=(0.9, 0.999))}

    return TrainSpec(name="unsup3d", config={"model": dataclasses.asdict(cfg)}, build=build, optimizers=optimizers,
                     phases=[Phase("unsup3d", losses(cfg, generations, batch_size, features), "unsup3d")], steps=steps,
                     batch_size=batch_size, seed=seed, data=None, channels_last=False, **loop)


EVALUATED_NETS = ("unsup3d",)


PAPER_ITERATIONS = 60_000  # paper 004's unsup3d training on CASIA: 60k iterations of batch 64 (its Fig. 2)


def scaled_momentum(steps: int, momentum: float = 0.995, paper_steps: int = PAPER_ITERATIONS) -> float:
    """Sec. 3.4's moving average for a run of `steps`: the momentum per update that forgets as much over the run as
    the paper's 0.995 does over its 60k iterations (momentum^(steps / every) equal; 0.995 at 60k, 0.606 at 600)."""
    if steps < 1:
        raise ValueError(f"steps={steps}: must be >= 1")
    return momentum ** (paper_steps / steps)


def book_config(row: Any, **changes: Any) -> Unsup3dConfig:
    """The unsup3d of a profile's row: its resolution and width (zdim 4 x width, at most 256), the yaw direction's
    momentum scaled to the row's steps (`scaled_momentum`), the row's deviations."""
    cfg = Unsup3dConfig(resolution=row.resolution, width=row.width, zdim=min(256, 4 * row.width),
                        augment_momentum=scaled_momentum(row.steps))
    return dataclasses.replace(cfg, **{**row.model, **changes})


def book_spec(row: Any, split: Mapping[str, Tensor], seed: int, generator: Any,
              accept: tuple[str, Callable[[Tensor], Tensor]] | None = None,
              config: Unsup3dConfig | None = None, features: Any = None) -> TrainSpec:
    """The book's unsup3d on generations of a trained StyleGAN2 (`helpers.train.Trained`; `split` is the one the
    generator learned from). `accept` = (name, function) keeps generations with a probability (the name goes in the
    cache key, e.g. the regressor and rule that make profiles rare); `features` = a trained feature network
    (`Trained` of the "features" family) for the perceptual term, needed when the config's `lam_perc` > 0 (its
    checkpoint goes in the key)."""
    cfg = config or book_config(row)
    if row.lr is not None:
        cfg = dataclasses.replace(cfg, lr=row.lr)
    use_features = cfg.lam_perc > 0 and features is not None  # training_spec refuses lam_perc > 0 without them
    perceptual = PerceptualFeatures(features.nets["features"]) if use_features else None
    generations = Generations(generator.nets["G"], cfg.resolution, accept[1] if accept else None)
    spec = training_spec(cfg, generations, steps=row.steps, batch_size=row.batch_size, seed=seed, features=perceptual)
    spec.config = {**spec.config, "generator": generator.path.name, "accept": accept[0] if accept else None,
                   **({"features": features.path.name} if perceptual is not None else {})}
    return spec


# ----------------------------------------------------------------------------------------------------------------
# Evaluation against SynthFaces' ground truth (unsup3d's synface protocol)


def evaluation_mask(foreground: Tensor, erode: int = 1) -> Tensor:
    """The face pixels scored by SIDE/MAD: the true foreground [B,1,R,R] eroded by `erode` pixels (edges excluded)."""
    m = (foreground > 0.5).float()
    if erode:
        m = -F.max_pool2d(-m, 2 * erode + 1, 1, erode)
    return m


@torch.no_grad()
def evaluate(model: Unsup3d, batch: Mapping[str, Tensor], chunk: int = 64) -> dict[str, Tensor]:
    """Per image on SynthFaces renders ("image", "view_depth", "mask"): predicted semantics [B, 14], SIDE [B] and
    MAD [B] of the predicted view depth against the true one on the (eroded) true foreground."""
    out: dict[str, list[Tensor]] = {"semantics": [], "side": [], "mad": []}
    device = next(model.parameters()).device
    for i in range(0, batch["image"].shape[0], chunk):
        image = batch["image"][i:i + chunk].to(device).float()
        parts = model.decompose(image)
        recon = reconstruct(parts["depth"], parts["albedo"], parts["light"], parts["view"], model.cfg.fov,
                            size=image.shape[-1])
        true_depth = batch["view_depth"][i:i + chunk].to(device).float()
        mask = evaluation_mask(batch["mask"][i:i + chunk].to(device)) * recon["mask"]
        out["semantics"].append(model.semantics(parts).cpu())
        out["side"].append(scale_invariant_depth_error(recon["depth"], true_depth, mask).cpu())
        out["mad"].append(mean_angle_deviation(recon["depth"], true_depth, mask, model.cfg.fov).cpu())
    return {k: torch.cat(v) for k, v in out.items()}


@torch.no_grad()
def scores(model: Unsup3d, batch: Mapping[str, Tensor]) -> dict[str, Any]:
    """`evaluate` summarised against SynthFaces' truth ("view", "light" as well): mean SIDE and MAD, the correlation of
    the predicted yaw and pitch with the true ones, and the predicted and true yaw per image ("yaw", "true_yaw")."""
    out = evaluate(model, batch)
    truth = true_semantics(batch["view"], batch["light"])
    corr = [torch.corrcoef(torch.stack([out["semantics"][:, i], truth[:, i]]))[0, 1].item() for i in (0, 1)]
    return {"side": out["side"].mean().item(), "mad": out["mad"].mean().item(), "yaw_corr": corr[0],
            "pitch_corr": corr[1], "yaw": out["semantics"][:, 0], "true_yaw": truth[:, 0]}


__all__ = [
    "EPS", "Unsup3dConfig", "paper_config", "Encoder", "EncoderDecoder", "YawDirection", "Unsup3d",
    "canonical_image", "reconstruct", "canonical_pixel", "view_noise", "noisy_view", "photometric_loss",
    "PerceptualFeatures", "feature_likelihood", "central_window", "symmetric_loss", "mutual_swap",
    "Generations", "losses", "training_spec",
    "EVALUATED_NETS",
    "book_config", "book_spec", "evaluation_mask", "evaluate",
    "scores",
    "SEMANTIC_NAMES",
]
