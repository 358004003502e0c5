"""helpers.data.memory: in-memory splits."""
import pytest
import torch

from helpers.checkpoint import default_cache_dir
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


def test_render_split_keeps_synthfaces_splits_in_the_render_cache(capsys):
    ds = SynthFaces(resolution=32, length=10, seed=1)
    first = render_split(ds, [7, 2, 5], ["image", "labels"], desc="probe")
    assert "render cache" not in capsys.readouterr().out
    cached = lambda: sorted((default_cache_dir() / "renders").glob("synthfaces-*.pt"))
    assert len(cached()) == 2  # one entry per tensor
    again = render_split(ds, [7, 2, 5], ["labels", "image"], desc="probe")
    assert "[probe] 3 faces read from the render cache" in capsys.readouterr().out
    assert all(torch.equal(first[k], again[k]) and first[k].dtype == again[k].dtype for k in first)
    assert list(again) == ["labels", "image"]
    # another tensor of the same faces renders once more and adds one entry; the cached ones are reused
    with_mask = render_split(ds, [7, 2, 5], ["image", "eyeglasses_mask"])
    assert torch.equal(with_mask["image"], first["image"]) and with_mask["eyeglasses_mask"].dtype == torch.bool
    assert len(cached()) == 3
    # other faces or another setting of the renderer are other entries, never the stored ones
    render_split(ds, [7, 2], ["image"])
    other_seed = render_split(SynthFaces(resolution=32, length=10, seed=2), [7, 2, 5], ["image"])
    assert not torch.equal(other_seed["image"], first["image"])
    assert len(cached()) == 5


def test_render_key_names_every_setting_that_changes_the_pixels():
    base = SynthFaces(resolution=32, length=10, seed=1).render_key()
    assert base["source"] and base["torch"] == torch.__version__
    for changed in (dict(resolution=64), dict(seed=2), dict(pose_range=(30.0, 20.0, 8.0)), dict(supersample=1),
                    dict(step_px=0.5)):
        assert SynthFaces(**{"resolution": 32, "length": 10, "seed": 1, **changed}).render_key() != base, changed
    assert SynthFaces(resolution=32, length=99, seed=1).render_key() == base  # the length changes no face


def test_a_render_cache_entry_written_for_other_data_is_refused():
    ds = SynthFaces(resolution=32, length=10, seed=1)
    render_split(ds, [0, 1], ["labels"])
    (entry,) = (default_cache_dir() / "renders").glob("synthfaces-*.pt")
    stored = torch.load(entry, weights_only=True)
    assert stored["tensor"].dtype == torch.uint8 and stored["dtype"] == "int64"  # label maps stored compactly
    stored["key"]["seed"] = 5
    torch.save(stored, entry)
    with pytest.raises(ValueError, match="written for other data"):
        render_split(ds, [0, 1], ["labels"])


def test_the_render_cache_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("BOOK_RENDER_CACHE", "off")
    render_split(SynthFaces(resolution=32, length=10, seed=1), [0, 1], ["image"])
    assert not (default_cache_dir() / "renders").exists()
    monkeypatch.setenv("BOOK_RENDER_CACHE", "0")
    with pytest.raises(ValueError, match="BOOK_RENDER_CACHE='0'"):
        render_split(SynthFaces(resolution=32, length=10, seed=1), [0, 1], ["image"])
