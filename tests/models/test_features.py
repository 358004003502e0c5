"""helpers.models.features: shapes, configuration errors, a JSON-able spec and a short training run that learns."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from helpers.data.memory import InMemory
from helpers.data.synthfaces import SynthFaces
from helpers.models import features as ft
from helpers.train import count_parameters, train


def test_shapes_and_feature_dimension():
    cfg = ft.scaled_config(32, 2, num_attributes=5)
    model = ft.FeatureNet(cfg).eval()
    x = torch.rand(3, 3, 32, 32)
    assert model.features(x).shape == (3, 16) == (3, cfg.feature_dim)
    assert model(x).shape == (3, 5)
    assert torch.allclose(model(x), model.head(model.features(x)))
    # stem 3->2, stages 2->2, 2->4, 4->8, 8->16 (two 3x3 convs each, GroupNorm affine), linear 16->5
    convs = [(3, 2), (2, 2), (2, 2), (2, 4), (4, 4), (4, 8), (8, 8), (8, 16), (16, 16)]
    expected = sum(9 * cin * cout + cout + 2 * cout for cin, cout in convs) + 16 * 5 + 5
    assert count_parameters(model) == expected
    assert ft.scaled_config(64, 8).num_attributes == len(SynthFaces.attribute_names)


@pytest.mark.parametrize("bad, name", [(dict(resolution=40), "resolution"), (dict(width=0), "width"),
                                       (dict(num_attributes=0), "num_attributes"), (dict(lr=0.0), "lr")])
def test_bad_configs_name_the_parameter(bad, name):
    with pytest.raises(ValueError, match=name):
        dataclasses.replace(ft.scaled_config(32, 2), **bad)


def colour_attributes(n: int) -> dict[str, torch.Tensor]:
    """Images whose attribute a is 1 when colour channel a is bright (a known function of the image)."""
    g = torch.Generator().manual_seed(0)
    attributes = torch.randint(0, 2, (n, 3), generator=g)
    images = (0.2 + 0.6 * attributes.float())[:, :, None, None] + 0.05 * torch.randn(n, 3, 32, 32, generator=g)
    return {"image": images.clamp(0, 1), "attributes": attributes}


def test_training_learns_attributes_and_the_spec_is_json_able():
    cfg = dataclasses.replace(ft.scaled_config(32, 2, num_attributes=3), lr=1e-2)
    spec = ft.training_spec(cfg, InMemory(colour_attributes(16)), steps=20, batch_size=8, seed=0,
                            data_id={"name": "colours"}, precision="fp32")
    json.dumps(spec.config)
    assert spec.config["model"]["num_attributes"] == 3 and spec.data_id == {"name": "colours"}
    result = train(spec, progress=False)
    assert result.history["bce"][-1] < 0.8 * result.history["bce"][0]


def test_attribute_count_mismatch_is_refused():
    spec = ft.training_spec(ft.scaled_config(32, 2, num_attributes=4), InMemory(colour_attributes(4)), steps=1,
                            batch_size=4, seed=0, precision="fp32")
    with pytest.raises(ValueError, match="num_attributes"):
        train(spec, progress=False)
