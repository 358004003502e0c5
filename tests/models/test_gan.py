"""helpers.models.gan: known answers of the GAN losses, R1, path length, lazy-regularisation correction and the R1
weight of stylegan2-ada."""
from __future__ import annotations

import math

import pytest
import torch

from helpers.models import gan


def test_non_saturating_known_answers():
    zero = torch.zeros(3)
    assert gan.non_saturating(zero, real=True).item() == pytest.approx(math.log(2))
    logits = torch.tensor([2.0, -1.0])
    assert gan.non_saturating(logits, real=True).item() == pytest.approx(
        (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 2)
    assert gan.non_saturating(logits, real=False).item() == pytest.approx(
        (math.log1p(math.exp(2.0)) + math.log1p(math.exp(-1.0))) / 2)


def test_r1_penalty_known_answer():
    x = torch.randn(3, 4, requires_grad=True)
    assert gan.r1_penalty((2 * x).sum(1), x).item() == pytest.approx(16.0)  # ||grad||^2 = 4 * 2^2


def test_path_lengths_of_a_linear_generator_and_the_running_mean():
    torch.manual_seed(0)
    a = torch.randn(3 * 8 * 8, 6)  # image = A w, the same w broadcast to 2 layers (mean over ws)
    ws = torch.randn(512, 2, 6, requires_grad=True)
    images = (ws.sum(1) @ a.t()).view(512, 3, 8, 8)
    lengths = gan.path_lengths(images, ws)
    # E ||A^T y||^2 with y ~ N(0, I / 64) = ||A||_F^2 / 64 (the same for both ws: their mean is the same)
    assert lengths.pow(2).mean().item() == pytest.approx(a.pow(2).sum().item() / 64, rel=0.1)
    pl_mean = torch.zeros(())
    penalty = gan.path_length_penalty(torch.tensor([2.0, 4.0]), pl_mean, decay=0.5)
    assert pl_mean.item() == pytest.approx(1.5)  # 0 + 0.5 * (3 - 0)
    assert penalty.item() == pytest.approx(((2 - 1.5) ** 2 + (4 - 1.5) ** 2) / 2)


def test_lazy_adam_corrects_lr_and_betas():
    p = [torch.nn.Parameter(torch.zeros(2))]
    opt = gan.lazy_adam(p, 0.002, (0.0, 0.99), every=16)
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(0.002 * 16 / 17)
    assert group["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))
    plain = gan.lazy_adam(p, 0.002, (0.5, 0.99), every=None).param_groups[0]
    assert plain["lr"] == 0.002 and plain["betas"] == (0.5, 0.99)
    with pytest.raises(ValueError, match="every"):
        gan.lazy_adam(p, 0.002, (0.0, 0.99), every=0)


def test_ada_r1_gamma():
    assert gan.ada_r1_gamma(64, 32) == pytest.approx(0.0256)  # stylegan2-ada `auto` at 64 px, batch 32
    assert gan.ada_r1_gamma(256, 64) == pytest.approx(0.2048)
