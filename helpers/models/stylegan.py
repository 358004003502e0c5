"""StyleGAN2 (Karras et al., CVPR 2020) in pure torch, with paper 004's decorrelation loss (Zheng et al., CVPR 2021,
Sec. 3.1, Eq. 1): the generator whose W and W+ spaces chapters 04 and 05 read.

- Mapping network F: z [B, z_dim] ~ N(0, I), normalised to unit second moment, then `mapping_layers` equalised fully
  connected layers with lrelu and a learning-rate multiplier of 0.01 -> w [B, w_dim]. A running mean `w_avg` (decay
  0.995, updated by the training loss's own samples) is the centre of truncation: w' = w_avg + psi (w - w_avg).
- Synthesis network: a learned 4 x 4 constant, then one block per resolution 8, 16, ..., R: bilinear x2, two
  modulated/demodulated 3x3 convs (each with per-pixel noise, a bias and lrelu), and a modulated 1x1 to-RGB (no
  demodulation) whose output is added to the upsampled RGB of the block before ("skip" generator). The 4 x 4 block has
  one conv. W+ is one w per synthesis layer: `num_ws` = 2 log2(R) - 2 (10 at 64 px, 14 at 256 px); the convs take
  ws[0..num_ws-2] in order and a to-RGB shares its index with the next block's first conv (as NVlabs' code).
  Channels per resolution r: min(channel_base / r, channel_max).
- Discriminator: StyleGAN2's residual D: from-RGB, residual blocks down to 4 x 4, minibatch standard deviation
  (group 4, 1 channel), a 3x3 conv, a fully connected layer and the logit.
- Training, as stylegan2-ada's `training/loss.py`: non-saturating logistic loss; R1 on reals with gamma of its `auto`
  configuration (0.0002 R^2 / batch) every 16 steps; path-length regularisation (weight 2, every 4 steps, half batch)
  where the profile keeps it; style mixing with probability 0.9 (one cutoff per batch); Adam lr 0.0025, betas
  (0, 0.99), with the lazy-regularisation correction of lr and betas; an exponential moving average of G (the book's
  loop, `helpers.train.EMA`). No augmentation: chapter 04 regresses yaw, which a flip would corrupt.
- Decorrelation (paper 004, Eq. 1), `decorrelation_loss`: added to the generator's loss with weight
  `decorrelation` (1 in the paper's Eq. 2), computed on its own batch of `decorrelation_samples` (>= 1024) z through
  the mapping network only, so only F receives its gradient.

Simplifications against NVlabs' code (stated in chapter 04): bilinear upsampling and 2x2 average pooling instead of the
[1, 3, 3, 1] FIR filters; no conv clamping or fp16 layers (the book trains in bf16 autocast, the mapping in fp32).
Images are in [0, 1] units like every image of the book (the synthesis output is 0.5 (rgb + 1), not clamped).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import metrics
from ..data.memory import InMemory
from ..inference import in_chunks
from ..train import Phase, TrainSpec
from .gan import ada_r1_gamma, lazy_adam, non_saturating, path_length_penalty, path_lengths, r1_penalty
from .layers import (EqualConv2d, EqualLinear, ModulatedConv2d, ResDownBlock, StyledConv, from_rgb_lrelu, lrelu,
                     minibatch_stddev)

NOISE_MODES = ("random", "const", "none")


# ----------------------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class StyleGANConfig:
    """Every setting of the StyleGAN2 and its training (JSON-able through dataclasses.asdict)."""

    resolution: int = 256
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    w_avg_beta: float = 0.995
    channel_base: int = 16384  # channels at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    mbstd_group: int = 4
    pool_first: bool = True  # D's down blocks convolve after pooling, StyleGAN2's order (False: the book's first form)
    style_mixing: float = 0.9
    r1_gamma: float = 1.0
    r1_every: int = 16
    pl_weight: float = 2.0  # 0: no path-length regularisation
    pl_every: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    decorrelation: float = 0.0  # weight of Eq. 1 in the generator's loss (paper 004: 1; 0 = plain StyleGAN2)
    decorrelation_samples: int = 1024
    lr: float = 0.0025
    beta1: float = 0.0
    beta2: float = 0.99

    def __post_init__(self) -> None:
        errors = []
        k = math.log2(self.resolution) if self.resolution > 0 else 0
        if k != int(k) or not 3 <= k <= 10:
            errors.append(f"resolution={self.resolution}: must be a power of 2 from 8 to 1024")
        for name in ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "mbstd_group", "r1_every",
                     "pl_every", "pl_batch_shrink"):
            if getattr(self, name) < 1:
                errors.append(f"{name}={getattr(self, name)}: must be >= 1")
        if not 0 <= self.style_mixing <= 1:
            errors.append(f"style_mixing={self.style_mixing}: must be a probability in [0, 1]")
        if not 0 < self.w_avg_beta < 1 or not 0 < self.mapping_lr_mul <= 1:
            errors.append(f"w_avg_beta={self.w_avg_beta}, mapping_lr_mul={self.mapping_lr_mul}: need both in (0, 1]")
        for name in ("r1_gamma", "pl_weight", "decorrelation"):
            if getattr(self, name) < 0:
                errors.append(f"{name}={getattr(self, name)}: must be >= 0")
        if self.decorrelation > 0 and self.decorrelation_samples < 2 * self.w_dim:
            errors.append(f"decorrelation_samples={self.decorrelation_samples}: a {self.w_dim} x {self.w_dim} "
                          f"correlation matrix needs at least 2 * w_dim = {2 * self.w_dim} samples (paper: >= 1024)")
        if self.lr <= 0:
            errors.append(f"lr={self.lr}: must be > 0")
        if errors:
            raise ValueError("; ".join(errors))

    @property
    def num_ws(self) -> int:
        """Number of ws of W+: 2 log2(resolution) - 2."""
        return 2 * round(math.log2(self.resolution)) - 2

    def channels(self, resolution: int) -> int:
        """Feature maps at one resolution of G and D: min(channel_base // resolution, channel_max)."""
        return min(self.channel_base // resolution, self.channel_max)


def paper_config() -> StyleGANConfig:
    """Paper 004's FFHQ model: StyleGAN2 at 256 px as stylegan2-ada's `paper256` configuration (z and w 512, mapping
    depth 8, channel_base 16384 -> 512 channels up to 32 px, 64 at 256 px; minibatch-std group 8; R1 gamma 1;
    path length 2; style mixing 0.9; batch 64, lr 0.0025; G EMA 20 kimg). Plain, as every profile's config: set
    `decorrelation=1.0` for the paper's decorrelated GAN (estimated on 4096 z per step here)."""
    return StyleGANConfig(resolution=256, mbstd_group=8, r1_gamma=1.0, decorrelation_samples=4096)


def scaled_config(resolution: int, width: int, batch_size: int, **changes: Any) -> StyleGANConfig:
    """A profile's model, shaped as stylegan2-ada's `auto` configuration: z and w of `width` dims, mapping depth 2,
    R1 gamma 0.0002 R^2 / batch, and channels min(16 width / r, width): `width` up to 16 px, halving per doubling
    above (width / 2 at 32 px, width / 4 at 64 px). `changes` override any other field."""
    fields = dict(resolution=int(resolution), z_dim=int(width), w_dim=int(width), mapping_layers=2,
                  channel_base=16 * int(width), channel_max=int(width), mbstd_group=4,
                  r1_gamma=ada_r1_gamma(resolution, batch_size))
    return StyleGANConfig(**{**fields, **changes})


# ----------------------------------------------------------------------------------------------------------------
# Networks


def normalize_2nd_moment(z: Tensor, eps: float = 1e-8) -> Tensor:
    """z / sqrt(mean(z^2)) per item: the mapping network's input."""
    return z * (z.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z [B, z_dim] -> w [B, w_dim]: normalised z, `mapping_layers` FC layers with lrelu (lr multiplier 0.01)."""

    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        self.layers = nn.ModuleList(EqualLinear(dims[i], dims[i + 1], lr_mul=cfg.mapping_lr_mul)
                                    for i in range(cfg.mapping_layers))

    def forward(self, z: Tensor) -> Tensor:
        x = normalize_2nd_moment(z.float())
        for layer in self.layers:
            x = lrelu(layer(x))
        return x


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB without demodulation, plus a bias."""

    def __init__(self, cin: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(cin, 3, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return self.conv(x, w, bias=self.bias).float()


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (bilinear x2, conv0), conv1, to-RGB; the 4 x 4 block starts from the
    learned constant and has conv1 only."""

    def __init__(self, cin: int, cout: int, resolution: int, w_dim: int):
        super().__init__()
        self.resolution = resolution
        self.first = resolution == 4
        if self.first:
            self.const = nn.Parameter(torch.randn(cout, 4, 4))
        else:
            self.conv0 = StyledConv(cin, cout, w_dim)
        self.conv1 = StyledConv(cout, cout, w_dim)
        self.torgb = ToRGB(cout, w_dim)
        # the const noise of conv0 and conv1: [2, 1, r, r], one image shared by the batch (the projector swaps in
        # [2, B, r, r], one per image, and optimises them)
        self.register_buffer("noise_const", torch.randn(2, 1, resolution, resolution))
        self.num_conv = 1 if self.first else 2

    def noise(self, mode: str, index: int, batch: int, like: Tensor) -> Tensor:
        """The noise image of conv `index` for a noise mode: fresh N(0, 1), the block's constant, or zero."""
        if mode == "random":
            return torch.randn(batch, 1, self.resolution, self.resolution, device=like.device, dtype=like.dtype)
        if mode == "const":
            return self.noise_const[index].unsqueeze(1)
        return torch.zeros(1, 1, 1, 1, device=like.device, dtype=like.dtype)

    def forward(self, x: Tensor | None, rgb: Tensor | None, ws: Tensor, noise_mode: str) -> tuple[Tensor, Tensor]:
        """ws [B, num_conv + 1, w_dim] (the convs', then the to-RGB's) -> (features, RGB in [-1, 1] units)."""
        b = ws.shape[0]
        if self.first:
            x = self.const[None].expand(b, -1, -1, -1).contiguous(memory_format=torch.channels_last)
            x = self.conv1(x, ws[:, 0], noise=self.noise(noise_mode, 1, b, x))
        else:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = self.conv0(x, ws[:, 0], noise=self.noise(noise_mode, 0, b, x))
            x = self.conv1(x, ws[:, 1], noise=self.noise(noise_mode, 1, b, x))
        y = self.torgb(x, ws[:, self.num_conv])
        if rgb is not None:
            y = y + F.interpolate(rgb, scale_factor=2.0, mode="bilinear", align_corners=False)
        return x, y


class SynthesisNetwork(nn.Module):
    """ws [B, num_ws, w_dim] -> image [B, 3, R, R] in [0, 1] units."""

    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        resolutions = [2 ** k for k in range(2, round(math.log2(cfg.resolution)) + 1)]
        self.blocks = nn.ModuleList(
            SynthesisBlock(cfg.channels(max(r // 2, 4)), cfg.channels(r), r, cfg.w_dim) for r in resolutions)
        self.num_ws = cfg.num_ws

    def forward(self, ws: Tensor, noise_mode: str = "random") -> Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode={noise_mode!r}: allowed values are {', '.join(map(repr, NOISE_MODES))}")
        if ws.dim() != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"ws must be [B, num_ws={self.num_ws}, w_dim], got {tuple(ws.shape)}")
        x = rgb = None
        index = 0
        for block in self.blocks:
            x, rgb = block(x, rgb, ws[:, index:index + block.num_conv + 1], noise_mode)
            index += block.num_conv
        return 0.5 * (rgb + 1.0)


class Generator(nn.Module):
    """Mapping + synthesis. `mapping(z) -> w`, `synthesis(ws) -> image`, `forward(z) -> image` (truncation, W)."""

    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        self.cfg = cfg
        self.mapping_network = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        self.register_buffer("pl_mean", torch.zeros(()))

    @property
    def num_ws(self) -> int:
        return self.cfg.num_ws

    def mapping(self, z: Tensor, truncation_psi: float = 1.0, update_w_avg: bool = False) -> Tensor:
        """w = F(z) [B, w_dim] in fp32; `update_w_avg` moves the running mean (training samples only: w_avg <-
        w_avg + (1 - 0.995)(mean w - w_avg)); truncation pulls w toward w_avg: w_avg + psi (w - w_avg)."""
        with torch.autocast(z.device.type, enabled=False):
            w = self.mapping_network(z)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.lerp_(w.detach().mean(0), 1.0 - self.cfg.w_avg_beta)
        if truncation_psi != 1.0:
            w = self.w_avg.lerp(w, truncation_psi)
        return w

    def broadcast(self, w: Tensor) -> Tensor:
        """W -> W+: the same w [B, w_dim] for every synthesis layer, [B, num_ws, w_dim]."""
        return w[:, None].expand(-1, self.num_ws, -1)

    def forward(self, z: Tensor, truncation_psi: float = 1.0, noise_mode: str = "random") -> Tensor:
        return self.synthesis(self.broadcast(self.mapping(z, truncation_psi)), noise_mode)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: image [B, 3, R, R] in [0, 1] -> logit [B]."""

    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        self.cfg = cfg
        resolutions = [2 ** k for k in range(round(math.log2(cfg.resolution)), 2, -1)]  # R, R/2, ..., 8
        self.from_rgb = EqualConv2d(3, cfg.channels(cfg.resolution), 1)
        self.blocks = nn.Sequential(*[ResDownBlock(cfg.channels(r), cfg.channels(r // 2), pool_first=cfg.pool_first)
                                      for r in resolutions])
        c4 = cfg.channels(4)
        self.conv = EqualConv2d(c4 + 1, c4, 3)
        self.fc = EqualLinear(c4 * 16, c4)
        self.out = EqualLinear(c4, 1)

    def forward(self, image: Tensor) -> Tensor:
        h = self.blocks(from_rgb_lrelu(self.from_rgb, image.contiguous(memory_format=torch.channels_last)))
        h = lrelu(self.conv(minibatch_stddev(h, self.cfg.mbstd_group))).flatten(1)
        return self.out(lrelu(self.fc(h))).float().squeeze(1)


def build(cfg: StyleGANConfig) -> dict[str, nn.Module]:
    """The networks: 'G' (mapping + synthesis) and 'D'."""
    return {"G": Generator(cfg), "D": Discriminator(cfg)}


# ----------------------------------------------------------------------------------------------------------------
# Paper 004, Eq. 1


def decorrelation_loss(w: Tensor) -> Tensor:
    """Paper 004's Eq. 1 for mapping outputs w [N, d]:
    -sum_{i != j} log(1 - |rho_ij|) + sum_i (Var_i / mean_j Var_j - 1)^2.

    As printed, the second term is sum_i (Var[w_i] - sum_j Var[w_j])^2, which compares each variance with the SUM of
    all d variances and is minimised by driving every variance to 0 (a collapsed W). The paper's stated aim is "the
    variance of all dimensions the same value"; this reads the term as equalising each variance against their mean,
    measured relative to that mean so that, like the correlation term, it does not depend on the scale of w.
    |rho| is clamped below 1 - 1e-6. Estimate it on N >= 1024 samples (a minibatch of 32 cannot estimate a d x d
    correlation matrix: |rho| then has a noise floor of about 1 / sqrt(N)).
    """
    if w.dim() != 2 or w.shape[0] < 2:
        raise ValueError(f"w must be [N >= 2, d], got {tuple(w.shape)}")
    w = w.float()
    centred = w - w.mean(0)
    var = centred.square().mean(0)
    std = var.clamp_min(1e-20).sqrt()
    rho = (centred.t() @ centred / w.shape[0]) / (std[:, None] * std[None, :])
    off = ~torch.eye(w.shape[1], dtype=torch.bool, device=w.device)
    correlation = -torch.log1p(-rho[off].abs().clamp(max=1 - 1e-6)).sum()
    spread = (var / var.mean() - 1).square().sum()
    return correlation + spread


@torch.no_grad()
def decorrelation_statistics(w: Tensor) -> dict[str, float]:
    """What Eq. 1 targets, for mapping outputs w [N, d]: mean |rho_ij| over i != j, and the spread of the per-dimension
    variances (their standard deviation over their mean)."""
    w = w.double()
    rho = torch.corrcoef(w.t())
    off = ~torch.eye(w.shape[1], dtype=torch.bool, device=w.device)
    var = w.var(0)
    return {"mean_abs_correlation": float(rho[off].abs().mean()), "variance_spread": float(var.std() / var.mean())}


# ----------------------------------------------------------------------------------------------------------------
# Sampling and losses


@torch.no_grad()
def real_features(features: nn.Module, real_test: Tensor, real_train: Tensor,
                  device: torch.device | str) -> tuple[Tensor, float]:
    """Features of held-out real faces, and the real-vs-real floor of the feature-space Fréchet distance (against as
    many training faces): the reference of Table 1's analog."""
    f_real = in_chunks(features.features, real_test, device=device)
    f_train = in_chunks(features.features, real_train[:len(real_test)], device=device)
    return f_real, metrics.feature_frechet_distance(f_real, f_train)


@torch.no_grad()
def table1_measures(G: Generator, features: nn.Module, f_real: Tensor, floor: float, n_ppl: int,
                    device: torch.device | str) -> dict[str, float]:
    """Paper 004's Table 1 in the book's attribute-feature space (not FID, not VGG-PPL): the Fréchet distance of as
    many samples (const noise) as real features `f_real`, beside its floor; PPL (W, endpoints, eps 1e-4, 1-99 % trim)
    over `n_ppl` pairs; and what Eq. 1 targets, mean |rho| and the variance spread of 4096 w."""
    z = torch.randn(len(f_real), G.cfg.z_dim, generator=torch.Generator().manual_seed(123))
    fakes = in_chunks(lambda z: G(z, noise_mode="const"), z, device=device)
    fd = metrics.feature_frechet_distance(f_real, in_chunks(features.features, fakes, device=device))
    ppl = metrics.path_length_w_end(G.mapping, lambda w: G.synthesis(G.broadcast(w), noise_mode="const"),
                                    features.features, G.cfg.z_dim, n_ppl,
                                    generator=torch.Generator().manual_seed(321), device=device)
    w = G.mapping(torch.randn(4096, G.cfg.z_dim, generator=torch.Generator().manual_seed(7)).to(device))
    return {"fd_features": fd, "fd_features_floor": floor, "ppl_w_end_features": ppl,
            **decorrelation_statistics(w.cpu())}


@torch.no_grad()
def generate(G: Generator, n: int, seed: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """n generations from z drawn with `seed`: (w [n, w_dim], images [n, 3, R, R] in [0, 1]), both on the CPU; constant
    noise, no truncation. Also seeds the global RNG with `seed`, so what follows does not depend on what ran before."""
    z = torch.randn(n, G.cfg.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    w = G.mapping(z)
    torch.manual_seed(seed)
    images = in_chunks(lambda w_: G.synthesis(G.broadcast(w_), noise_mode="const").clamp(0, 1), w, device=device)
    return w.cpu(), images


def sample_ws(G: Generator, batch: int, mixing: float, device: torch.device, update_w_avg: bool = False) -> Tensor:
    """W+ codes of a training batch: w = F(z) broadcast to every layer and, with probability `mixing`, the layers from
    a random cutoff in [1, num_ws) on taken from a second w (style mixing; one cutoff per batch, as stylegan2-ada)."""
    z = torch.randn(batch, G.cfg.z_dim, device=device)
    ws = G.broadcast(G.mapping(z, update_w_avg=update_w_avg))
    if mixing > 0:
        cutoff = int(torch.randint(1, G.num_ws, ()))
        if float(torch.rand(())) < mixing:
            w2 = G.mapping(torch.randn_like(z))
            ws = torch.cat([ws[:, :cutoff], G.broadcast(w2)[:, cutoff:]], dim=1)
    return ws


def losses(cfg: StyleGANConfig):
    """The phase losses (d, r1, g, pl) as functions (nets, batch, step) -> (loss, logs)."""

    def d_loss(nets, batch, step):
        real = batch["image"]
        with torch.no_grad():
            fake = nets["G"].synthesis(sample_ws(nets["G"], real.shape[0], cfg.style_mixing, real.device))
        logits_real, logits_fake = nets["D"](torch.cat([real.float(), fake.float()])).chunk(2)  # one D call
        loss = non_saturating(logits_real, real=True) + non_saturating(logits_fake, real=False)
        return loss, {"d": loss.detach(), "d_real": logits_real.mean().detach(), "d_fake": logits_fake.mean().detach()}

    def r1_loss(nets, batch, step):
        real = batch["image"].detach().float().requires_grad_(True)
        r1 = r1_penalty(nets["D"](real), real)
        return cfg.r1_gamma / 2 * r1 * cfg.r1_every, {"r1": r1.detach()}

    def g_loss(nets, batch, step):
        G = nets["G"]
        b = batch["image"].shape[0]
        ws = sample_ws(G, b, cfg.style_mixing, batch["image"].device, update_w_avg=True)
        gan = non_saturating(nets["D"](G.synthesis(ws)), real=True)
        logs = {"g": gan.detach()}
        loss = gan
        if cfg.decorrelation > 0:
            w = G.mapping(torch.randn(cfg.decorrelation_samples, cfg.z_dim, device=ws.device))
            decorrelation = decorrelation_loss(w)
            loss = loss + cfg.decorrelation * decorrelation
            logs["decorr"] = decorrelation.detach()
        return loss, logs

    def pl_loss(nets, batch, step):
        G = nets["G"]
        b = max(1, batch["image"].shape[0] // cfg.pl_batch_shrink)
        ws = sample_ws(G, b, cfg.style_mixing, batch["image"].device).detach().requires_grad_(True)
        lengths = path_lengths(G.synthesis(ws), ws)
        penalty = path_length_penalty(lengths, G.pl_mean, cfg.pl_decay)
        return penalty * cfg.pl_weight * cfg.pl_every, {"pl": penalty.detach(), "pl_mean": G.pl_mean.detach()}

    return d_loss, r1_loss, g_loss, pl_loss


def optimizers(nets: Mapping[str, nn.Module], cfg: StyleGANConfig) -> dict[str, torch.optim.Optimizer]:
    """'G' and 'D': Adam lr 0.0025, betas (0, 0.99), each corrected for its lazy regulariser (D: R1 every 16; G:
    path length every 4, when it is on)."""
    betas = (cfg.beta1, cfg.beta2)
    return {"G": lazy_adam(nets["G"].parameters(), cfg.lr, betas, cfg.pl_every if cfg.pl_weight > 0 else None),
            "D": lazy_adam(nets["D"].parameters(), cfg.lr, betas, cfg.r1_every)}


def training_spec(cfg: StyleGANConfig, data, steps: int, batch_size: int, seed: int, **loop: Any) -> TrainSpec:
    """The TrainSpec "stylegan": per step a D phase, lazy R1, a G phase and (pl_weight > 0) lazy path length.

    `data` yields dicts with "image" [3, R, R] in [0, 1]. Extra keyword arguments go to TrainSpec.
    """
    if batch_size % min(cfg.mbstd_group, batch_size):
        raise ValueError(f"batch_size={batch_size}: must be divisible by the minibatch-std group {cfg.mbstd_group}")
    d_loss, r1_loss, g_loss, pl_loss = losses(cfg)
    phases = [Phase("d", d_loss, "D"), Phase("r1", r1_loss, "D", every=cfg.r1_every), Phase("g", g_loss, "G")]
    if cfg.pl_weight > 0:
        phases.append(Phase("pl", pl_loss, "G", every=cfg.pl_every))
    return TrainSpec(name="stylegan", config={"model": dataclasses.asdict(cfg)}, build=lambda: build(cfg),
                     optimizers=lambda n: optimizers(n, cfg), phases=phases, steps=steps, batch_size=batch_size,
                     seed=seed, data=data, **loop)


EVALUATED_NETS = ("G",)  # the EMA generator is the one a run returns


def book_config(row: Any) -> StyleGANConfig:
    """The StyleGAN2 of a profile's row (helpers.config.Family), with the row's deviations (`row.model`); the paper
    profile's row (256 px, width 512) is `paper_config()`."""
    if row.resolution == 256 and row.width == 512:
        return dataclasses.replace(paper_config(), **row.model)
    return scaled_config(row.resolution, row.width, row.batch_size, **row.model)


def book_spec(row: Any, split: Mapping[str, Tensor], seed: int, config: StyleGANConfig | None = None) -> TrainSpec:
    """The book's StyleGAN2: `config` or the row's (`book_config`), the row's lr, on the split's "image"."""
    cfg = config or book_config(row)
    if row.lr is not None:
        cfg = dataclasses.replace(cfg, lr=row.lr)
    if split["image"].shape[-1] != cfg.resolution:
        raise ValueError(f"split images are {split['image'].shape[-1]} px; the StyleGAN2 is {cfg.resolution} px")
    return training_spec(cfg, InMemory({"image": split["image"]}), steps=row.steps, batch_size=row.batch_size,
                         seed=seed)


__all__ = [
    "NOISE_MODES", "StyleGANConfig", "paper_config", "scaled_config", "normalize_2nd_moment", "MappingNetwork", "ToRGB",
    "SynthesisBlock", "SynthesisNetwork", "Generator", "Discriminator", "build", "decorrelation_loss",
    "decorrelation_statistics", "real_features", "table1_measures", "sample_ws", "losses", "optimizers",
    "training_spec", "EVALUATED_NETS", "book_config", "book_spec",
]
