"""helpers.models.inversion: encoder shapes and pyramid groups, a short encoder training, the projector's schedule,
noise regulariser, and recovery of a known code of a tiny generator."""
from __future__ import annotations

import math

import pytest
import torch

from helpers.data.memory import InMemory
from helpers.models import inversion as inv
from helpers.models import stylegan as sg
from helpers.train import train


def tiny_generator(resolution: int = 16) -> sg.Generator:
    torch.manual_seed(0)
    return sg.Generator(sg.scaled_config(resolution, 16, 4)).eval()


class PixelFeatures(torch.nn.Module):
    def features(self, x):
        return x.flatten(1)


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_encoder_gives_one_w_per_layer_around_w_avg(resolution):
    G = tiny_generator(resolution)
    cfg = inv.config_for(G, width=8)
    sizes = [end - start for _, start, end in cfg.groups()]
    assert sum(sizes) == G.num_ws and sizes[:2] == [3, 3 if resolution == 16 else 4]
    E = inv.Encoder(cfg)
    E.w_avg.fill_(2.0)
    ws = E(torch.rand(3, 3, resolution, resolution))
    assert ws.shape == (3, G.num_ws, 16)
    assert G.synthesis(ws).shape == (3, 3, resolution, resolution)
    with pytest.raises(ValueError, match="num_ws"):
        inv.EncoderConfig(resolution=64, num_ws=12)


def test_encoder_training_lowers_the_latent_error(tmp_path):
    G = tiny_generator()
    cfg = inv.config_for(G, width=8, lr=3e-3)
    data = InMemory({"image": G(torch.randn(32, 16), noise_mode="const").detach()})
    spec = inv.training_spec(cfg, G, PixelFeatures(), data, steps=40, batch_size=8, seed=0, precision="fp32",
                             data_id={"name": "tiny"})
    result = train(spec, cache_dir=tmp_path, progress=False)
    latent = result.history["latent"]
    assert all(math.isfinite(v) for v in latent) and sum(latent[-5:]) < sum(latent[:5])
    assert all(p.requires_grad for p in G.parameters())  # the caller's G is copied and frozen, not changed


def test_default_pixel_weight_is_psps_l2_on_images_in_minus_one_to_one():
    G = tiny_generator()
    cfg = inv.config_for(G, width=8, lambda_latent=0.0, lambda_features=0.0, lambda_w_norm=0.0, real_share=1.0)
    assert cfg.lambda_pixel == 4.0
    E = inv.Encoder(cfg)
    E.w_avg.copy_(G.w_avg)
    real = torch.rand(4, 3, 16, 16)
    loss, logs = inv.losses(cfg, G, PixelFeatures())({"encoder": E}, {"image": real}, 0)
    with torch.no_grad():
        out = G.synthesis(E(real), noise_mode="const")
    psp_l2 = ((2 * out - 1) - (2 * real - 1)).square().mean()  # pSp's MSE of images mapped to [-1, 1], weight 1
    assert loss.item() == pytest.approx(psp_l2.item(), rel=1e-5)
    assert logs["pixel"].item() == pytest.approx(psp_l2.item() / 4, rel=1e-5)


def test_projector_schedule_and_noise_regulariser():
    cfg = inv.ProjectorConfig(steps=100)
    assert inv.learning_rate(cfg, 0.0) == 0.0
    assert inv.learning_rate(cfg, 0.5) == pytest.approx(0.1)
    assert inv.learning_rate(cfg, 0.99) < 0.01
    smooth = torch.ones(1, 16, 16)  # fully correlated at shift 1: (mean of 1)^2 * 2 directions * 2 scales (16, 8)
    assert inv.noise_regularization([smooth]).item() == pytest.approx(4.0)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 2.0 - 1.0
    assert inv.noise_regularization([checker[None]]).item() == pytest.approx(2.0)  # -1 at 16 px, 0 once pooled


def test_projector_recovers_a_known_code_of_a_tiny_generator():
    G = tiny_generator()
    torch.manual_seed(1)
    w_true = G.mapping(torch.randn(2, 16))
    target = G.synthesis(G.broadcast(w_true), noise_mode="const").detach()
    cfg = inv.ProjectorConfig(steps=150, w_avg_samples=2000, noise_regularize=0.0, lr=0.05)
    ws, logs = inv.project(G, target, PixelFeatures().features, cfg, space="w")
    assert ws.shape == (2, G.num_ws, 16)
    start = G.synthesis(G.broadcast(G.w_avg.expand(2, -1)), noise_mode="const")
    before = (start - target).square().mean().item()
    after = (G.synthesis(ws, noise_mode="const") - target).square().mean().item()
    assert after < 0.1 * before
    w_mean, _ = inv.w_spread(G, 2000)
    assert (ws[:, 0] - w_true).norm(dim=1).mean() < (w_mean - w_true).norm(dim=1).mean()
    plus, _ = inv.project(G, target, PixelFeatures().features, inv.ProjectorConfig(steps=3, w_avg_samples=100),
                          space="w+", start=ws)
    assert plus.shape == ws.shape
    with pytest.raises(ValueError, match="space"):
        inv.project(G, target, PixelFeatures().features, cfg, space="z")


class FirstPixels(torch.nn.Module):
    """A stand-in encoder: the first 6 pixel values of each image as a [B, 2, 3] "W+" code."""

    def forward(self, x):
        return x.flatten(1)[:, :6].reshape(-1, 2, 3)


def test_labelled_codes_split_unseen_faces_in_order_with_their_attributes():
    from helpers.data.synthfaces import SynthFaces

    out = inv.labelled_codes(FirstPixels(), 16, {"train": 5, "test": 3}, first=7, seed=1)
    assert out["train"]["code"].shape == (5, 6) and out["test"]["code"].shape == (3, 6)
    faces = SynthFaces(resolution=16, length=15, seed=1)
    for name, indices in (("train", range(7, 12)), ("test", range(12, 15))):
        batch = faces.batch(list(indices))
        torch.testing.assert_close(out[name]["attributes"], batch["attributes"])
        torch.testing.assert_close(out[name]["code"], batch["image"].flatten(1)[:, :6])
    with pytest.raises(ValueError, match="count"):
        inv.labelled_codes(FirstPixels(), 16, {"train": 0}, first=0, seed=0)
