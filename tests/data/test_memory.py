"""helpers.data.memory: in-memory splits."""
import pytest
import torch

from helpers.data import SynthFaces
from helpers.data.memory import InMemory, render_split


def test_in_memory_batches_rows_and_applies_the_transform_once():
    data = InMemory({"x": torch.arange(10), "y": torch.arange(10) * 2}, transform=lambda b: {**b, "z": b["x"] + b["y"]})
    batch = data.batch([3, 1])
    assert batch["x"].tolist() == [3, 1] and batch["z"].tolist() == [9, 3]
    assert data[4]["z"].item() == 12 and len(data) == 10


def test_in_memory_refuses_tensors_of_different_lengths():
    with pytest.raises(ValueError, match="different lengths"):
        InMemory({"a": torch.zeros(3), "b": torch.zeros(4)})


def test_render_split_equals_the_dataset_and_names_missing_keys(capsys):
    ds = SynthFaces(resolution=32, length=10, seed=1)
    split = render_split(ds, [7, 2, 5], ["labels", "image"], chunk=2)
    direct = ds.batch([7, 2, 5])
    assert torch.equal(split["labels"], direct["labels"]) and torch.allclose(split["image"], direct["image"])
    with pytest.raises(KeyError, match="no \\['nope'\\]"):
        render_split(ds, [0], ["nope"])
