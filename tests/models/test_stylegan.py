"""helpers.models.stylegan: shapes and num_ws, the mapping's lr multiplier, w_avg and truncation, W+ broadcast and
style mixing, noise modes, Eq. 1 of paper 004 on Gaussians with known correlation, G EMA and a short training run."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from helpers.data.memory import InMemory
from helpers.models import stylegan as sg
from helpers.models.layers import res_down_block_reference
from helpers.train import train


def tiny(**changes) -> sg.StyleGANConfig:
    return sg.scaled_config(16, 16, 4, **changes)


@pytest.mark.parametrize("resolution, num_ws", [(16, 6), (32, 8), (64, 10), (256, 14)])
def test_num_ws_and_image_shape(resolution, num_ws):
    cfg = sg.scaled_config(resolution, 8, 4)
    assert cfg.num_ws == num_ws
    if resolution <= 64:
        nets = sg.build(cfg)
        image = nets["G"](torch.randn(4, 8))
        assert image.shape == (4, 3, resolution, resolution)
        assert nets["D"](image).shape == (4,)


@pytest.mark.parametrize("pool_first", [False, True])
def test_discriminator_down_blocks_follow_the_config(pool_first):
    D = sg.build(tiny(pool_first=pool_first))["D"]
    assert [b.pool_first for b in D.blocks] == [pool_first] * len(D.blocks)
    x = torch.randn(2, D.blocks[0].conv1.weight.shape[1], 16, 16)
    with torch.no_grad():
        assert torch.allclose(D.blocks[0](x), res_down_block_reference(D.blocks[0], x), atol=1e-5)


def test_paper_config_is_stylegan2_at_256_px():
    cfg = sg.paper_config()
    assert (cfg.resolution, cfg.num_ws, cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr_mul, cfg.w_avg_beta) == \
        (256, 14, 512, 8, 0.01, 0.995)
    assert [cfg.channels(r) for r in (4, 32, 64, 256)] == [512, 512, 256, 64]


def test_config_validation_names_the_parameter():
    with pytest.raises(ValueError, match="resolution=48"):
        sg.StyleGANConfig(resolution=48)
    with pytest.raises(ValueError, match="decorrelation_samples"):
        sg.StyleGANConfig(w_dim=512, decorrelation=1.0, decorrelation_samples=512)
    with pytest.raises(ValueError, match="style_mixing"):
        tiny(style_mixing=1.5)


def test_mapping_normalises_z_and_uses_the_lr_multiplier():
    G = sg.Generator(tiny())
    z = torch.randn(3, 16)
    assert torch.allclose(G.mapping(z), G.mapping(z * 7.0), atol=1e-5)  # z is normalised to unit second moment
    layer = G.mapping_network.layers[0]
    assert layer.lr_mul == 0.01 and layer.scale == pytest.approx(0.01 / 4)


def test_w_avg_moves_only_when_asked_and_truncation_lerps_toward_it():
    G = sg.Generator(tiny())
    z = torch.randn(64, 16)
    G.mapping(z)
    assert torch.equal(G.w_avg, torch.zeros(16))
    w = G.mapping(z, update_w_avg=True)
    assert torch.allclose(G.w_avg, 0.005 * w.mean(0), atol=1e-6)  # lerp from 0 with 1 - 0.995
    assert torch.allclose(G.mapping(z, truncation_psi=0.0), G.w_avg.expand(64, -1))
    assert torch.allclose(G.mapping(z, truncation_psi=0.5), G.w_avg + 0.5 * (w - G.w_avg), atol=1e-6)


def test_w_plus_broadcast_equals_w_and_each_layer_reads_its_own_w():
    G = sg.Generator(tiny()).eval()
    w = G.mapping(torch.randn(2, 16))
    ws = G.broadcast(w)
    assert ws.shape == (2, G.num_ws, 16)
    image = G.synthesis(ws, noise_mode="const")
    assert torch.allclose(image, G.synthesis(ws.clone(), noise_mode="const"))
    for layer in range(G.num_ws):  # changing one layer's w changes the image
        changed = ws.clone()
        changed[:, layer] = G.mapping(torch.randn(2, 16))
        assert not torch.allclose(G.synthesis(changed, noise_mode="const"), image)
    with pytest.raises(ValueError, match="num_ws"):
        G.synthesis(ws[:, :3])


def test_style_mixing_takes_the_layers_after_a_cutoff_from_a_second_w():
    G = sg.Generator(tiny())
    torch.manual_seed(0)
    mixed = sg.sample_ws(G, 5, mixing=1.0, device=torch.device("cpu"))
    first = mixed[:, 0]
    same = (mixed - first[:, None]).abs().amax(dim=(0, 2)) < 1e-6
    cutoff = int((~same).nonzero()[0])
    assert 1 <= cutoff < G.num_ws and same[:cutoff].all() and not same[cutoff:].any()
    assert torch.allclose(mixed[:, cutoff:], mixed[:, cutoff:cutoff + 1].expand(-1, G.num_ws - cutoff, -1))
    plain = sg.sample_ws(G, 5, mixing=0.0, device=torch.device("cpu"))
    assert torch.allclose(plain, plain[:, :1].expand_as(plain))


def test_noise_modes():
    G = sg.Generator(tiny())
    for block in G.synthesis.blocks:
        block.conv1.noise.strength.data.fill_(0.5)
    ws = G.broadcast(G.mapping(torch.randn(2, 16)))
    assert torch.equal(G.synthesis(ws, "const"), G.synthesis(ws, "const"))
    assert torch.equal(G.synthesis(ws, "none"), G.synthesis(ws, "none"))
    assert not torch.allclose(G.synthesis(ws, "random"), G.synthesis(ws, "random"))
    assert not torch.allclose(G.synthesis(ws, "const"), G.synthesis(ws, "none"))
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, "fixed")


def test_generate_is_mapping_then_const_noise_synthesis_of_seeded_z():
    torch.manual_seed(0)
    G = sg.Generator(tiny()).eval()
    for block in G.synthesis.blocks:
        block.conv1.noise.strength.data.fill_(0.5)
    w, images = sg.generate(G, 3, seed=7)
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(w, G.mapping(z))
    assert torch.allclose(images, G.synthesis(G.broadcast(w), "const").clamp(0, 1))
    assert images.shape == (3, 3, 16, 16) and not w.requires_grad
    w_again, images_again = sg.generate(G, 3, seed=7)
    assert torch.equal(w, w_again) and torch.equal(images, images_again)
    after = torch.rand(2)
    torch.manual_seed(7)
    assert torch.equal(after, torch.rand(2))  # the global RNG was seeded with the same seed
    assert not torch.allclose(sg.generate(G, 3, seed=8)[0], w)


def _gaussians(n: int, cov: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, cov.shape[0], generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).t()


def test_decorrelation_loss_known_answers_on_gaussians():
    n = 200_000
    for rho in (0.0, 0.3, 0.6):
        cov = torch.tensor([[1.0, rho, 0.0], [rho, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        loss = sg.decorrelation_loss(_gaussians(n, cov)).item()
        assert loss == pytest.approx(-2 * math.log(1 - rho), abs=0.02)  # the pairs (0, 1) and (1, 0)
    # unequal variances (1, 4), uncorrelated: ratios to the mean 0.4 and 1.6
    loss = sg.decorrelation_loss(_gaussians(n, torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64)))).item()
    assert loss == pytest.approx(0.36 + 0.36, abs=0.02)


def test_decorrelation_loss_is_scale_invariant_and_grows_with_correlation():
    w = _gaussians(4096, torch.eye(8, dtype=torch.float64) * 0.5 + 0.5)  # every pair rho = 0.5
    base = sg.decorrelation_loss(w)
    assert sg.decorrelation_loss(w * 100.0).item() == pytest.approx(base.item(), rel=1e-6)
    losses = [sg.decorrelation_loss(_gaussians(4096, torch.eye(8, dtype=torch.float64) * (1 - r) + r)).item()
              for r in (0.0, 0.2, 0.4, 0.8)]
    assert losses == sorted(losses) and losses[0] < 1.0 < losses[-1]
    stats = sg.decorrelation_statistics(w)
    assert stats["mean_abs_correlation"] == pytest.approx(0.5, abs=0.03) and stats["variance_spread"] < 0.1
    with pytest.raises(ValueError, match="N >= 2"):
        sg.decorrelation_loss(torch.randn(1, 4))


def test_decorrelation_reaches_only_the_mapping_network():
    cfg = tiny(decorrelation=1.0, decorrelation_samples=64)
    nets = sg.build(cfg)
    _, _, g_loss, _ = sg.losses(cfg)
    for p in nets["D"].parameters():
        p.requires_grad_(False)
    G = nets["G"]
    w = G.mapping(torch.randn(cfg.decorrelation_samples, cfg.z_dim))
    sg.decorrelation_loss(w).backward()
    assert all(p.grad is not None for p in G.mapping_network.parameters())
    assert all(p.grad is None for p in G.synthesis.parameters())
    loss, logs = g_loss(nets, {"image": torch.rand(4, 3, 16, 16)}, 0)
    assert "decorr" in logs and torch.isfinite(loss)


def test_training_runs_all_phases_keeps_an_ema_generator_and_is_deterministic(tmp_path):
    cfg = tiny(pl_every=2, r1_every=2)
    data = InMemory({"image": torch.rand(8, 3, 16, 16)})
    from helpers.train import EMA

    def run(name):
        spec = sg.training_spec(cfg, data, steps=4, batch_size=4, seed=0, precision="fp32",
                                ema=EMA(sg.EVALUATED_NETS, half_life=100.0), data_id={"name": "noise"})
        return train(spec, cache_dir=tmp_path / name, progress=False)

    json.dumps(sg.training_spec(cfg, data, steps=1, batch_size=4, seed=0).config)
    first = run("a")
    assert {"d", "r1", "g", "pl"} <= set(first.history)
    assert all(math.isfinite(v) for v in first.history["d"] + first.history["g"])
    assert first.nets["G"].w_avg.abs().sum() > 0 and first.nets["G"].pl_mean > 0
    saved = torch.load(first.path, weights_only=True)["state"]  # the run returns the EMA generator, not the raw one
    returned = first.nets["G"].state_dict()
    assert all(torch.equal(returned[k], v) for k, v in saved["ema"]["G"].items())
    assert any(not torch.equal(saved["nets"]["G"][k], v) for k, v in saved["ema"]["G"].items())
    second = run("b")
    for a, b in zip(first.nets["G"].parameters(), second.nets["G"].parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="minibatch-std"):
        sg.training_spec(cfg, data, steps=1, batch_size=6, seed=0)


def test_book_config_scales_r1_with_resolution_and_batch():
    from helpers.config import Family
    cfg = sg.book_config(Family(64, 128, 100, 32))
    assert cfg.r1_gamma == pytest.approx(0.0256) and cfg.w_dim == 128 and cfg.num_ws == 10
    assert sg.book_config(Family(256, 512, 100, 64)) == dataclasses.replace(sg.paper_config())


def test_scaled_config_takes_any_field_as_a_change():
    cfg = sg.scaled_config(128, 512, 32, channel_base=16384, mapping_layers=8)
    assert (cfg.channel_base, cfg.mapping_layers, cfg.channels(32), cfg.channels(128)) == (16384, 8, 512, 128)
