"""A small semantic image synthesis (mask -> image) generator with per-class styles (paper 001, Sec. 4.3 / Fig. 6).

Paper 001 feeds masks edited by its mask VAE to SEAN, a SIS generator whose normalisation layers are modulated by
the mask (SPADE) and by one style vector per semantic region (SEAN). This module is a small model of the same family,
sized to train on a CPU:

- `StyleEncoder`: image + one-hot mask -> per-class styles [B, C, style_dim]. Each pixel gets a feature from its
  3x3 neighbourhood *restricted to pixels of its own class* (class-gated patches, then a pointwise MLP), and the
  features are averaged inside each class mask (region-wise average pooling, as in SEAN). Style k therefore depends
  only on the pixels of class k: editing the image inside region k changes style k and no other.
- `Generator`: starts from the one-hot mask area-downsampled to resolution / 2**(n_blocks-1), then `n_blocks`
  residual blocks with nearest x2 upsampling in between. Every block normalises its activations and modulates them
  with gamma/beta computed from the mask (SPADE branch: a 3x3 conv of the one-hot mask shared by the stage, then a
  1x1 conv per layer) plus the broadcast per-class styles (SEAN branch: every pixel receives a linear map of the
  style of its class). Output: sigmoid, in [0, 1].

Locality. The generator contains no global operation: the normalisation is a per-pixel normalisation over channels
(pixel norm) instead of SPADE/SEAN's batch or instance normalisation (whose spatial statistics would let a mask edit
in one region change every pixel), there is no global pooling, attention or fully connected layer, and the styles
are fixed vectors (taken from the original image). An output pixel thus depends on the mask only through a bounded
window, `receptive_radius(cfg)` pixels in each direction; a mask edit changes the output only within that distance
of the edited pixels. The chapter relies on this to attribute image changes to mask edits.

Differences from SEAN/SPADE (documented for the chapter): far fewer and narrower layers; pixel norm instead of
batch/instance norm (locality); the style encoder is a class-gated 3x3 patch MLP instead of a conv encoder-decoder
(strictly per-region styles; only local texture statistics); no VGG perceptual or feature-matching losses; the
default training is L1 reconstruction only (see `SISConfig.use_gan`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.memory import InMemory
from ..data.transforms import one_hot
from ..train import Phase, TrainSpec
from .gan import lazy_adam, non_saturating, r1_penalty


@dataclass(frozen=True)
class SISConfig:
    """Every setting of the SIS model and its training (JSON-able: `asdict`).

    use_gan: add a conditional patch discriminator (non-saturating loss, lazy R1 every r1_every steps) to the L1
    reconstruction loss. The default is False: in the cpu budget the adversarial term adds a discriminator forward
    and backward per step (plus R1) on an already slow shared CPU, and a few hundred GAN steps do not sharpen
    textures reliably; L1 alone gives stable, correctly coloured but blurry reconstructions (300 steps at 64 px:
    L1 0.063 on held-out faces). Set it for longer (GPU) runs.
    """

    num_classes: int = 11
    resolution: int = 64
    width: int = 32
    style_dim: int = 64
    n_blocks: int = 2
    use_gan: bool = False
    lambda_l1: float = 1.0
    lambda_gan: float = 0.05
    r1_gamma: float = 1.0
    r1_every: int = 16
    lr: float = 2e-3

    def __post_init__(self):
        if self.n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {self.n_blocks}")
        if self.r1_every < 1:
            raise ValueError(f"r1_every must be >= 1, got {self.r1_every}")
        if self.resolution % 2 ** (self.n_blocks - 1):
            raise ValueError(f"resolution {self.resolution} must be divisible by 2**(n_blocks-1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def region_average(features: Tensor, masks: Tensor, eps: float = 1e-6) -> Tensor:
    """Average of features [B,D,H,W] inside each mask [B,C,H,W] -> [B,C,D] (0 for classes absent from the mask)."""
    total = torch.einsum("bdhw,bchw->bcd", features.float(), masks.float())
    area = masks.float().sum(dim=(2, 3))[..., None]
    return total / (area + eps)


def broadcast_styles(styles: Tensor, masks: Tensor) -> Tensor:
    """Style map [B,D,H,W]: every pixel gets the style [B,C,D] of its class (masks may be soft: a weighted mean)."""
    return torch.einsum("bcd,bchw->bdhw", styles.to(masks.dtype), masks)


class StyleEncoder(nn.Module):
    """Image [B,3,H,W] in [0,1] and one-hot mask [B,C,H,W] -> per-class styles [B,C,style_dim].

    A pixel's feature comes from its 3x3 neighbourhood with the neighbours of other classes zeroed (plus the 3x3
    'same class' pattern, so the net knows which neighbours are valid), passed through a pointwise MLP; features are
    averaged inside each class. Style k depends only on the image inside class k.
    """

    def __init__(self, num_classes: int, width: int, style_dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.mlp = nn.Sequential(
            nn.Conv2d(3 * 9 + 9, width, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, style_dim, 1),
        )

    def forward(self, image: Tensor, masks: Tensor) -> Tensor:
        b, _, h, w = image.shape
        patches = F.unfold(image.float() * 2 - 1, 3, padding=1).view(b, 3, 9, h * w)
        labels = F.pad(masks.argmax(1, keepdim=True).float(), (1, 1, 1, 1), value=-1.0)  # -1: outside the image
        neighbours = F.unfold(labels, 3).view(b, 9, h * w)
        same = (neighbours == neighbours[:, 4:5]).float()  # [B,9,HW]: neighbour has the centre pixel's class
        gated = (patches * same[:, None]).reshape(b, 27, h, w)
        feats = self.mlp(torch.cat([gated, same.view(b, 9, h, w)], 1).to(image.dtype))
        return region_average(feats, masks)


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector over channels (no spatial statistics: keeps the generator local)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.float().pow(2).mean(1, keepdim=True) + 1e-6).to(x.dtype)


class SpatialModulation(nn.Module):
    """Pixel norm, then x * (1 + gamma) + beta with gamma/beta from the mask (SPADE) and the class styles (SEAN).

    SPADE branch: 1x1 conv of the stage's shared mask features (`MaskFeatures`, one 3x3 conv of the one-hot mask).
    SEAN branch: a linear map of each class style to (gamma, beta), broadcast to the pixels of that class (the same
    as a 1x1 conv of the broadcast style map, computed per class: C vectors instead of H*W pixels).
    """

    def __init__(self, channels: int, style_dim: int, hidden: int):
        super().__init__()
        self.norm = PixelNorm()
        self.spade_gamma_beta = nn.Conv2d(hidden, 2 * channels, 1)
        self.style_gamma_beta = nn.Linear(style_dim, 2 * channels)

    def forward(self, x: Tensor, masks: Tensor, mask_features: Tensor, styles: Tensor) -> Tensor:
        spade = self.spade_gamma_beta(mask_features)
        style = broadcast_styles(self.style_gamma_beta(styles), masks.to(spade.dtype))
        gamma, beta = (spade + style).chunk(2, 1)  # SEAN blends the two with a learned alpha; a sum is cheaper
        return torch.addcmul(beta, self.norm(x), 1 + gamma)


class MaskFeatures(nn.Module):
    """SPADE's shared mask embedding (3x3 conv + ReLU), computed once per stage and used by all its modulations."""

    def __init__(self, num_classes: int, hidden: int):
        super().__init__()
        self.conv = nn.Conv2d(num_classes, hidden, 3, padding=1)

    def forward(self, masks: Tensor) -> Tensor:
        return F.relu(self.conv(masks))


class SISBlock(nn.Module):
    """Residual block: [modulate, lrelu, conv3x3] x 2, with a modulated 1x1 shortcut when the width changes."""

    def __init__(self, cin: int, cout: int, style_dim: int, hidden: int):
        super().__init__()
        mid = min(cin, cout)
        self.mod1 = SpatialModulation(cin, style_dim, hidden)
        self.conv1 = nn.Conv2d(cin, mid, 3, padding=1)
        self.mod2 = SpatialModulation(mid, style_dim, hidden)
        self.conv2 = nn.Conv2d(mid, cout, 3, padding=1)
        self.shortcut = None
        if cin != cout:
            self.mod_s = SpatialModulation(cin, style_dim, hidden)
            self.shortcut = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: Tensor, masks: Tensor, feats: Tensor, styles: Tensor) -> Tensor:
        skip = x if self.shortcut is None else self.shortcut(self.mod_s(x, masks, feats, styles))
        h = self.conv1(F.leaky_relu(self.mod1(x, masks, feats, styles), 0.2))
        h = self.conv2(F.leaky_relu(self.mod2(h, masks, feats, styles), 0.2))
        return skip + h


def _down(masks: Tensor, size: int) -> Tensor:
    """Area-downsample (soft) one-hot masks to `size` (local: each cell averages its own pixels)."""
    return masks if masks.shape[-1] == size else F.adaptive_avg_pool2d(masks, size)


class Generator(nn.Module):
    """One-hot mask [B,C,H,W] + per-class styles [B,C,D] -> image [B,3,H,W] in [0,1]."""

    def __init__(self, cfg: SISConfig):
        super().__init__()
        self.cfg = cfg
        w, c, d = cfg.width, cfg.num_classes, cfg.style_dim
        self.start = cfg.resolution // 2 ** (cfg.n_blocks - 1)
        # channels halve per stage, w/2 at full resolution (where the convolutions cost the most)
        chans = [min(4 * w, max(8, (w // 2) * 2 ** (cfg.n_blocks - 1 - i))) for i in range(cfg.n_blocks)]
        hidden = max(16, w // 2)
        self.head = nn.Conv2d(c, chans[0], 3, padding=1)
        self.mask_features = nn.ModuleList(MaskFeatures(c, hidden) for _ in range(cfg.n_blocks))
        self.blocks = nn.ModuleList(
            SISBlock(chans[max(0, i - 1)], chans[i], d, hidden) for i in range(cfg.n_blocks))
        self.out_mod = SpatialModulation(chans[-1], d, hidden)
        self.out = nn.Conv2d(chans[-1], 3, 3, padding=1)

    def forward(self, masks: Tensor, styles: Tensor) -> Tensor:
        size = self.start
        m = _down(masks, size)
        x = self.head(m)
        for i, block in enumerate(self.blocks):
            if i > 0:
                size *= 2
                x = F.interpolate(x, scale_factor=2, mode="nearest")
                m = _down(masks, size)
            feats = self.mask_features[i](m)
            x = block(x, m, feats, styles)
        x = F.leaky_relu(self.out_mod(x, m, feats, styles), 0.2)
        return torch.sigmoid(self.out(x).float())


class SISModel(nn.Module):
    """Style encoder + generator. `forward(image, labels)` reconstructs `image` from its mask and its own styles."""

    def __init__(self, cfg: SISConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = StyleEncoder(cfg.num_classes, cfg.width, cfg.style_dim)
        self.generator = Generator(cfg)

    def masks(self, labels: Tensor) -> Tensor:
        return one_hot(labels, self.cfg.num_classes)

    def forward(self, image: Tensor, labels: Tensor) -> Tensor:
        masks = self.masks(labels).to(image.device)
        return self.generator(masks, self.encoder(image, masks))


class PatchDiscriminator(nn.Module):
    """Conditional patch discriminator on (image, one-hot mask): a logit per ~16x16 patch."""

    def __init__(self, cfg: SISConfig):
        super().__init__()
        w = cfg.width
        self.net = nn.Sequential(
            nn.Conv2d(3 + cfg.num_classes, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 2 * w, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 1, 3, 1, 1),
        )

    def forward(self, image: Tensor, masks: Tensor) -> Tensor:
        return self.net(torch.cat([image * 2 - 1, masks.to(image.dtype)], 1))


def build(cfg: SISConfig) -> dict[str, nn.Module]:
    """The networks: 'sis' (SISModel) and, with use_gan, 'disc'."""
    nets: dict[str, nn.Module] = {"sis": SISModel(cfg)}
    if cfg.use_gan:
        nets["disc"] = PatchDiscriminator(cfg)
    return nets


def receptive_radius(cfg: SISConfig) -> int:
    """A bound, in output pixels, on how far from the edited pixels a mask edit can change the output (styles fixed).

    Longest-path count of the generator's 3x3 convolutions, stage by stage, in feature cells: the area-downsampled
    mask reaches 1 cell beyond an edit, the SPADE branch (one 3x3 conv, then 1x1) 1 more, each 3x3 conv of the main
    path 1 more, and a nearest x2 upsampling turns a radius of R cells into 2R + 1 finer cells. With the defaults
    (n_blocks=2) this is 12 pixels at any resolution.
    """
    mask_r = 1 + 1  # mask cell + SPADE 3x3 conv: radius of gamma/beta
    r = 1 + 1  # head conv on the downsampled mask
    for i in range(cfg.n_blocks):
        if i > 0:
            r = 2 * r + 1
        r = max(r, mask_r) + 1  # modulate, conv1
        r = max(r, mask_r) + 1  # modulate, conv2 (the shortcut, max(r, mask_r), is shorter)
    r = max(r, mask_r) + 1  # out modulation, out conv
    return int(r)


# ---- the chapter's API -------------------------------------------------------------------------------------------


@torch.no_grad()
def extract_styles(model: SISModel, image: Tensor, labels: Tensor) -> Tensor:
    """Per-class styles [B,C,style_dim] of images [B,3,H,W] (or [3,H,W]) in [0,1] with their labels [B,H,W]."""
    single = image.dim() == 3
    if single:
        image, labels = image[None], labels[None]
    p = next(model.parameters())
    image = image.to(p.device, p.dtype)
    styles = model.encoder(image, model.masks(labels.to(p.device)))
    return styles[0] if single else styles


@torch.no_grad()
def synthesize(model: SISModel, masks_labels: Tensor, styles: Tensor) -> Tensor:
    """Images [B,3,H,W] in [0,1] from label maps [B,H,W] (or [H,W]) and per-class styles [B,C,D] (or [C,D]).

    Classes absent from the image the styles came from have zero style (the generator then relies on the mask
    branch alone for them).
    """
    single = masks_labels.dim() == 2
    if single:
        masks_labels = masks_labels[None]
    if styles.dim() == 2:
        styles = styles[None].expand(masks_labels.shape[0], -1, -1)
    p = next(model.parameters())
    out = model.generator(model.masks(masks_labels.to(p.device)), styles.to(p.device, p.dtype))
    return out[0] if single else out


# ---- training ----------------------------------------------------------------------------------------------------


def _losses(cfg: SISConfig):
    def g_loss(nets, batch, step):
        image, labels = batch["image"], batch["labels"]
        fake = nets["sis"](image, labels)
        l1 = (fake - image.float()).abs().mean()
        loss, logs = cfg.lambda_l1 * l1, {"l1": l1.detach()}
        if cfg.use_gan:
            adv = non_saturating(nets["disc"](fake, nets["sis"].masks(labels)), real=True)
            loss = loss + cfg.lambda_gan * adv
            logs["g_adv"] = adv.detach()
        return loss, logs

    def d_loss(nets, batch, step):
        image, labels = batch["image"], batch["labels"]
        masks = nets["sis"].masks(labels)
        with torch.no_grad():
            fake = nets["sis"](image, labels)
        real_logit = nets["disc"](image, masks).float()
        fake_logit = nets["disc"](fake, masks).float()
        loss = non_saturating(fake_logit, real=False) + non_saturating(real_logit, real=True)
        return loss, {"d": loss.detach(), "d_real": real_logit.mean().detach(), "d_fake": fake_logit.mean().detach()}

    def r1_loss(nets, batch, step):
        image = batch["image"].detach().float().requires_grad_(True)
        penalty = r1_penalty(nets["disc"](image, nets["sis"].masks(batch["labels"])), image)
        return cfg.r1_gamma / 2 * penalty * cfg.r1_every, {"r1": penalty.detach()}

    return g_loss, d_loss, r1_loss


def training_spec(cfg: SISConfig, data, steps: int, batch_size: int, seed: int, **loop: Any) -> TrainSpec:
    """The TrainSpec "sis": L1 reconstruction of each image from its mask and its own styles, plus (use_gan) a
    conditional patch discriminator with non-saturating loss and lazy R1 (every r1_every steps), D then G each step.

    `data` yields dicts with "image" [3,H,W] in [0,1] and "labels" [H,W] (SynthFaces or a real face dataset);
    Extra keyword arguments go to TrainSpec (data_id, precision, schedule, ema...).
    """
    g_loss, d_loss, r1_loss = _losses(cfg)
    betas = (0.5, 0.99) if cfg.use_gan else (0.9, 0.99)

    def optimizers(nets):
        opts = {"g": torch.optim.Adam(nets["sis"].parameters(), lr=cfg.lr, betas=betas)}
        if cfg.use_gan:  # lazy R1: Adam's lr and betas corrected as in StyleGAN2
            opts["d"] = lazy_adam(nets["disc"].parameters(), cfg.lr, betas, cfg.r1_every)
        return opts

    phases = [Phase("g", g_loss, "g")]
    if cfg.use_gan:
        phases = [Phase("d", d_loss, "d"), Phase("r1", r1_loss, "d", every=cfg.r1_every), Phase("g", g_loss, "g")]
    return TrainSpec(name="sis", config={"model": cfg.to_dict()}, build=lambda: build(cfg), optimizers=optimizers, phases=phases,
                     steps=steps, batch_size=batch_size, seed=seed, data=data, **loop)


EVALUATED_NETS = ("sis",)


def book_spec(row: Any, split: Mapping[str, Tensor], seed: int, config: SISConfig) -> TrainSpec:
    """The SIS generator `config`, trained on the split's "image" and "labels"."""
    if row.lr is not None:
        config = dataclasses.replace(config, lr=row.lr)
    data = InMemory({"image": split["image"], "labels": split["labels"]})
    return training_spec(config, data, steps=row.steps, batch_size=row.batch_size, seed=seed)


__all__ = ["SISConfig", "SISModel", "StyleEncoder", "Generator", "PatchDiscriminator", "build", "one_hot",
           "region_average", "broadcast_styles", "receptive_radius", "extract_styles", "synthesize",
           "training_spec", "EVALUATED_NETS", "book_spec"]
