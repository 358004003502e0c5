"""helpers.models.mask_vae: shapes, ablations, deterministic decoding, losses (Eq. 1-3), editing (Eq. 4), training."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from helpers.metrics import class_frequencies, class_pixel_counts
from helpers.models import mask_vae as mv
from helpers.train import count_parameters, train

C = 5


def tiny(**overrides) -> mv.MaskVAEConfig:
    """A 32-px model with 8x8 part maps and small widths."""
    base = mv.MaskVAEConfig(num_classes=C, resolution=32, mlp_hidden=(64, 32), latent=64, lstm="bi", lstm_layers=3,
                            lstm_hidden=32, ff_hidden=64, grid=8, decoder_widths=(32, 16, 16, 8, 8))
    return dataclasses.replace(base, **overrides)


def label_maps(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Toy faces: background, a disc (class 1), two eyes (2, 3) and a mouth bar (4), jittered in place and size."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    maps = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        cx, cy, r = (torch.rand(3, generator=g) * torch.tensor([6.0, 6.0, 4.0]) + torch.tensor([13.0, 13.0, 9.0]))
        m = maps[i]
        m[(xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2] = 1
        m[((xx - cx + r / 2.5).abs() < 2) & ((yy - cy + r / 3).abs() < 1.5)] = 2
        m[((xx - cx - r / 2.5).abs() < 2) & ((yy - cy + r / 3).abs() < 1.5)] = 3
        m[((xx - cx).abs() < r / 2) & ((yy - cy - r / 2).abs() < 1.2)] = 4
    return maps


class Masks(Dataset):
    """Label maps as dict items {"parts": one-hot [C, H, W] with background, "labels": [H, W]}."""

    def __init__(self, labels: torch.Tensor):
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"parts": mv.one_hot_parts(self.labels[i], C), "labels": self.labels[i]}


def test_shapes_and_eval_uses_mu():
    cfg = tiny()
    vae = mv.MaskVAE(cfg)
    x = mv.one_hot_parts(label_maps(3), C)
    out = vae(x, sample=True)
    assert out["logits"].shape == (3, C, 32, 32)
    for key in ("mu", "logvar", "z"):
        assert out[key].shape == (3, C, 64)
    assert not torch.equal(out["z"], out["mu"])
    vae.eval()
    out = vae(x)
    assert torch.equal(out["z"], out["mu"])
    assert mv.to_labels(out["logits"]).shape == (3, 32, 32)


def test_grid16_and_upsampling_blocks():
    cfg = tiny(grid=16, latent=256)  # 16 -> 32: only the last of the 4 blocks upsamples
    vae = mv.MaskVAE(cfg)
    assert [b.upsample for b in vae.decoder.blocks] == [False, False, False, True]
    assert vae(mv.one_hot_parts(label_maps(2), C))["logits"].shape == (2, C, 32, 32)
    assert [b.upsample for b in mv.MaskVAE(mv.scaled_config(11, 64, 8)).decoder.blocks] == [False, False, True, True]


def test_config_validation_and_json():
    with pytest.raises(ValueError, match="grid"):
        tiny(latent=60)
    with pytest.raises(ValueError, match="resolution"):
        tiny(resolution=48)
    with pytest.raises(ValueError, match="lstm"):
        tiny(lstm="gru")
    json.dumps(dataclasses.asdict(mv.paper_config(19)))
    s = mv.scaled_config(19, 256, 128)
    assert s.mlp_hidden == (1024, 512) and s.decoder_widths == (512, 256, 128, 64, 32)
    assert dataclasses.replace(s, num_classes=19) == mv.paper_config(19)


@pytest.mark.parametrize("name", list(mv.ABLATIONS))
def test_each_ablation_builds_and_runs(name):
    cfg = mv.ablation(tiny(), name)
    vae = mv.MaskVAE(cfg)
    x = mv.one_hot_parts(label_maps(2), C)
    out = vae(x, sample=True)
    assert out["logits"].shape == (2, C, 32, 32)
    loss, logs = mv.mask_vae_loss(out, label_maps(2), torch.ones(C), cfg)
    loss.backward()
    assert math.isfinite(logs["loss"])
    assert (vae.relation.lstm is None) == (cfg.lstm == "none")


def test_ablation_table():
    base = mv.paper_config(19)
    assert mv.ablation(base, "full") == base
    row1 = mv.ablation(base, "w/o LSTM block")
    assert row1.lstm == "none" and not row1.weighted_ce
    assert mv.ablation(base, "1 LSTM w/o bidir w/o weighted CE").lstm_layers == 1
    assert mv.ablation(base, "3 LSTMs w/o bidir").weighted_ce
    assert mv.ablation(base, "3 LSTMs w/o weighted CE").lstm == "bi"
    with pytest.raises(ValueError, match="unknown ablation"):
        mv.ablation(base, "nope")


def test_decode_is_deterministic():
    vae = mv.MaskVAE(tiny())
    z = torch.randn(2, C, 64)
    vae.train()  # even in training mode: zero LSTM states, no dropout
    assert torch.equal(vae.decode(z), vae.decode(z))


def test_weighted_ce_known_answers():
    logits = torch.randn(2, C, 4, 4)
    labels = torch.randint(0, C, (2, 4, 4))
    plain = F.cross_entropy(logits, labels) * 16  # Eq. 2 sums over the 4 x 4 pixels, mean over the batch
    assert torch.allclose(mv.weighted_cross_entropy(logits, labels, torch.ones(C)), plain)
    assert torch.allclose(mv.weighted_cross_entropy(logits, labels, None), plain)
    # 2 classes, 2x2 map, logits 0 everywhere => CE = log 2 at each pixel; labels [[0,1],[1,1]], w = (0.5, 2)
    lg = torch.zeros(1, 2, 2, 2)
    lb = torch.tensor([[[0, 1], [1, 1]]])
    expected = (0.5 + 2 + 2 + 2) * math.log(2)
    assert mv.weighted_cross_entropy(lg, lb, torch.tensor([0.5, 2.0])).item() == pytest.approx(expected)
    # bf16 logits: the loss is still float32
    assert mv.weighted_cross_entropy(lg.bfloat16(), lb, torch.tensor([0.5, 2.0])).dtype == torch.float32


def test_kl_known_answers():
    zeros = torch.zeros(3, C, 64)
    assert mv.kl_divergence(zeros, zeros).item() == 0.0
    assert mv.kl_divergence(torch.ones(3, C, 64), zeros).item() == pytest.approx(0.5 * 64 * C)


def test_interpolation_eq4():
    src, tgt = torch.randn(2, C, 64), torch.randn(2, C, 64)
    assert torch.equal(mv.interpolate_part(src, tgt, 2, 0.0), src)
    one = mv.interpolate_part(src, tgt, 2, 1.0)
    assert torch.equal(one[:, 2], tgt[:, 2])
    others = [c for c in range(C) if c != 2]
    assert torch.equal(one[:, others], src[:, others])
    half = mv.interpolate_part(src, tgt, 2, 0.25)
    assert torch.allclose(half[:, 2], 0.25 * tgt[:, 2] + 0.75 * src[:, 2])


@pytest.mark.parametrize("edit", [mv.generate_part, mv.perturb_part])
def test_generate_and_perturb_change_one_part(edit):
    mu = torch.randn(2, C, 64)
    a = edit(mu, 3, torch.Generator().manual_seed(1))
    b = edit(mu, 3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    others = [c for c in range(C) if c != 3]
    assert torch.equal(a[:, others], mu[:, others])
    assert not torch.allclose(a[:, 3], mu[:, 3])
    assert torch.equal(mu, mu.clone())  # input untouched
    vae = mv.MaskVAE(tiny()).eval()
    assert vae.decode(a).shape == (2, C, 32, 32)


def test_training_reduces_loss():
    labels = label_maps(64)
    weights = mv.class_weights(class_frequencies(class_pixel_counts([labels], C)))
    cfg = tiny()
    spec = mv.training_spec(cfg, Masks(labels), weights, steps=30, batch_size=16, seed=0,
                            data_id={"name": "toy", "n": 64}, lr=5e-3)
    assert spec.data_id == {"name": "toy", "n": 64} and len(spec.config["class_weights"]) == C
    json.dumps(spec.config)
    result = train(spec, progress=False)
    losses = result.history["loss"]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert not result.nets["vae"].training


def test_training_spec_needs_weights():
    with pytest.raises(ValueError, match="class_weights"):
        mv.training_spec(tiny(), Masks(label_maps(4)), None, steps=1, batch_size=2, seed=0)


def test_paper_parameter_count():
    vae = mv.MaskVAE(mv.paper_config(19))
    n = count_parameters(vae)
    print(f"paper_config(19): {n:,} parameters")
    assert n == 75_562_643
    assert count_parameters(vae.encoder) == 67_897_600  # 65536 -> 1024 -> 512 -> 256, heads 256 -> 256


def test_scaled_config_grid_scales_the_part_code_and_relation_block():
    s = mv.scaled_config(11, 64, 32, grid=8)
    assert (s.latent, s.lstm_hidden, s.ff_hidden, s.grid) == (64, 64, 256, 8)
    assert [b.upsample for b in mv.MaskVAE(s).decoder.blocks] == [False, True, True, True]
    assert mv.MaskVAE(s)(mv.one_hot_parts(label_maps(2, size=64), 11))["logits"].shape == (2, 11, 64, 64)


def test_class_weights_eq1_and_inverse_sqrt_on_known_frequencies():
    frequencies = torch.tensor([12 / 16, 3 / 16, 1 / 16, 0.0])
    assert torch.allclose(mv.class_weights(frequencies), torch.tensor([1 - 12 / 16, 1 - 3 / 16, 1 - 1 / 16, 1.0]))
    balanced = mv.class_weights(frequencies, "inverse_sqrt")
    raw = torch.tensor([(16 / 12) ** 0.5, (16 / 3) ** 0.5, 4.0])
    assert torch.allclose(balanced[:3], raw / raw.mean()) and balanced[3] == 0  # mean 1 over present classes
    assert balanced[2] / balanced[0] == pytest.approx(12 ** 0.5)  # a 12x rarer class weighs sqrt(12)x more
    with pytest.raises(ValueError, match="rule='inverse'"):
        mv.class_weights(frequencies, "inverse")


class StripModel(torch.nn.Module):
    """A stand-in mask VAE with known paths: part c's code is its pixel count, and decoding draws that many pixels
    from the left of row c - 1 (counts above `fold` are drawn as 2 * fold - count: a path that turns back)."""

    def __init__(self, num_classes: int = 3, size: int = 16, fold: int | None = None):
        super().__init__()
        self.cfg = mv.MaskVAEConfig(num_classes=num_classes, resolution=size)
        self.size, self.fold = size, fold
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # a device to read

    def encode(self, parts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = parts.flatten(2).sum(-1, keepdim=True)  # [B, C, 1]
        return mu, torch.zeros_like(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        counts = z[..., 0].round().long()
        if self.fold is not None:
            counts = torch.where(counts > self.fold, 2 * self.fold - counts, counts)
        return F.one_hot(strips(counts, self.size), self.cfg.num_classes).permute(0, 3, 1, 2).float()


def strips(counts: torch.Tensor, size: int = 16) -> torch.Tensor:
    """Label maps [B, size, size] with counts[b, c] pixels of part c >= 1 from the left of row c - 1."""
    labels = torch.zeros(counts.shape[0], size, size, dtype=torch.long)
    cols = torch.arange(size)
    for part in range(1, counts.shape[1]):
        labels[:, part - 1] = torch.where(cols[None] < counts[:, part, None], part, 0)
    return labels


def test_interpolation_monotonicity_known_paths():
    sources = strips(torch.tensor([[0, 4, 5], [0, 4, 5]]))  # part 1: 4 px -> 12 px; part 2: 5 px at both ends
    targets = strips(torch.tensor([[0, 12, 5], [0, 12, 5]]))
    alphas = torch.linspace(0, 1, 5)  # codes 4, 6, 8, 10, 12
    rho = mv.interpolation_monotonicity(StripModel(), sources, targets, alphas)
    assert (rho["area"], rho["centroid"], rho["mean"]) == pytest.approx((1.0, 1.0, 1.0))
    assert (rho["paths_area"], rho["paths_centroid"], rho["skipped"]) == (2, 2, 4)  # part 2 carries no direction
    # a path that turns back: areas 4, 6, 7, 8, 6 for codes 4 ... 10 folded at 8 -> rho of ranks (1, 2.5, 4, 5, 2.5)
    targets = strips(torch.tensor([[0, 10, 5], [0, 10, 5]]))
    rho = mv.interpolation_monotonicity(StripModel(fold=8), sources, targets, alphas)
    assert rho["area"] == pytest.approx(5.5 / math.sqrt(95))
