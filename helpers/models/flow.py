"""Semantic unfolding (Shukor et al., paper 003): a RealNVP T: W+ -> W* trained so that attributes separate linearly.

The paper learns a bijection T from StyleGAN2's W+ to a proxy space W* with three losses (Sec. 3), the generator and
the encoder frozen:

- L_a (Eq. 1): binary cross-entropy of K linear attribute classifiers C_i, pre-trained in W+ and frozen, on T(w);
- L_lm (Eq. 2): a large-margin term on the distance of T(w) to each classifier's hyperplane;
- L_ap (Eq. 3): attribute preservation: move T(w) along the normal of one attribute j (random per batch), map back
  with T^-1, and keep every other classifier's output: sum_{i != j} |C_i(w) - C_i(w_hat)|.

Total: L_a + lambda_lm L_lm + lambda_ap L_ap with Adam (lr 1e-4, betas 0.9/0.999), lambda_ap 0.1, batch 8.

What the paper leaves open, and what this module does (each said in chapter 05):

- Couplings (`Coupling`): RealNVP's affine coupling y = b*x + (1-b)*(x*exp(s(b*x)) + t(b*x)), s and t each three
  fully connected layers (LeakyReLU 0.2 hidden; Tanh on the output of s only: a Tanh on t would cap each shift at
  +-1), last layers zero-initialised so that T starts as the identity (T "only improves" on the classifiers).
  Masks: coupling 2k transforms a random half of the coordinates (fixed by the config's seed), coupling 2k+1 the
  other half. Default 8 couplings of hidden width 256 (the profile's `width`).
- The couplings work on standardised codes: T(w) = mu + sigma * f((w - mu) / sigma) with the training codes' mean
  and std as fixed buffers, so the networks see unit-scale inputs and T(w) = w at initialisation (the classifiers
  pre-trained in W+ then read W* exactly as W+). The standardisation adds nothing to log|det|.
- `linear=True` (the ablation): s is a learned constant per coupling and t a single linear map, so T is an invertible
  linear map trained with the same losses: whatever a linear T gains, no flow is needed for.
- Eq. 2 as printed, sum_i -m_i |w^T d_i| + (1 - m_i) |w^T d_i|, is minus the signed distance of w to hyperplane i;
  it uses w instead of T(w), omits the bias and is unbounded below. Here (`margin_loss`): the signed distance
  r_i = (2 y_i - 1)(d_i . w* + b_i) / |d_i| of w* = T(w), hinged at a margin M_i: sum_i max(0, M_i - r_i), with M_i
  one standard deviation of the training codes' distances to hyperplane i (`FlowConfig.margin` standard deviations).
- Eq. 3: the edit moves w* by `edit_step` standard deviations of the codes along attribute j's unit normal, towards
  the other side of hyperplane j (the edit a user would make); C_i outputs probabilities and are applied in W+ (w and
  w_hat), where they were trained.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.memory import InMemory
from ..train import TrainSpec, single_network_spec, step_seed
from .attribute_classifiers import LinearClassifiers


@dataclass(frozen=True)
class FlowConfig:
    """Every setting of T and its training (JSON-able through dataclasses.asdict)."""

    dim: int = 18 * 512
    n_couplings: int = 8
    hidden: int = 256
    linear: bool = False  # the ablation: an invertible linear T
    mask_seed: int = 0
    lr: float = 1e-4
    lambda_lm: float = 0.1
    lambda_ap: float = 0.1
    margin: float = 1.0  # M_i of the hinged Eq. 2, in standard deviations of the codes' distances to hyperplane i
    edit_step: float = 2.0  # Eq. 3's move of w*, in standard deviations of the codes along the normal

    def __post_init__(self) -> None:
        if self.dim < 2 or self.n_couplings < 1 or self.hidden < 1:
            raise ValueError(f"FlowConfig(dim={self.dim}, n_couplings={self.n_couplings}, hidden={self.hidden}): "
                             "need dim >= 2, n_couplings >= 1, hidden >= 1")
        if min(self.lambda_lm, self.lambda_ap, self.margin, self.edit_step) < 0:
            raise ValueError("FlowConfig: lambda_lm, lambda_ap, margin and edit_step must be >= 0")


def mlp(dim: int, hidden: int, tanh: bool) -> nn.Sequential:
    """Three fully connected layers dim -> hidden -> hidden -> dim, LeakyReLU hidden, the last one zero-initialised."""
    last = nn.Linear(hidden, dim)
    nn.init.zeros_(last.weight), nn.init.zeros_(last.bias)
    layers = [nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), last]
    return nn.Sequential(*layers, *([nn.Tanh()] if tanh else []))


class Coupling(nn.Module):
    """One affine coupling: the coordinates where `mask` is 1 pass unchanged and condition the others' scale/shift."""

    def __init__(self, mask: Tensor, hidden: int, linear: bool = False):
        super().__init__()
        dim = mask.numel()
        self.register_buffer("mask", mask.float())
        self.linear = linear
        if linear:
            self.log_scale = nn.Parameter(torch.zeros(dim))
            self.shift = nn.Linear(dim, dim)
            nn.init.zeros_(self.shift.weight), nn.init.zeros_(self.shift.bias)
        else:
            self.scale_net, self.shift_net = mlp(dim, hidden, tanh=True), mlp(dim, hidden, tanh=False)

    def scale_and_shift(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        """log-scale s and shift t of the transformed coordinates (zero on the kept ones)."""
        free = 1 - self.mask
        if self.linear:
            s = torch.tanh(self.log_scale).expand_as(kept)
            return s * free, self.shift(kept) * free
        return self.scale_net(kept) * free, self.shift_net(kept) * free

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        kept = x * self.mask
        s, t = self.scale_and_shift(kept)
        return kept + (1 - self.mask) * (x * torch.exp(s) + t), s.sum(1)

    def inverse(self, y: Tensor) -> Tensor:
        kept = y * self.mask
        s, t = self.scale_and_shift(kept)
        return kept + (1 - self.mask) * ((y - t) * torch.exp(-s))


def coupling_masks(dim: int, n_couplings: int, seed: int) -> list[Tensor]:
    """Coupling 2k keeps a random half of the coordinates (seeded), coupling 2k + 1 keeps the other half."""
    generator = torch.Generator().manual_seed(seed)
    masks = []
    for k in range(n_couplings):
        if k % 2 == 0:
            half = torch.zeros(dim)
            half[torch.randperm(dim, generator=generator)[:dim // 2]] = 1
            masks.append(half)
        else:
            masks.append(1 - masks[-1])
    return masks


class RealNVP(nn.Module):
    """T: W+ -> W* (flattened codes [B, dim]); `forward(w)` gives w*, `inverse(w_star)` gives w back."""

    def __init__(self, dim: int, n_couplings: int = 8, hidden: int = 256, linear: bool = False, mask_seed: int = 0):
        super().__init__()
        self.couplings = nn.ModuleList(Coupling(m, hidden, linear) for m in coupling_masks(dim, n_couplings, mask_seed))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward_and_log_det(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """(T(w), log|det dT/dw|) for codes w [B, dim]."""
        x, log_det = (w - self.mean) / self.std, w.new_zeros(len(w))
        for coupling in self.couplings:
            x, part = coupling(x)
            log_det = log_det + part
        return x * self.std + self.mean, log_det

    def forward(self, w: Tensor) -> Tensor:
        return self.forward_and_log_det(w)[0]

    def inverse(self, w_star: Tensor) -> Tensor:
        """T^-1(w*), exact up to float rounding."""
        x = (w_star - self.mean) / self.std
        for coupling in reversed(self.couplings):
            x = coupling.inverse(x)
        return x * self.std + self.mean


def build_flow(cfg: FlowConfig) -> RealNVP:
    """The RealNVP of a config."""
    return RealNVP(cfg.dim, cfg.n_couplings, cfg.hidden, cfg.linear, cfg.mask_seed)


# ----------------------------------------------------------------------------------------------------------------
# Eq. 1-3


def signed_distances(classifiers: LinearClassifiers, w: Tensor, attributes: Tensor) -> Tensor:
    """r [B, K]: distance of each code to each hyperplane, positive on its label's side (in the codes' units)."""
    d, b = classifiers.hyperplanes()
    return (2 * attributes.float() - 1) * (w @ d.T + b) / d.norm(dim=1)


def attribute_loss(classifiers: LinearClassifiers, w_star: Tensor, attributes: Tensor) -> Tensor:
    """Eq. 1: sum over attributes of the BCE of the frozen classifiers on T(w), mean over the batch."""
    logits = classifiers(w_star)
    return F.binary_cross_entropy_with_logits(logits, attributes.float(), reduction="none").sum(1).mean()


def margin_loss(classifiers: LinearClassifiers, w_star: Tensor, attributes: Tensor, margins: Tensor) -> Tensor:
    """Eq. 2, hinged (see the module doc): sum_i max(0, M_i - r_i), mean over the batch."""
    return F.relu(margins - signed_distances(classifiers, w_star, attributes)).sum(1).mean()


def preservation_loss(flow: RealNVP, classifiers: LinearClassifiers, w: Tensor, w_star: Tensor, attributes: Tensor,
                      j: int, step_size: float) -> Tensor:
    """Eq. 3: sum_{i != j} |C_i(w) - C_i(T^-1(T(w) + move along n_j))|, probabilities, mean over the batch."""
    d, _ = classifiers.hyperplanes()
    normal = d[j] / d[j].norm()
    towards_other_side = 1 - 2 * attributes[:, j:j + 1].float()  # +1 where the attribute is absent
    w_hat = flow.inverse(w_star + towards_other_side * step_size * normal)
    change = (torch.sigmoid(classifiers(w)) - torch.sigmoid(classifiers(w_hat))).abs()
    others = torch.ones(change.shape[1], dtype=torch.bool, device=change.device)
    others[j] = False
    return change[:, others].sum(1).mean()


def code_scales(classifiers: LinearClassifiers, codes: Tensor) -> tuple[Tensor, Tensor]:
    """Per attribute: the std of the codes' distances to its hyperplane (M_i's unit) and along its unit normal."""
    d, b = classifiers.hyperplanes()
    with torch.no_grad():
        distances = (codes @ d.T + b) / d.norm(dim=1)
        along = codes @ (d / d.norm(dim=1, keepdim=True)).T
    return distances.std(0), along.std(0)


def flow_spec(cfg: FlowConfig, classifiers: LinearClassifiers, codes: Tensor, attributes: Tensor, steps: int,
              batch_size: int, seed: int, **loop: Any) -> TrainSpec:
    """The TrainSpec "flow": T trained with L_a + lambda_lm L_lm + lambda_ap L_ap on ("code", "attributes") items.

    The classifiers are a fixed input: the caller names them in the config (`book_spec` adds their checkpoint).
    """
    if codes.shape[1] != cfg.dim:
        raise ValueError(f"codes of {codes.shape[1]} dimensions; FlowConfig.dim is {cfg.dim}")
    classifiers = copy.deepcopy(classifiers).cpu().eval().requires_grad_(False)  # the caller's stay where they are
    distance_std, along_std = code_scales(classifiers, codes)
    margins = cfg.margin * distance_std
    mean, std = codes.mean(0), codes.std(0).clamp_min(1e-6)

    def make() -> RealNVP:
        flow = build_flow(cfg)
        flow.mean.copy_(mean)
        flow.std.copy_(std)
        return flow

    def loss(nets, batch, step):
        flow, w, y = nets["flow"], batch["code"].float(), batch["attributes"]
        C = classifiers.to(w.device)
        w_star = flow(w)
        l_a = attribute_loss(C, w_star, y)
        l_lm = margin_loss(C, w_star, y, margins.to(w.device))
        j = int(torch.randint(y.shape[1], (1,), generator=torch.Generator().manual_seed(step_seed(seed, step))))
        l_ap = preservation_loss(flow, C, w, w_star, y, j, cfg.edit_step * float(along_std[j]))
        total = l_a + cfg.lambda_lm * l_lm + cfg.lambda_ap * l_ap
        return total, {"l_a": l_a.detach(), "l_lm": l_lm.detach(), "l_ap": l_ap.detach()}

    return single_network_spec("flow", "flow", make, loss, cfg.lr, {"model": dataclasses.asdict(cfg)}, steps,
                               batch_size, seed, InMemory({"code": codes, "attributes": attributes}),
                               precision="fp32", channels_last=False, **loop)


EVALUATED_NETS = ("flow",)


def book_spec(row: Any, split: Mapping[str, Tensor], seed: int, classifiers: Any,
              config: FlowConfig | None = None) -> TrainSpec:
    """The book's T on the split's "code" and "attributes", with the trained classifiers (`helpers.train.Trained`)."""
    codes = split["code"]
    cfg = config or FlowConfig(dim=codes.shape[1], hidden=row.width, **row.model)
    if row.lr is not None:
        cfg = dataclasses.replace(cfg, lr=row.lr)
    spec = flow_spec(cfg, classifiers.nets["classifier"], codes, split["attributes"], steps=row.steps,
                     batch_size=row.batch_size, seed=seed)
    spec.config = {**spec.config, "classifier": classifiers.path.name}
    return spec


__all__ = ["FlowConfig", "Coupling", "coupling_masks", "RealNVP", "build_flow", "signed_distances", "attribute_loss", "margin_loss",
           "preservation_loss", "code_scales", "flow_spec", "EVALUATED_NETS", "book_spec"]
