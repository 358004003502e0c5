"""The semantic-parts VAE of paper 001 (Fontanini et al., ICIAP 2023): encode, relate, decode and edit mask parts.

A segmentation mask, one-hot [B, C, H, W], is encoded part by part by ONE MLP shared by all channels (Sec. 3.1),
each part code is a Gaussian (mu, log-variance) of `latent` dims; the C part codes are read as a sequence by an
LSTM ("relation block"), re-arranged by a feed-forward block, reshaped to C maps of grid x grid and decoded by a
convolutional decoder into C logits per pixel. Loss: class-weighted cross-entropy (Eq. 1-2) + lambda * KL (Eq. 3).
Editing (Sec. 4.2): generate a part from N(0, I), perturb it, or interpolate it between two masks (Eq. 4).

Choices made here, on purpose (the paper text, the released demo and this book differ):

- Channels. `num_classes` counts the background: channel 0 is the background and is one more part of the sequence
  (the demo drops it and keeps 18 of CelebAMask-HQ's 19 classes). Keeping it makes the output a complete
  C-way softmax, the label map is simply argmax over channels, and Eq. 1 has a weight for every label, background
  included. Data: `parts` = one-hot of `labels` with background, e.g. OneHotParts(C, drop_background=False).
- Encoder widths. The paper text says every encoder layer has 256 units; the released demo uses
  (H*W) -> 1024 -> 512 -> 256 with 256 -> 256 mean / log-variance heads. We follow the demo (`mlp_hidden=(1024, 512)`)
  because an H*W = 65536 -> 256 first layer is a much harsher bottleneck than anything else in the model; the
  paper's version is `mlp_hidden=(256, 256)`. The demo resizes masks to 128x128 before flattening; we flatten the
  mask at its own resolution, as the paper writes (M in R^{C x H^2}).
- LSTM initial states are zeros (PyTorch's default). The demo draws random initial states at every decode, which
  makes decoding random; zeros make `decode` a deterministic function of the codes.
- `lstm="none"` (Table 1, row 1) removes only the LSTM: the feed-forward block is kept and reads the codes directly.
- Decoder. 1x1 conv C -> widths[0], four residual blocks (GroupNorm, SiLU, conv3x3, GroupNorm, SiLU, conv3x3 with
  the last conv zero-initialised, 1x1 skip when the width changes), then GroupNorm, SiLU and a 1x1 conv to C logits
  (the usual output head of such decoders). The paper's blocks all upsample x2 (16 -> 256); at a lower resolution
  only the LAST log2(resolution / grid) blocks upsample (64 px: blocks 3 and 4; 32 px: block 4), so the first blocks
  run at grid x grid, where they are widest and cheapest.
- Loss normalisation, as printed: Eq. 2 SUMS w[y] * CE over the pixels of a mask (not PyTorch's weighted mean,
  which divides by the sum of the weights), averaged over the batch; the KL is summed over latent dims and parts and
  averaged over the batch; lambda = 0.0005. The KL is then small next to a sum over H * W pixels: the model is
  close to an autoencoder whose codes are kept near N(0, I). (An earlier version of the book divided Eq. 2 by H * W,
  which made the KL H * W times stronger: at 64 px it cost 0.1-0.2 test mIoU for the same training, measured in
  book/training.md.)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from .. import metrics
from ..data.memory import InMemory
from ..data.transforms import OneHotParts
from ..data.transforms import one_hot as one_hot_parts  # masks [..., C, H, W], background channel included
from ..train import TrainSpec, single_network_spec

LSTM_KINDS = ("bi", "uni", "none")


# ----------------------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class MaskVAEConfig:
    """Every setting of the mask VAE (JSON-able through dataclasses.asdict)."""

    num_classes: int = 19  # mask channels, background (channel 0) included: 19 CelebAMask-HQ, 11 HELEN/SynthFaces
    resolution: int = 256  # side of the input and output masks
    mlp_hidden: tuple[int, ...] = (1024, 512)  # encoder hidden widths: (H*W) -> *mlp_hidden -> latent, ReLU each
    latent: int = 256  # dims of one part code (mean and log-variance heads latent -> latent)
    lstm: str = "bi"  # relation block: "bi" (bidirectional), "uni" or "none"
    lstm_layers: int = 3
    lstm_hidden: int = 256
    ff_hidden: int = 1024  # feed-forward block: in -> ff_hidden -> latent (GELU) + residual linear in -> latent
    grid: int = 16  # a part code becomes a grid x grid map: latent == grid * grid
    decoder_widths: tuple[int, ...] = (512, 256, 128, 64, 32)  # input width, then the output of each residual block
    weighted_ce: bool = True  # class weights of Eq. 1 in the cross-entropy (False: standard cross-entropy)
    kl_weight: float = 0.0005  # lambda of Eq. 3

    def __post_init__(self) -> None:
        errors = []
        if self.lstm not in LSTM_KINDS:
            errors.append(f"lstm={self.lstm!r}: allowed {LSTM_KINDS}")
        if self.latent != self.grid * self.grid:
            errors.append(f"latent={self.latent} must equal grid * grid = {self.grid * self.grid}")
        blocks = len(self.decoder_widths) - 1
        ups = self.upsamplings if self.resolution >= self.grid else -1
        if blocks < 1:
            errors.append("decoder_widths needs at least 2 entries (input width and one block)")
        elif ups < 0 or self.grid * 2 ** ups != self.resolution or ups > blocks:
            errors.append(f"resolution={self.resolution} must be grid * 2**k with k <= {blocks} (grid={self.grid})")
        if self.num_classes < 2:
            errors.append(f"num_classes={self.num_classes}: need at least 2")
        if self.lstm != "none" and self.lstm_layers < 1:
            errors.append(f"lstm_layers={self.lstm_layers}: need at least 1")
        if errors:
            raise ValueError("; ".join(errors))

    @property
    def upsamplings(self) -> int:
        """Number of x2 upsamplings from grid to resolution."""
        return max(0, round(math.log2(self.resolution / self.grid)))

    @property
    def relation_width(self) -> int:
        """Width of the relation block's output, the input of the feed-forward block."""
        return {"bi": 2 * self.lstm_hidden, "uni": self.lstm_hidden, "none": self.latent}[self.lstm]


def paper_config(num_classes: int = 19) -> MaskVAEConfig:
    """The paper's model (CelebAMask-HQ: 19 classes at 256x256), encoder widths of the released demo."""
    return MaskVAEConfig(num_classes=num_classes)


def scaled_config(num_classes: int, resolution: int, width: int, grid: int = 16) -> MaskVAEConfig:
    """The model of a profile: resolution, encoder/decoder widths and the part-code size are scaled.

    mlp_hidden = (8w, 4w); decoder_widths = (4w, 2w, w, w/2, w/4), each at least 4. A part code is a grid x grid
    map: latent = grid**2, and the relation block scales with it (LSTM hidden = grid**2, feed-forward 4 * grid**2).
    The paper profile's width 128 and grid 16 give the paper's model exactly: (1024, 512), 256-d codes, LSTM hidden
    256, feed-forward 1024 and decoder (512, 256, 128, 64, 32). The LSTM depth and direction, the loss and the KL
    weight never change.
    """
    w, latent = int(width), int(grid) ** 2
    return MaskVAEConfig(
        num_classes=num_classes, resolution=resolution, mlp_hidden=(8 * w, 4 * w), latent=latent, grid=grid,
        lstm_hidden=latent, ff_hidden=4 * latent,
        decoder_widths=tuple(max(4, c) for c in (4 * w, 2 * w, w, w // 2, w // 4)),
    )


# Table 1 of the paper, as overrides of a base config (rows in the table's order).
ABLATIONS: dict[str, dict[str, Any]] = {
    "w/o LSTM block": dict(lstm="none", weighted_ce=False),
    "1 LSTM w/o bidir w/o weighted CE": dict(lstm="uni", lstm_layers=1, weighted_ce=False),
    "3 LSTMs w/o bidir w/o weighted CE": dict(lstm="uni", lstm_layers=3, weighted_ce=False),
    "3 LSTMs w/o bidir": dict(lstm="uni", lstm_layers=3, weighted_ce=True),
    "3 LSTMs w/o weighted CE": dict(lstm="bi", lstm_layers=3, weighted_ce=False),
    "full": dict(lstm="bi", lstm_layers=3, weighted_ce=True),
}

# The paper's Table 1 (CelebAMask-HQ, 256 px): mIoU and pixel accuracy in percent, per configuration.
PAPER_TABLE1: dict[str, tuple[float, float]] = {
    "w/o LSTM block": (68.49, 94.24),
    "1 LSTM w/o bidir w/o weighted CE": (68.15, 93.85),
    "3 LSTMs w/o bidir w/o weighted CE": (67.35, 90.91),
    "3 LSTMs w/o bidir": (68.34, 90.94),
    "3 LSTMs w/o weighted CE": (69.56, 92.12),
    "full": (70.31, 92.39),
}


def ablation(base: MaskVAEConfig, name: str) -> MaskVAEConfig:
    """The Table 1 variant `name` of `base` (all other settings unchanged)."""
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; known: {', '.join(ABLATIONS)}")
    return dataclasses.replace(base, **ABLATIONS[name])


# ----------------------------------------------------------------------------------------------------------------
# Networks


def group_count(width: int, most: int = 32) -> int:
    """GroupNorm groups: the largest divisor of `width` not above `most`."""
    return next(g for g in range(min(most, width), 0, -1) if width % g == 0)


class PartEncoder(nn.Module):
    """One MLP shared by all parts: each flattened channel -> (mu, logvar) of `latent` dims (Sec. 3.1)."""

    def __init__(self, pixels: int, hidden: tuple[int, ...], latent: int):
        super().__init__()
        widths = [pixels, *hidden, latent]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.mlp = nn.Sequential(*layers)
        self.mu = nn.Linear(latent, latent)
        self.logvar = nn.Linear(latent, latent)

    def forward(self, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c = masks.shape[:2]
        h = self.mlp(masks.reshape(b, c, -1))
        return self.mu(h), self.logvar(h)


class RelationBlock(nn.Module):
    """LSTM over the sequence of parts (zero initial states, every step kept) + feed-forward block (Sec. 3.1)."""

    def __init__(self, cfg: MaskVAEConfig):
        super().__init__()
        self.lstm = None
        if cfg.lstm != "none":
            self.lstm = nn.LSTM(cfg.latent, cfg.lstm_hidden, num_layers=cfg.lstm_layers, batch_first=True,
                                bidirectional=cfg.lstm == "bi")
        width = cfg.relation_width
        self.ff = nn.Sequential(nn.Linear(width, cfg.ff_hidden), nn.GELU(), nn.Linear(cfg.ff_hidden, cfg.latent))
        self.residual = nn.Linear(width, cfg.latent)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z if self.lstm is None else self.lstm(z)[0]  # no (h0, c0) given: zero initial states
        return self.ff(h) + self.residual(h)


class ResBlock(nn.Module):
    """(nearest x2) -> GroupNorm, SiLU, conv3x3, GroupNorm, SiLU, conv3x3 (zero-initialised) + skip."""

    def __init__(self, cin: int, cout: int, upsample: bool):
        super().__init__()
        self.upsample = upsample
        self.norm1 = nn.GroupNorm(group_count(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(group_count(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class MaskDecoder(nn.Module):
    """C part vectors -> C maps of grid x grid -> residual blocks (last ones upsample) -> C logits (Sec. 3.1)."""

    def __init__(self, cfg: MaskVAEConfig):
        super().__init__()
        self.grid = cfg.grid
        widths = cfg.decoder_widths
        blocks = len(widths) - 1
        first_up = blocks - cfg.upsamplings
        self.inp = nn.Conv2d(cfg.num_classes, widths[0], 1)
        self.blocks = nn.Sequential(*[ResBlock(widths[i], widths[i + 1], upsample=i >= first_up)
                                      for i in range(blocks)])
        self.norm = nn.GroupNorm(group_count(widths[-1]), widths[-1])
        self.out = nn.Conv2d(widths[-1], cfg.num_classes, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, c = h.shape[:2]
        x = self.inp(h.reshape(b, c, self.grid, self.grid))
        return self.out(F.silu(self.norm(self.blocks(x))))


class MaskVAE(nn.Module):
    """Semantic-parts VAE: encode parts -> sample -> relate -> decode to C logits per pixel (Fig. 1)."""

    def __init__(self, cfg: MaskVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = PartEncoder(cfg.resolution ** 2, tuple(cfg.mlp_hidden), cfg.latent)
        self.relation = RelationBlock(cfg)
        self.decoder = MaskDecoder(cfg)

    def encode(self, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One-hot masks [B, C, H, W] -> part codes mu, logvar [B, C, latent]."""
        return self.encoder(masks)

    def relate(self, z: torch.Tensor) -> torch.Tensor:
        """Part codes [B, C, latent] -> related part vectors [B, C, latent] (LSTM + feed-forward)."""
        return self.relation(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Part codes [B, C, latent] -> logits [B, C, H, W]: relate, then the convolutional decoder (deterministic)."""
        return self.decoder(self.relate(z))

    def forward(self, masks: torch.Tensor, sample: bool | None = None) -> dict[str, torch.Tensor]:
        """Reconstruct: z = mu + exp(logvar / 2) * eps when sampling (default: in training mode), else z = mu."""
        mu, logvar = self.encode(masks)
        if self.training if sample is None else sample:
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        else:
            z = mu
        return {"logits": self.decode(z), "mu": mu, "logvar": logvar, "z": z}


def to_labels(logits: torch.Tensor) -> torch.Tensor:
    """Label map [B, H, W]: argmax over the C channels (channel 0 is the background)."""
    return logits.argmax(dim=1)


# ----------------------------------------------------------------------------------------------------------------
# Losses


CLASS_WEIGHTINGS = ("eq1", "inverse_sqrt")


def class_weights(frequencies: torch.Tensor, rule: str = "eq1") -> torch.Tensor:
    """Class weights of the weighted cross-entropy from the classes' mean areas (helpers.metrics.class_frequencies).

    "eq1": Eq. 1, w_c = 1 - mean area of class c. "inverse_sqrt": w_c proportional to 1 / sqrt(mean area), scaled to
    mean 1 over the classes present (absent classes get 0): the book's deviation for short runs, where Eq. 1's
    weights (0.66 for the skin against 0.99 for an eye) leave parts of 0.3 % of the pixels almost no gradient.
    """
    frequencies = torch.as_tensor(frequencies, dtype=torch.float32)
    if rule == "eq1":
        return 1.0 - frequencies
    if rule == "inverse_sqrt":
        present = frequencies > 0
        weights = torch.where(present, frequencies.clamp_min(1e-12).rsqrt(), torch.zeros_like(frequencies))
        return weights / weights[present].mean()
    raise ValueError(f"rule={rule!r}: allowed {CLASS_WEIGHTINGS}")


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                           weights: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 2: the sum over the pixels of a mask of w[y] * CE, averaged over the batch (float32); weights None = the
    standard cross-entropy (every w = 1)."""
    if weights is not None:
        weights = weights.to(device=logits.device, dtype=torch.float32)
    per_pixel = F.cross_entropy(logits.float(), labels.long(), weight=weights, reduction="none")
    return per_pixel.flatten(1).sum(1).mean()


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dims and parts, mean over the batch (float32)."""
    mu, logvar = mu.float(), logvar.float()
    per_item = -0.5 * (1.0 + logvar - mu.square() - logvar.exp()).flatten(1).sum(dim=1)
    return per_item.mean()


def mask_vae_loss(out: Mapping[str, torch.Tensor], labels: torch.Tensor, weights: torch.Tensor | None,
                  cfg: MaskVAEConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 3: (weighted) cross-entropy + kl_weight * KL; the weights are used only when cfg.weighted_ce."""
    ce = weighted_cross_entropy(out["logits"], labels, weights if cfg.weighted_ce else None)
    kl = kl_divergence(out["mu"], out["logvar"])
    total = ce + cfg.kl_weight * kl
    with torch.no_grad():
        acc = (out["logits"].argmax(dim=1) == labels).float().mean()
    return total, {"loss": total.item(), "ce": ce.item(), "kl": kl.item(), "acc": acc.item()}


# ----------------------------------------------------------------------------------------------------------------
# Editing (Sec. 4.2): all on the part codes mu [B, C, latent]; decode the result with MaskVAE.decode


def _noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=device).to(like)


def generate_part(mu: torch.Tensor, part: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """New codes where part `part` is drawn from N(0, I) (a new shape for that part), the other parts kept."""
    out = mu.clone()
    out[:, part] = _noise(mu[:, part], generator)
    return out


def perturb_part(mu: torch.Tensor, part: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """New codes where N(0, I) noise is added to part `part` (a variation of its shape), the other parts kept."""
    out = mu.clone()
    out[:, part] = mu[:, part] + _noise(mu[:, part], generator)
    return out


def interpolate_part(mu_source: torch.Tensor, mu_target: torch.Tensor, part: int, alpha: float) -> torch.Tensor:
    """Eq. 4 for one part: m = alpha * m_target + (1 - alpha) * m_source; every other part is the source's."""
    out = mu_source.clone()
    out[:, part] = alpha * mu_target[:, part] + (1.0 - alpha) * mu_source[:, part]
    return out


@torch.no_grad()
def interpolation_monotonicity(model: "MaskVAE", sources: torch.Tensor, targets: torch.Tensor,
                               alphas: torch.Tensor | None = None, min_area_change: float = 2.0,
                               min_shift: float = 0.5) -> dict[str, float]:
    """How steadily Eq. 4 moves a part from its source shape to its target shape: Spearman's rho along the path.

    For every part c >= 1 and pair (sources[b], targets[b]) of label maps [B, H, W], the part codes are interpolated
    by Eq. 4 at `alphas` (default 11 values in [0, 1]) and decoded from the means; rho between alpha and the part's
    area (oriented so that +1 grows or shrinks towards the target's area) and between alpha and its centroid's
    position along the source-to-target direction. Paths whose ends differ by less than `min_area_change` px in area
    or `min_shift` px in centroid carry no direction and are counted in "skipped". Returns the mean rho of each
    ("area", "centroid"), their mean ("mean"), and the counts ("paths_area", "paths_centroid", "skipped").
    """
    alphas = torch.linspace(0, 1, 11) if alphas is None else alphas
    device = next(model.parameters()).device
    num_classes = model.cfg.num_classes
    mu_s = model.encode(one_hot_parts(sources, num_classes).to(device))[0]
    mu_t = model.encode(one_hot_parts(targets, num_classes).to(device))[0]
    rho_area, rho_centre, skipped = [], [], 0
    for part in range(1, num_classes):
        path = torch.stack([to_labels(model.decode(interpolate_part(mu_s, mu_t, part, float(a)))).cpu()
                            for a in alphas]) == part  # [A, B, H, W]
        area = path.flatten(2).sum(-1).double()  # [A, B]
        centre = torch.stack([metrics.centroids(step) for step in path])  # [A, B, 2]
        for b in range(len(sources)):
            d_area = area[-1, b] - area[0, b]
            if abs(d_area) >= min_area_change:
                rho_area.append(metrics.spearman(alphas, area[:, b] * d_area.sign()))
            else:
                skipped += 1
            direction = centre[-1, b] - centre[0, b]
            if torch.isfinite(centre[:, b]).all() and direction.norm() >= min_shift:
                rho_centre.append(metrics.spearman(alphas, (centre[:, b] - centre[0, b]) @ direction))
            else:
                skipped += 1
    rho = {"area": sum(rho_area) / max(1, len(rho_area)), "centroid": sum(rho_centre) / max(1, len(rho_centre))}
    return {**rho, "mean": (rho["area"] + rho["centroid"]) / 2, "paths_area": len(rho_area),
            "paths_centroid": len(rho_centre), "skipped": skipped}


# ----------------------------------------------------------------------------------------------------------------
# Training


def training_spec(cfg: MaskVAEConfig, data: Dataset, class_weights: torch.Tensor | None, steps: int,
                  batch_size: int, seed: int, lr: float = 1e-3, **loop: Any) -> TrainSpec:
    """The TrainSpec of one mask VAE: items of `data` are dicts with "parts" [C, H, W] and "labels" [H, W].

    `class_weights` (Eq. 1 or the book's deviation: `class_weights`) are needed when cfg.weighted_ce. Adam with
    lr 1e-3, betas (0.9, 0.999): the paper gives no optimiser settings. Extra keyword arguments go to TrainSpec.
    """
    if cfg.weighted_ce and class_weights is None:
        raise ValueError("cfg.weighted_ce needs class_weights (helpers.models.mask_vae.class_weights)")
    weights = None
    if class_weights is not None:
        weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
        if weights.numel() != cfg.num_classes:
            raise ValueError(f"class_weights has {weights.numel()} entries, cfg.num_classes={cfg.num_classes}")
    config = {**dataclasses.asdict(cfg), "lr": lr,
              "class_weights": None if weights is None else [round(float(w), 6) for w in weights]}

    def loss(nets, batch, step):
        out = nets["vae"](batch["parts"], sample=True)
        return mask_vae_loss(out, batch["labels"], weights, cfg)

    return single_network_spec("mask_vae", "vae", lambda: MaskVAE(cfg), loss, lr, config, steps, batch_size, seed,
                               data, **loop)


EVALUATED_NETS = ("vae",)


def book_spec(row: Any, split: Mapping[str, torch.Tensor], seed: int, config: MaskVAEConfig,
              class_weights: torch.Tensor | None) -> TrainSpec:
    """The mask VAE `config` (e.g. a Table 1 variant) trained on the split's "labels" (one-hot with background)."""
    data = InMemory({"labels": split["labels"]}, transform=OneHotParts(config.num_classes, drop_background=False))
    return training_spec(config, data, class_weights, steps=row.steps, batch_size=row.batch_size, seed=seed,
                         lr=row.lr if row.lr is not None else 1e-3)


__all__ = [
    "MaskVAEConfig", "paper_config", "scaled_config", "ABLATIONS", "ablation", "MaskVAE", "PartEncoder",
    "RelationBlock", "MaskDecoder", "ResBlock", "group_count", "to_labels", "one_hot_parts",
    "CLASS_WEIGHTINGS", "class_weights", "weighted_cross_entropy", "kl_divergence", "mask_vae_loss", "generate_part", "perturb_part",
    "interpolate_part", "training_spec", "EVALUATED_NETS", "book_spec",
]
