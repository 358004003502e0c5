"""The feature network of the book's Fréchet distance (the "realism" measure of chapter 3, paper 002's Table 1).

Paper 002 reports FID: the Fréchet distance between Gaussians fitted to Inception-v3 features of real and edited
images. Inception's ImageNet weights are not available here (nothing is downloaded), so the book trains its own
feature network on its own faces and reports the Fréchet distance in that feature space. It is NOT the FID: its
numbers are not comparable with any published FID, only between methods measured with the same network.

- Network: a stem [conv3x3, GroupNorm, SiLU] 3 -> w at full resolution, then four stages of [conv3x3 stride 2,
  GroupNorm, SiLU, conv3x3, GroupNorm, SiLU] at widths w, 2w, 4w, 8w (resolution / 16 at the end), global average
  pooling -> the feature vector (8w dims; `features`), and a linear head -> one logit per binary attribute (`forward`).
- Training: binary cross-entropy of the 0/1 attributes (SynthFaces' CelebA-style attributes, or CelebA's), Adam
  lr 1e-3, betas (0.9, 0.999). Predicting face attributes makes the features respond to what makes a face look like
  a face of the data (parts, colours, shapes), as Inception's class features do for natural images.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.memory import InMemory
from ..data.synthfaces import ATTRIBUTE_NAMES
from ..train import TrainSpec, single_network_spec
from .mask_vae import group_count


@dataclass(frozen=True)
class FeatureConfig:
    """Every setting of the feature network (JSON-able through dataclasses.asdict)."""

    resolution: int = 128
    width: int = 32  # w: stem w, stages w, 2w, 4w, 8w; features 8w
    num_attributes: int = len(ATTRIBUTE_NAMES)
    lr: float = 1e-3

    def __post_init__(self) -> None:
        errors = []
        if self.resolution < 16 or self.resolution % 16:
            errors.append(f"resolution={self.resolution}: must be a multiple of 16 (four stride-2 stages)")
        if self.width < 1:
            errors.append(f"width={self.width}: must be >= 1")
        if self.num_attributes < 1:
            errors.append(f"num_attributes={self.num_attributes}: must be >= 1")
        if not self.lr > 0:
            errors.append(f"lr={self.lr}: must be > 0")
        if errors:
            raise ValueError("; ".join(errors))

    @property
    def feature_dim(self) -> int:
        """Length of the feature vector (8w)."""
        return 8 * self.width


def scaled_config(resolution: int, width: int, num_attributes: int = len(ATTRIBUTE_NAMES)) -> FeatureConfig:
    """The feature network of a profile (the `features` family's resolution and width)."""
    return FeatureConfig(resolution=int(resolution), width=int(width), num_attributes=int(num_attributes))


def conv_norm_act(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """conv3x3 (stride 1 or 2), GroupNorm, SiLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(group_count(cout, 8), cout),
                         nn.SiLU())


class FeatureNet(nn.Module):
    """Image [B, 3, H, W] in [0, 1] -> features [B, 8w] (`features`) and attribute logits [B, A] (`forward`)."""

    def __init__(self, cfg: FeatureConfig):
        super().__init__()
        w = cfg.width
        widths = [w, w, 2 * w, 4 * w, 8 * w]
        self.stem = conv_norm_act(3, w)
        self.stages = nn.Sequential(*[nn.Sequential(conv_norm_act(widths[i], widths[i + 1], stride=2),
                                                    conv_norm_act(widths[i + 1], widths[i + 1]))
                                      for i in range(4)])
        self.head = nn.Linear(8 * w, cfg.num_attributes)

    def features(self, image: Tensor) -> Tensor:
        """The penultimate layer: global average of the last stage, [B, 8w] (float32)."""
        return self.stages(self.stem(image * 2 - 1)).float().mean(dim=(2, 3))

    def forward(self, image: Tensor) -> Tensor:
        return self.head(self.features(image))


def training_spec(cfg: FeatureConfig, data, steps: int, batch_size: int, seed: int, **loop: Any) -> TrainSpec:
    """The TrainSpec "features": BCE of the 0/1 "attributes" [A] given "image" [3, H, W] (items of `data`)."""

    def loss(nets, batch, step):
        logits = nets["features"](batch["image"]).float()
        attributes = batch["attributes"].float()
        if attributes.shape != logits.shape:
            raise ValueError(f"attributes of shape {tuple(attributes.shape)} do not match the config's "
                             f"num_attributes={cfg.num_attributes} (logits {tuple(logits.shape)})")
        bce = F.binary_cross_entropy_with_logits(logits, attributes)
        with torch.no_grad():
            acc = ((logits > 0).float() == attributes).float().mean()
        return bce, {"bce": bce.detach(), "acc": acc}

    return single_network_spec("features", "features", lambda: FeatureNet(cfg), loss, cfg.lr,
                               {"model": dataclasses.asdict(cfg)}, steps, batch_size, seed, data, **loop)


EVALUATED_NETS = ("features",)


def book_spec(row: Any, split: Mapping[str, Tensor], seed: int, config: FeatureConfig | None = None) -> TrainSpec:
    """The feature network of a run, trained on the split's "image" and "attributes" (images at the row's
    resolution); `config` or the row's width."""
    if "attributes" not in split:
        raise ValueError("the feature network learns attributes, and this split has none (SynthFaces and "
                         "CelebAMask-HQ converted with its attribute file have them)")
    images, attributes = split["image"], split["attributes"]
    if images.shape[-1] != row.resolution:
        raise ValueError(f"images of {images.shape[-1]} px; the profile's feature network is for {row.resolution} px")
    cfg = config or scaled_config(row.resolution, row.width, num_attributes=attributes.shape[1])
    if row.lr is not None:
        cfg = dataclasses.replace(cfg, lr=row.lr)
    return training_spec(cfg, InMemory({"image": images, "attributes": attributes}), steps=row.steps,
                         batch_size=row.batch_size, seed=seed)


__all__ = ["FeatureConfig", "scaled_config", "conv_norm_act", "FeatureNet", "training_spec", "EVALUATED_NETS",
           "book_spec"]
