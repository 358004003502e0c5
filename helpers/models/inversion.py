"""W+ inversion of the book's StyleGAN2: an encoder E(image) -> ws and the optimisation projector of stylegan2-ada.

Paper 003 encodes CelebA-HQ into W+ with a pretrained pSp encoder (Richardson et al., CVPR 2021) and chapter 05 does
the same with SynthFaces images and their true attributes. No pretrained network exists offline, so:

- `Encoder` is a pSp-style encoder trained from scratch: a residual trunk (the StyleGAN2 discriminator's blocks) down
  to 4 x 4, a feature pyramid (each level plus the upsampled coarser one, through 1x1 lateral convs), and pSp's
  "map2style" heads: the coarse ws (the 4 x 4 and 8 x 8 layers) from the 4 x 4 level, the middle ws (16 and 32 px)
  from the 8 x 8 level, the fine ws from the 16 x 16 level; each head is stride-2 3x3 convs down to 4 x 4 and an
  equalised linear map to its ws. It predicts offsets from the generator's w_avg (pSp's --start_from_latent_avg).
- Training (`training_spec`), per step: a batch of W+ codes sampled from the frozen generator (style mixing as in its
  training, so that codes differ per layer), their images, and a batch of real faces. Losses: latent regression
  ||E(G(ws)) - ws||^2 on the generated pairs (exact targets: the "latent regression" encoders trained on synthetic
  pairs), and on both generated and real images the pixel L2 ||G(E(x)) - x||^2 (weighted 4, which is pSp's weight 1
  on its [-1, 1] images) and a feature loss: the squared distance of unit-normalised features of the book's attribute
  network (`helpers.models.features`, `feature_distance`), which stands in for pSp's LPIPS (VGG/AlexNet weights are
  not available offline); pSp's identity loss (an ArcFace network) has no offline counterpart and is dropped; pSp's
  w_norm regulariser ||E(x) - w_avg|| keeps codes near W.
- `project` is stylegan2-ada's projector (`projector.py`): w starts at w_avg (or at an encoder's ws: refinement),
  Adam (0.9, 0.999) on w and on per-image noise images with lr 0.1 ramped up over the first 5 % and down (cosine)
  over the last 25 % of the steps, Gaussian noise of w_std * 0.05 * max(0, 1 - t / 0.75)^2 added to w, the noise
  regulariser 1e5 * sum over scales of squared autocorrelations at shift 1 (noise images average-pooled down to
  8 x 8), and the noise images renormalised after each step. Its distance is the feature loss above plus the pixel
  MSE (rosinality's --mse) in place of VGG16-LPIPS. It optimises one w per image (W, as stylegan2-ada) or one per
  layer (W+, `space="w+"`).
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

from ..data.memory import InMemory, render_split
from ..data.synthfaces import SynthFaces
from ..inference import in_chunks
from ..train import Phase, TrainSpec
from .layers import EqualConv2d, EqualLinear, ResDownBlock, from_rgb_lrelu, lrelu
from .stylegan import Generator, sample_ws

Features = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class EncoderConfig:
    """Every setting of the W+ encoder and its training (JSON-able through dataclasses.asdict)."""

    resolution: int = 256
    num_ws: int = 14
    w_dim: int = 512
    width: int = 64  # trunk channels at full resolution, doubling per halving, at most 8 * width
    lambda_latent: float = 1.0
    lambda_pixel: float = 4.0  # pSp's l2_lambda 1 on images in [-1, 1]: 4 x the MSE of these [0, 1] images
    lambda_features: float = 0.8  # pSp's LPIPS weight, given to the feature loss that replaces it
    lambda_w_norm: float = 0.005  # pSp's w_norm_lambda
    real_share: float = 0.5  # share of each batch that is real faces (the rest: generated pairs)
    lr: float = 1e-4  # pSp's
    mixing: float = 0.9

    def __post_init__(self) -> None:
        errors = []
        k = math.log2(self.resolution) if self.resolution > 0 else 0
        if k != int(k) or not 4 <= k <= 10:
            errors.append(f"resolution={self.resolution}: must be a power of 2 from 16 to 1024")
        elif self.num_ws != 2 * int(k) - 2:
            errors.append(f"num_ws={self.num_ws}: a {self.resolution}-px StyleGAN2 has {2 * int(k) - 2}")
        if min(self.w_dim, self.width) < 1:
            errors.append(f"w_dim={self.w_dim}, width={self.width}: must be >= 1")
        if not 0 <= self.real_share <= 1:
            errors.append(f"real_share={self.real_share}: must be in [0, 1]")
        for name in ("lambda_latent", "lambda_pixel", "lambda_features", "lambda_w_norm"):
            if getattr(self, name) < 0:
                errors.append(f"{name}={getattr(self, name)}: must be >= 0")
        if errors:
            raise ValueError("; ".join(errors))

    def groups(self) -> list[tuple[int, int, int]]:
        """(pyramid side, first w, last w + 1) of the coarse, middle and fine heads: coarse = the 4 and 8 px layers,
        middle = 16 and 32 px, fine = the rest (pSp's 3 / 4 / 11 split of 18 ws, by resolution); empty groups are
        dropped."""
        coarse, middle = min(3, self.num_ws), min(7, self.num_ws)
        groups = [(4, 0, coarse), (8, coarse, middle), (16, middle, self.num_ws)]
        return [(side, start, end) for side, start, end in groups if end > start]


def config_for(G: Generator, width: int, **changes: Any) -> EncoderConfig:
    """The encoder of a generator: its resolution, num_ws and w_dim."""
    return EncoderConfig(resolution=G.cfg.resolution, num_ws=G.num_ws, w_dim=G.cfg.w_dim, width=width, **changes)


class MapToStyle(nn.Module):
    """pSp's map2style: stride-2 3x3 convs (lrelu) from a side x side map down to 4 x 4, then a linear map to n ws."""

    def __init__(self, channels: int, side: int, n_ws: int, w_dim: int):
        super().__init__()
        downs = round(math.log2(side // 4))
        self.convs = nn.ModuleList(EqualConv2d(channels, channels, 3, stride=2) for _ in range(downs))
        self.linear = EqualLinear(channels * 16, n_ws * w_dim)
        self.n_ws, self.w_dim = n_ws, w_dim

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = lrelu(conv(x))
        return self.linear(x.flatten(1)).view(-1, self.n_ws, self.w_dim)


class Encoder(nn.Module):
    """Image [B, 3, R, R] in [0, 1] -> ws [B, num_ws, w_dim] (offsets from `w_avg`, added here)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        sides = [2 ** k for k in range(round(math.log2(cfg.resolution)), 2, -1)]  # R, ..., 8: one block each
        chans = {s: min(cfg.width * cfg.resolution // s, 8 * cfg.width) for s in [*sides, 4]}
        self.from_rgb = EqualConv2d(3, chans[cfg.resolution], 1)
        self.blocks = nn.ModuleList(ResDownBlock(chans[s], chans[s // 2]) for s in sides)
        top = chans[4]
        self.lateral = nn.ModuleDict({str(s): EqualConv2d(chans[s], top, 1) for s in (4, 8, 16)})
        self.heads = nn.ModuleList(MapToStyle(top, side, end - start, cfg.w_dim) for side, start, end in cfg.groups())
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(self, image: Tensor) -> Tensor:
        x = from_rgb_lrelu(self.from_rgb, image.contiguous(memory_format=torch.channels_last))
        levels = {x.shape[-1]: x}
        for block in self.blocks:
            x = block(x)
            levels[x.shape[-1]] = x
        pyramid = {4: self.lateral["4"](levels[4])}
        for side in (8, 16):  # feature pyramid: the finer level plus the upsampled coarser one
            up = F.interpolate(pyramid[side // 2], scale_factor=2.0, mode="bilinear", align_corners=False)
            pyramid[side] = self.lateral[str(side)](levels[side]) + up
        ws = torch.cat([head(pyramid[side]) for head, (side, _, _) in zip(self.heads, self.cfg.groups())], dim=1)
        return ws.float() + self.w_avg


# ----------------------------------------------------------------------------------------------------------------
# Training


def unit_features(features: Features, x: Tensor) -> Tensor:
    """f(x) / ||f(x)|| per item [B, D] (float32)."""
    f = features(x).float()
    return f / f.norm(dim=1, keepdim=True).clamp_min(1e-8)


def feature_distance(features: Features, x: Tensor, y: Tensor) -> Tensor:
    """||f(x) / ||f(x)|| - f(y) / ||f(y)|| ||^2 per item [B]: the squared distance of unit-normalised features, in
    [0, 4], as LPIPS compares unit-normalised VGG features (its role here; the book's features are not LPIPS)."""
    return (unit_features(features, x) - unit_features(features, y)).square().sum(1)


def reconstruction_terms(G: Generator, features: Features, ws: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
    """(pixel L2, feature distance) between G(ws) (const noise) and `image`, means over items."""
    out = G.synthesis(ws, noise_mode="const")
    pixel = (out.float() - image.float()).square().flatten(1).mean(1).mean()
    return pixel, feature_distance(features, out, image).mean()


def losses(cfg: EncoderConfig, G: Generator, feature_module: nn.Module):
    """The encoder's loss (nets, batch, step) -> (loss, logs): latent regression on generated pairs, pixel and
    feature reconstruction on generated and real faces, w_norm. `feature_module.features` is the feature map."""
    features = feature_module.features

    def loss(nets, batch, step):
        E = nets["encoder"]
        real = batch["image"]
        if G.w_avg.device != real.device:  # the frozen networks follow the data's device
            G.to(real.device)
            feature_module.to(real.device)
        n_fake = real.shape[0] - round(cfg.real_share * real.shape[0])
        with torch.no_grad():
            target_ws = sample_ws(G, n_fake, cfg.mixing, real.device)
            fake = G.synthesis(target_ws, noise_mode="const")
        images = torch.cat([fake.float(), real[n_fake:].float()])
        ws = E(images)
        latent = (ws[:n_fake] - target_ws).square().mean() if n_fake else ws.new_zeros(())
        pixel, feature = reconstruction_terms(G, features, ws, images)
        w_norm = (ws - G.w_avg).norm(dim=2).mean()
        total = (cfg.lambda_latent * latent + cfg.lambda_pixel * pixel + cfg.lambda_features * feature
                 + cfg.lambda_w_norm * w_norm)
        return total, {"latent": latent.detach(), "pixel": pixel.detach(), "feature": feature.detach()}

    return loss


def training_spec(cfg: EncoderConfig, G: Generator, features: nn.Module, data, steps: int, batch_size: int,
                  seed: int, **loop: Any) -> TrainSpec:
    """The TrainSpec "w_encoder": the encoder trained against a frozen generator and feature network.

    `data` yields dicts with "image" [3, R, R] in [0, 1] (real faces). The generator and the feature network are
    fixed inputs (their identity belongs in `data_id` / the config's `generator` entry, set by `book_spec`).
    """
    G = copy.deepcopy(G).eval().requires_grad_(False)
    features = copy.deepcopy(features).eval().requires_grad_(False)

    def build():
        encoder = Encoder(cfg)
        encoder.w_avg.copy_(G.w_avg.cpu())
        return {"encoder": encoder}

    def optimizers(nets):
        return {"encoder": torch.optim.Adam(nets["encoder"].parameters(), lr=cfg.lr)}

    return TrainSpec(name="w_encoder", config={"model": dataclasses.asdict(cfg)}, build=build,
                     optimizers=optimizers, phases=[Phase("encoder", losses(cfg, G, features), "encoder")],
                     steps=steps, batch_size=batch_size, seed=seed, data=data, **loop)


EVALUATED_NETS = ("encoder",)


def book_spec(row: Any, split: Mapping[str, Tensor], seed: int, generator: Any, features: Any,
              config: EncoderConfig | None = None) -> TrainSpec:
    """The book's W+ encoder of a trained generator and feature network (`helpers.train.Trained`), on the split's real
    "image"; both models' checkpoints name it in the cache key."""
    G, feature_net = generator.nets["G"], features.nets["features"]
    cfg = config or config_for(G, row.width, **row.model)
    if row.lr is not None:
        cfg = dataclasses.replace(cfg, lr=row.lr)
    if split["image"].shape[-1] != cfg.resolution:
        raise ValueError(f"split images are {split['image'].shape[-1]} px; the generator is {cfg.resolution} px")
    spec = training_spec(cfg, G, feature_net, InMemory({"image": split["image"]}),
                         steps=row.steps, batch_size=row.batch_size, seed=seed)
    spec.config = {**spec.config, "generator": generator.path.name, "features": features.path.name}
    return spec


# ----------------------------------------------------------------------------------------------------------------
# The optimisation projector (stylegan2-ada projector.py)


@dataclass(frozen=True)
class ProjectorConfig:
    """stylegan2-ada's projector settings (its defaults, steps chosen per profile)."""

    steps: int = 1000
    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    noise_start: float = 0.05  # initial w noise, in units of w_std
    noise_ramp: float = 0.75
    noise_regularize: float = 1e5
    pixel_weight: float = 1.0  # weight of the pixel MSE beside the feature distance
    w_avg_samples: int = 10_000


def learning_rate(cfg: ProjectorConfig, t: float) -> float:
    """stylegan2-ada's projector schedule at progress t in [0, 1]: ramp up, hold, cosine ramp down."""
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return cfg.lr * ramp * min(1.0, t / cfg.lr_rampup)


def noise_regularization(noises: list[Tensor]) -> Tensor:
    """sum over noise images and scales of mean(n * roll(n, 1, x))^2 + mean(n * roll(n, 1, y))^2 (average-pooled 2x2
    down to 8 x 8), per image (noises [B, r, r]), summed over images."""
    total = 0.0
    for noise in noises:
        n = noise[:, None]
        while True:
            total = total + ((n * n.roll(1, 3)).mean(dim=(1, 2, 3)).square()
                             + (n * n.roll(1, 2)).mean(dim=(1, 2, 3)).square()).sum()
            if n.shape[-1] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return total


@torch.no_grad()
def w_spread(G: Generator, samples: int, seed: int = 123) -> tuple[Tensor, float]:
    """(mean w, w_std = sqrt(E ||w - mean||^2)) over `samples` mapped z (stylegan2-ada: 10,000, seed 123)."""
    z = torch.randn(samples, G.cfg.z_dim, generator=torch.Generator().manual_seed(seed))
    w = G.mapping(z.to(G.w_avg.device))
    mean = w.mean(0)
    return mean, float((w - mean).square().sum(1).mean().sqrt())


def project(G: Generator, target: Tensor, features: Features, cfg: ProjectorConfig = ProjectorConfig(),
            space: str = "w", start: Tensor | None = None, seed: int = 0) -> tuple[Tensor, dict[str, float]]:
    """Optimise codes so that G(codes) matches `target` [B, 3, R, R] in [0, 1]: returns (ws [B, num_ws, w_dim], logs).

    space "w": one w per image (stylegan2-ada), returned broadcast to every layer; "w+": one w per layer. `start`
    (ws [B, num_ws, w_dim], e.g. an encoder's output) replaces the w_avg start (refinement; its layer mean in W).
    Per-image noise images are optimised with the codes and regularised (`noise_regularization`).
    """
    if space not in ("w", "w+"):
        raise ValueError(f"space={space!r}: allowed values are 'w', 'w+'")
    G = copy.deepcopy(G).eval().requires_grad_(False)
    device = G.w_avg.device
    target = target.to(device).float()
    b = target.shape[0]
    w_mean, w_std = w_spread(G, cfg.w_avg_samples)
    if start is None:
        codes = w_mean.expand(b, -1).clone() if space == "w" else G.broadcast(w_mean.expand(b, -1)).clone()
    else:
        codes = start.to(device).float().mean(1) if space == "w" else start.to(device).float().clone()
    codes.requires_grad_(True)
    generator = torch.Generator().manual_seed(seed)
    noises = []
    for block in G.synthesis.blocks:  # one noise image per image and conv, optimised
        block.noise_const = torch.randn(2, b, block.resolution, block.resolution, generator=generator).to(device)
        block.noise_const.requires_grad_(True)
        noises += [block.noise_const[i] for i in range(2)]
    buffers = [block.noise_const for block in G.synthesis.blocks]
    optimizer = torch.optim.Adam([codes, *buffers], lr=cfg.lr, betas=(0.9, 0.999))
    target_features = unit_features(features, target).detach()
    logs: dict[str, float] = {}
    for step in range(cfg.steps):
        t = step / cfg.steps
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, t)
        w_noise_scale = w_std * cfg.noise_start * max(0.0, 1.0 - t / cfg.noise_ramp) ** 2
        noisy = codes + torch.randn(codes.shape, generator=generator).to(device) * w_noise_scale
        ws = G.broadcast(noisy) if space == "w" else noisy
        out = G.synthesis(ws, noise_mode="const")
        distance = (unit_features(features, out) - target_features).square().sum(1).sum()
        pixel = (out.float() - target).square().flatten(1).mean(1).sum()
        reg = noise_regularization([n for buf in buffers for n in buf])
        loss = distance + cfg.pixel_weight * pixel + cfg.noise_regularize * reg
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # renormalise the noise images
            for buf in buffers:
                buf -= buf.mean(dim=(2, 3), keepdim=True)
                buf *= buf.square().mean(dim=(2, 3), keepdim=True).rsqrt()
        logs = {"distance": distance.item() / b, "pixel": pixel.item() / b, "noise_reg": float(reg.detach())}
    codes = codes.detach()
    return (G.broadcast(codes).clone() if space == "w" else codes), logs



# ----------------------------------------------------------------------------------------------------------------
# Labelled W+ codes (paper 003's data: real faces encoded into W+, with their attributes)


@torch.no_grad()
def labelled_codes(encoder: nn.Module, resolution: int, counts: Mapping[str, int], first: int, seed: int,
                   device: torch.device | str = "cpu") -> dict[str, dict[str, Tensor]]:
    """SynthFaces faces first, first + 1, ... (of `seed`) encoded into W+, split in order by `counts`.

    Each split holds "code" [n, num_ws * w_dim] (flattened W+) and "attributes" [n, K] (the faces' true 0/1
    attributes). Pass `first` beyond the faces the generator and the encoder trained on, so that every code is of an
    unseen face.
    """
    if first < 0 or any(n < 1 for n in counts.values()):
        raise ValueError(f"first={first}, counts={dict(counts)}: need first >= 0 and every count >= 1")
    faces = SynthFaces(resolution=resolution, length=first + sum(counts.values()), seed=seed)
    encoder = encoder.to(device).eval()
    out = {}
    for name, n in counts.items():
        part = render_split(faces, range(first, first + n), ("image", "attributes"), desc=f"render {name}")
        out[name] = {"code": in_chunks(encoder, part["image"], size=256, device=device).flatten(1),
                     "attributes": part["attributes"]}
        first += n
    return out


__all__ = ["EncoderConfig", "config_for", "MapToStyle", "Encoder", "unit_features", "feature_distance", "reconstruction_terms", "losses",
           "training_spec", "EVALUATED_NETS", "book_spec", "ProjectorConfig", "learning_rate",
           "noise_regularization", "w_spread", "labelled_codes", "project"]
