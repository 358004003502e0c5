"""Paper 004's 14 univariate semantics of a face image (Sec. 4.3), and a supervised regressor of them.

The semantics are unsup3d's view and light with paper 004's coloured light: pitch, yaw, roll (degrees), translation
x, y, z, ambient light red, green, blue, diffuse light red, green, blue, and the light direction x, y (unsup3d's
direction (dx, dy, -1) up to length). SynthFaces knows them exactly for every render (`true_semantics`).

Paper 004 reads the pitch and yaw of its generations with an external 3D landmarker (Bulat & Tzimiropoulos, 2017) and
could not measure the light. The book's analog is `SemanticRegressor`: the feature network's trunk with a linear head
trained by mean squared error on standardised semantics of SynthFaces renders with exact labels; its held-out error is
printed before it is applied to GAN generations, whose semantics nobody knows exactly.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.memory import InMemory
from ..train import TrainSpec, single_network_spec
from .features import FeatureConfig, FeatureNet

SEMANTIC_NAMES = ("yaw", "pitch", "roll", "translation_x", "translation_y", "translation_z", "ambient_red",
                  "ambient_green", "ambient_blue", "diffuse_red", "diffuse_green", "diffuse_blue", "light_x", "light_y")


def semantics_from_parts(view: Tensor, ambient_rgb: Tensor, diffuse_rgb: Tensor, light_xy: Tensor) -> Tensor:
    """[B, 14] in SEMANTIC_NAMES order from a view [B, 6] (radians, renderer units), ambient and diffuse RGB [B, 3]
    and the light direction's (dx, dy) [B, 2]; angles are returned in degrees."""
    return torch.cat([torch.rad2deg(view[:, :3]), view[:, 3:6], ambient_rgb, diffuse_rgb, light_xy], 1)


def true_semantics(view: Tensor, light: Tensor) -> Tensor:
    """SynthFaces' exact semantics [B, 14] from its "view" [B, 6] and "light" [B, 8] (ambient, diffuse, unit direction
    towards the light, colour): ambient/diffuse RGB = intensity x colour, (dx, dy) = direction_xy / -direction_z."""
    ambient, diffuse, direction, colour = light[:, 0:1], light[:, 1:2], light[:, 2:5], light[:, 5:8]
    light_xy = direction[:, :2] / (-direction[:, 2:3]).clamp_min(1e-6)
    return semantics_from_parts(view, ambient * colour, diffuse * colour, light_xy)


@dataclass(frozen=True)
class RegressorConfig:
    """The supervised semantic regressor (JSON-able)."""

    resolution: int = 64
    width: int = 16
    lr: float = 1e-3


class SemanticRegressor(nn.Module):
    """Image [B, 3, R, R] in [0, 1] -> the 14 semantics [B, 14] in their units (the head predicts standardised
    values; `mean` and `std` buffers, set from the training labels, undo the standardisation)."""

    def __init__(self, cfg: RegressorConfig):
        super().__init__()
        self.net = FeatureNet(FeatureConfig(resolution=cfg.resolution, width=cfg.width,
                                            num_attributes=len(SEMANTIC_NAMES)))
        self.register_buffer("mean", torch.zeros(len(SEMANTIC_NAMES)))
        self.register_buffer("std", torch.ones(len(SEMANTIC_NAMES)))

    def standardised(self, image: Tensor) -> Tensor:
        return self.net(image).float()

    def forward(self, image: Tensor) -> Tensor:
        return self.standardised(image) * self.std + self.mean


def training_spec(cfg: RegressorConfig, data, mean: Tensor, std: Tensor, steps: int, batch_size: int, seed: int,
                  **loop: Any) -> TrainSpec:
    """The TrainSpec "semantics": MSE of standardised semantics ("semantics" [14]) given "image" (items of `data`)."""

    def make() -> SemanticRegressor:
        net = SemanticRegressor(cfg)
        net.mean.copy_(mean)
        net.std.copy_(std)
        return net

    def loss(nets, batch, step):
        net = nets["semantics"]
        target = (batch["semantics"].float() - net.mean) / net.std
        mse = F.mse_loss(net.standardised(batch["image"]), target)
        return mse, {"mse": mse.detach()}

    config = {"model": dataclasses.asdict(cfg), "mean": mean.tolist(), "std": std.tolist()}
    return single_network_spec("semantics", "semantics", make, loss, cfg.lr, config, steps, batch_size, seed, data,
                               **loop)


EVALUATED_NETS = ("semantics",)


def book_spec(row: Any, split: Mapping[str, Tensor], seed: int, config: RegressorConfig | None = None) -> TrainSpec:
    """The regressor of a run, on the split's "image", "view" and "light" (SynthFaces renders)."""
    missing = [k for k in ("image", "view", "light") if k not in split]
    if missing:
        raise ValueError(f"the semantic regressor needs exact view and light labels; the split lacks {missing} "
                         "(only SynthFaces renders carry them)")
    if split["image"].shape[-1] != row.resolution:
        raise ValueError(f"images of {split['image'].shape[-1]} px; the profile's regressor is for {row.resolution} px")
    cfg = config or RegressorConfig(resolution=row.resolution, width=row.width)
    if row.lr is not None:
        cfg = dataclasses.replace(cfg, lr=row.lr)
    semantics = true_semantics(split["view"], split["light"])
    mean, std = semantics.mean(0), semantics.std(0).clamp_min(1e-6)
    return training_spec(cfg, InMemory({"image": split["image"], "semantics": semantics}), mean, std,
                         steps=row.steps, batch_size=row.batch_size, seed=seed)


__all__ = ["SEMANTIC_NAMES", "semantics_from_parts", "true_semantics", "RegressorConfig", "SemanticRegressor",
           "training_spec", "EVALUATED_NETS", "book_spec"]
