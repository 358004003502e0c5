"""GAN losses and regularisers shared by the book's adversarial models (SAE, Latents2Segments, SIS, StyleGAN2).

As StyleGAN2 trains them (Karras et al., CVPR 2020; NVlabs' stylegan2-ada-pytorch `training/loss.py`):

- the non-saturating logistic loss: D minimises softplus(D(fake)) + softplus(-D(real)), G minimises softplus(-D(fake));
- R1 (Mescheder et al. 2018): gamma / 2 * E ||grad_x D(x)||^2 on real images;
- path-length regularisation (StyleGAN2 Sec. 3.2, Eq. 4): (||J_w^T y|| - a)^2 with y ~ N(0, I) / sqrt(H W) and a the
  running mean of the length (decay 0.01);
- lazy regularisation (Sec. 3.1): a regulariser runs every k steps with its loss multiplied by k, and the network's
  Adam uses lr * k / (k + 1) and betas ** (k / (k + 1)), so that the regularised and plain steps together move the
  weights as one plain step would;
- stylegan2-ada's R1 weight for its `auto` configuration: gamma = 0.0002 * resolution^2 / batch.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def non_saturating(logits: Tensor, real: bool) -> Tensor:
    """Non-saturating GAN loss: softplus(-D) for reals (and for G's fakes), softplus(D) for fakes (D's view)."""
    return F.softplus(-logits.float() if real else logits.float()).mean()


def r1_penalty(logits: Tensor, inputs: Tensor) -> Tensor:
    """R1: E ||grad_x D(x)||^2 over the real inputs (sum over pixels, mean over items)."""
    (grad,) = torch.autograd.grad(logits.float().sum(), inputs, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def path_lengths(images: Tensor, ws: Tensor) -> Tensor:
    """||J_w^T y|| per item (StyleGAN2 Eq. 4): y ~ N(0, I) / sqrt(H W), the gradient of sum(images * y) w.r.t. `ws`
    [B, num_ws, w_dim], summed over w_dim and averaged over the ws (as stylegan2-ada), square-rooted: [B]."""
    h, w = images.shape[2:]
    y = torch.randn_like(images, dtype=torch.float32) / (h * w) ** 0.5
    (grad,) = torch.autograd.grad((images.float() * y).sum(), ws, create_graph=True)
    return grad.float().pow(2).sum(2).mean(1).sqrt()


def path_length_penalty(lengths: Tensor, pl_mean: Tensor, decay: float = 0.01) -> Tensor:
    """mean (length - a)^2, with the running mean a (a buffer, updated in place: a <- a + decay (mean length - a))."""
    with torch.no_grad():
        pl_mean.lerp_(lengths.mean().to(pl_mean.dtype), decay)
    return (lengths - pl_mean).pow(2).mean()


def lazy_adam(params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], every: int | None,
              eps: float = 1e-8) -> torch.optim.Adam:
    """Adam for a network whose regulariser runs every `every` steps: lr * c and betas ** c with c = every / (every + 1)
    (StyleGAN2 Sec. 3.1); `every` None (no lazy regulariser) keeps lr and betas."""
    if every is not None and every < 1:
        raise ValueError(f"every={every}: the regularisation interval must be >= 1 (or None)")
    c = 1.0 if every is None else every / (every + 1)
    return torch.optim.Adam(params, lr=lr * c, betas=(betas[0] ** c, betas[1] ** c), eps=eps)


def ada_r1_gamma(resolution: int, batch_size: int) -> float:
    """stylegan2-ada's R1 weight for its `auto` configuration: 0.0002 * resolution^2 / batch."""
    return 0.0002 * resolution ** 2 / batch_size


__all__ = ["non_saturating", "r1_penalty", "path_lengths", "path_length_penalty", "lazy_adam", "ada_r1_gamma"]
