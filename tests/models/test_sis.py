"""helpers.models.sis: shapes, per-class styles, locality of the generator, short training, determinism."""
from __future__ import annotations

import json

import pytest
import torch

from helpers.data.synthfaces import SynthFaces
from helpers import metrics
from helpers.models import sis
from helpers.train import train

CFG = sis.SISConfig(resolution=32, width=8, style_dim=16)


def toy_batch(b: int = 2, res: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(b, res, res, dtype=torch.long)
    labels[:, 4:28, 6:26] = 1  # skin
    labels[:, 8:12, 8:14] = 4  # eye
    labels[:, 8:12, 18:24] = 5
    labels[:, 16:22, 13:19] = 6  # nose
    labels[:, 24:27, 11:21] = 7
    image = torch.rand(b, 3, res, res, generator=g)
    return image, labels


def model(cfg=CFG, seed: int = 0):
    torch.manual_seed(seed)
    return sis.SISModel(cfg).eval()


def test_config_json_and_shapes():
    json.dumps(CFG.to_dict())
    m = model()
    image, labels = toy_batch()
    styles = sis.extract_styles(m, image, labels)
    assert styles.shape == (2, 11, 16)
    out = sis.synthesize(m, labels, styles)
    assert out.shape == (2, 3, 32, 32) and out.min() >= 0 and out.max() <= 1
    assert sis.synthesize(m, labels[0], styles[0]).shape == (3, 32, 32)  # unbatched
    assert torch.allclose(m(image, labels), out, atol=1e-6)
    assert (styles[:, 2] == 0).all()  # absent class -> zero style


def test_styles_are_per_class():
    m = model()
    image, labels = toy_batch(1)
    edited = image.clone()
    inside = (labels == 6)[:, None].expand_as(image)
    edited[inside] = torch.rand(int(inside.sum()))  # repaint the nose only
    before, after = sis.extract_styles(m, image, labels), sis.extract_styles(m, edited, labels)
    changed = (after - before).abs().amax(dim=(0, 2))
    assert changed[6] > 1e-4
    assert torch.all(changed[torch.arange(11) != 6] == 0)


@pytest.mark.parametrize("res", [32, 64])
def test_generator_is_local(res):
    cfg = sis.SISConfig(resolution=res, width=8, style_dim=16)
    m = model(cfg)
    image, labels = toy_batch(1, res)
    styles = sis.extract_styles(m, image, labels)
    edited = labels.clone()
    y0, x0, k = res // 2 - 2, res // 2 - 2, 4
    edited[:, y0:y0 + k, x0:x0 + k] = 10  # a 4x4 block of hair in the middle
    diff = (sis.synthesize(m, edited, styles) - sis.synthesize(m, labels, styles)).abs().amax(1)[0]
    r = sis.receptive_radius(cfg)
    assert r < res // 2 or res == 32  # at 64 px the bound is a fraction of the image
    window = torch.zeros(res, res, dtype=torch.bool)
    window[max(0, y0 - r):y0 + k + r, max(0, x0 - r):x0 + k + r] = True
    assert diff[window].max() > 1e-3  # the edit does change the output ...
    assert diff[~window].max() <= 1e-6 if (~window).any() else True  # ... and nothing beyond the bound
    assert metrics.change_inside_share(torch.zeros(1, 3, res, res), diff[None, None].expand(1, 3, res, res),
                                       window[None]).item() > 0.999


def test_short_training_reduces_l1_and_is_deterministic(tmp_path):
    cfg = sis.SISConfig(resolution=32, width=8, style_dim=16)
    data = SynthFaces(32, 64, seed=1)
    spec = sis.training_spec(cfg, data, steps=40, batch_size=8, seed=0, data_id={"synthfaces": 1})
    run = train(spec, cache_dir=tmp_path / "a", progress=False)
    l1 = run.history["l1"]
    assert sum(l1[-5:]) / 5 < 0.7 * sum(l1[:5]) / 5
    short = sis.training_spec(cfg, data, steps=5, batch_size=8, seed=0, data_id={"synthfaces": 1})
    a = train(short, cache_dir=tmp_path / "b", progress=False)
    b = train(short, cache_dir=tmp_path / "c", progress=False)
    for pa, pb in zip(a.nets["sis"].parameters(), b.nets["sis"].parameters()):
        assert torch.equal(pa, pb)


def test_gan_phases_run(tmp_path):
    cfg = sis.SISConfig(resolution=32, width=8, style_dim=16, use_gan=True)
    spec = sis.training_spec(cfg, SynthFaces(32, 32, seed=2), steps=3, batch_size=4, seed=0, data_id={})
    assert [p.name for p in spec.phases] == ["d", "r1", "g"] and spec.phases[1].every == 16
    run = train(spec, cache_dir=tmp_path, progress=False)
    assert {"d", "r1", "g_adv", "l1"} <= set(run.history)
