"""A small U-Net face segmenter: the supervised baseline of Latents2Segments' Table 2 (paper 000).

The paper compares its segmentation by masked decoding with a modified BiSeNet trained with labels. This baseline is
a small U-Net (Ronneberger et al. 2015) of the same family of supervised image -> label-map networks, sized to train
on a CPU in the budget of the L2S model:

- Encoder: three levels of [conv3x3, GroupNorm, SiLU] x 2 at widths w, 2w, 4w, each followed by 2x2 max pooling, then
  a bottleneck of the same kind at 8w (resolution / 8).
- Decoder: three levels of nearest x2 upsampling, concatenation with the encoder's features of that level (skip
  connection) and [conv3x3, GroupNorm, SiLU] x 2 at 4w, 2w, w; a 1x1 conv to the logits of 6 classes: background
  and the five ROIs of ROI_NAMES (hair, skin, nose, eyes, lips_mouth), the ids of `ToROI`'s "roi_labels".
- Loss: plain cross-entropy over pixels; Adam lr 1e-3, betas (0.9, 0.999).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.memory import InMemory
from ..data.transforms import ToROI
from ..train import TrainSpec, single_network_spec
from .mask_vae import group_count


@dataclass(frozen=True)
class SegmenterConfig:
    """Every setting of the baseline segmenter (JSON-able through dataclasses.asdict)."""

    resolution: int = 128
    width: int = 64  # w: encoder w, 2w, 4w, bottleneck 8w
    num_classes: int = 6  # background + 5 ROIs
    lr: float = 1e-3

    def __post_init__(self) -> None:
        errors = []
        if self.resolution < 8 or self.resolution % 8:
            errors.append(f"resolution={self.resolution}: must be a multiple of 8 (three 2x poolings)")
        if self.width < 1:
            errors.append(f"width={self.width}: must be >= 1")
        if self.num_classes < 2:
            errors.append(f"num_classes={self.num_classes}: need at least 2")
        if self.lr <= 0:
            errors.append(f"lr={self.lr}: must be > 0")
        if errors:
            raise ValueError("; ".join(errors))


def paper_config() -> SegmenterConfig:
    """The baseline at the paper's 128 px (w = 64: about 7.8 M parameters, the size of a small BiSeNet)."""
    return SegmenterConfig()


def scaled_config(resolution: int, width: int, num_classes: int = 6) -> SegmenterConfig:
    """The baseline of a profile: resolution and base width."""
    return SegmenterConfig(resolution=int(resolution), width=int(width), num_classes=num_classes)


class ConvBlock(nn.Sequential):
    """[conv3x3, GroupNorm, SiLU] x 2."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(group_count(cout, 8), cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(group_count(cout, 8), cout), nn.SiLU())


class UNetSegmenter(nn.Module):
    """Image [B, 3, H, W] in [0, 1] -> logits [B, num_classes, H, W]."""

    def __init__(self, cfg: SegmenterConfig):
        super().__init__()
        w = cfg.width
        self.down = nn.ModuleList([ConvBlock(3, w), ConvBlock(w, 2 * w), ConvBlock(2 * w, 4 * w)])
        self.bottleneck = ConvBlock(4 * w, 8 * w)
        self.up = nn.ModuleList([ConvBlock(8 * w + 4 * w, 4 * w), ConvBlock(4 * w + 2 * w, 2 * w),
                                 ConvBlock(2 * w + w, w)])
        self.out = nn.Conv2d(w, cfg.num_classes, 1)

    def forward(self, image: Tensor) -> Tensor:
        skips = []
        h = image * 2 - 1
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = F.max_pool2d(h, 2)
        h = self.bottleneck(h)
        for block, skip in zip(self.up, reversed(skips)):
            h = block(torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), skip], 1))
        return self.out(h)


@torch.no_grad()
def segment_images(model: UNetSegmenter, image: Tensor) -> Tensor:
    """Images [B, 3, H, W] -> label maps [B, H, W] (argmax of the logits)."""
    return model(image).argmax(1)


def training_spec(cfg: SegmenterConfig, data, steps: int, batch_size: int, seed: int, **loop: Any) -> TrainSpec:
    """The TrainSpec "segmenter": cross-entropy of "roi_labels" [H, W] given "image" [3, H, W] (items of `data`)."""

    def loss(nets, batch, step):
        logits = nets["segmenter"](batch["image"]).float()
        labels = batch["roi_labels"].long()
        ce = F.cross_entropy(logits, labels)
        with torch.no_grad():
            acc = (logits.argmax(1) == labels).float().mean()
        return ce, {"ce": ce.detach(), "acc": acc}

    return single_network_spec("segmenter", "segmenter", lambda: UNetSegmenter(cfg), loss, cfg.lr,
                               {"model": dataclasses.asdict(cfg)}, steps, batch_size, seed, data, **loop)


EVALUATED_NETS = ("segmenter",)


def book_spec(row: Any, split: Mapping[str, Tensor], seed: int, config: SegmenterConfig | None = None) -> TrainSpec:
    """The baseline of chapter 02's Table 2 (chapter 03's label maps): `config` or the row's size, on the split's
    "image" and its ROI labels."""
    cfg = config or scaled_config(row.resolution, row.width)
    if row.lr is not None:
        cfg = dataclasses.replace(cfg, lr=row.lr)
    data = InMemory({"image": split["image"], "labels": split["labels"]}, transform=ToROI(images=False))
    return training_spec(cfg, data, steps=row.steps, batch_size=row.batch_size, seed=seed)


__all__ = ["SegmenterConfig", "paper_config", "scaled_config", "ConvBlock", "UNetSegmenter", "segment_images",
           "training_spec", "EVALUATED_NETS", "book_spec"]
