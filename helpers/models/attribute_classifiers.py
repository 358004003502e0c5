"""Linear attribute classifiers on latent codes: paper 003's C_i, "a single layer MLP for each attribute".

One linear layer maps a flattened code [dim] to K logits. Trained with binary cross-entropy on codes with their true
0/1 attributes (Adam, a small L2 penalty), in W+, then frozen: the flow T of `helpers.models.flow` is trained against
them. Inputs are standardised with the training codes' mean and std (fixed buffers) to condition the training;
`hyperplanes()` gives each classifier as (d_i, b_i) in the codes' own units, the normal and bias Eq. 2 needs.
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


class LinearClassifiers(nn.Module):
    """K linear classifiers on codes [B, dim]: logits = ((w - mean) / std) @ W^T + b."""

    def __init__(self, dim: int, n_attributes: int):
        super().__init__()
        self.linear = nn.Linear(dim, n_attributes)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, w: Tensor) -> Tensor:
        return self.linear((w - self.mean) / self.std)

    def hyperplanes(self) -> tuple[Tensor, Tensor]:
        """(d [K, dim], b [K]) with logits = w @ d^T + b in the codes' units."""
        d = self.linear.weight / self.std
        return d, self.linear.bias - d @ self.mean


@dataclass(frozen=True)
class ClassifierConfig:
    """The classifiers and their training (JSON-able through dataclasses.asdict)."""

    dim: int
    n_attributes: int
    lr: float = 1e-3
    weight_decay: float = 1e-4  # on the standardised weights

    def __post_init__(self) -> None:
        if self.dim < 1 or self.n_attributes < 1:
            raise ValueError(f"ClassifierConfig(dim={self.dim}, n_attributes={self.n_attributes}): both must be >= 1")


def training_spec(cfg: ClassifierConfig, codes: Tensor, attributes: Tensor, steps: int, batch_size: int, seed: int,
                  **loop: Any) -> TrainSpec:
    """The TrainSpec "classifier": mean BCE of the K classifiers (+ L2) on ("code" [dim], "attributes" [K]) items."""
    if codes.shape[1] != cfg.dim or attributes.shape[1] != cfg.n_attributes:
        raise ValueError(f"codes {tuple(codes.shape)} and attributes {tuple(attributes.shape)} do not match "
                         f"ClassifierConfig(dim={cfg.dim}, n_attributes={cfg.n_attributes})")
    mean, std = codes.mean(0), codes.std(0).clamp_min(1e-6)

    def make() -> LinearClassifiers:
        net = LinearClassifiers(cfg.dim, cfg.n_attributes)
        net.mean.copy_(mean)
        net.std.copy_(std)
        return net

    def loss(nets, batch, step):
        net = nets["classifier"]
        bce = F.binary_cross_entropy_with_logits(net(batch["code"].float()), batch["attributes"].float())
        return bce + cfg.weight_decay * net.linear.weight.square().sum(), {"bce": bce.detach()}

    return single_network_spec("classifier", "classifier", make, loss, cfg.lr, {"model": dataclasses.asdict(cfg)},
                               steps, batch_size, seed, InMemory({"code": codes, "attributes": attributes}),
                               precision="fp32", channels_last=False, **loop)


EVALUATED_NETS = ("classifier",)


def book_spec(row: Any, split: Mapping[str, Tensor], seed: int, encoder: Any,
              config: ClassifierConfig | None = None) -> TrainSpec:
    """The classifiers of a run on the split's "code" and "attributes"; the encoder (`Trained`) that gave the codes
    names them in the cache key."""
    codes, attributes = split["code"], split["attributes"]
    cfg = config or ClassifierConfig(dim=codes.shape[1], n_attributes=attributes.shape[1], **row.model)
    if row.lr is not None:
        cfg = dataclasses.replace(cfg, lr=row.lr)
    spec = training_spec(cfg, codes, attributes, steps=row.steps, batch_size=row.batch_size, seed=seed)
    spec.config = {**spec.config, "encoder": encoder.path.name}
    return spec


__all__ = ["LinearClassifiers", "ClassifierConfig", "training_spec", "EVALUATED_NETS", "book_spec"]
