"""helpers.models.segmenter: shapes, configuration errors and a short training run that learns."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from helpers.data.memory import InMemory
from helpers.models import segmenter as sg
from helpers.train import count_parameters, train


def test_shapes_and_labels():
    model = sg.UNetSegmenter(sg.scaled_config(32, 4)).eval()
    x = torch.rand(3, 3, 32, 32)
    assert model(x).shape == (3, 6, 32, 32)
    labels = sg.segment_images(model, x)
    assert labels.shape == (3, 32, 32) and labels.dtype == torch.long
    assert count_parameters(sg.UNetSegmenter(sg.paper_config())) == 7_788_870


@pytest.mark.parametrize("bad, name", [(dict(resolution=36), "resolution"), (dict(width=0), "width"),
                                       (dict(num_classes=1), "num_classes")])
def test_bad_configs_name_the_parameter(bad, name):
    with pytest.raises(ValueError, match=name):
        dataclasses.replace(sg.scaled_config(32, 4), **bad)


def test_training_learns_a_colour_coded_map():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 6, (16, 4, 4), generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)
    palette = torch.rand(6, 3, generator=g)
    images = palette[labels].permute(0, 3, 1, 2)  # every class has its own colour
    spec = sg.training_spec(dataclasses.replace(sg.scaled_config(16, 8), lr=5e-3), InMemory({"image": images, "roi_labels": labels}), steps=30,
                            batch_size=8, seed=0, data_id={"name": "palette"}, precision="fp32")
    result = train(spec, progress=False)
    assert result.history["ce"][-1] < 0.7 * result.history["ce"][0]
