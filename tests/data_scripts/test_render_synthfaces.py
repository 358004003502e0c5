import json

import pytest
import torch

from tests.data_scripts.layouts import load_script
from helpers.data.faceformat import FaceDataset
from helpers.data.labels import HELEN_CLASSES

mod = load_script("render_synthfaces")


class FakeSynthFaces:
    """The SynthFaces API (resolution, length, seed; batch(indices) -> dict of batched tensors), deterministic."""

    classes = HELEN_CLASSES
    factor_names = ("f0", "f1", "f2")
    attribute_names = ("Male", "Smiling")
    view_names = ("yaw", "pitch", "roll", "tx", "ty", "scale")
    light_names = ("ambient", "diffuse", "dx", "dy")
    calls = 0

    def __init__(self, resolution, length, seed):
        self.resolution, self.length, self.seed = resolution, length, seed

    def one(self, i):
        g = torch.Generator().manual_seed(self.seed * 100003 + i)
        R = self.resolution
        return {
            "image": torch.rand(3, R, R, generator=g),
            "labels": torch.randint(0, len(HELEN_CLASSES), (R, R), generator=g),
            "depth": torch.rand(1, R, R, generator=g),
            "albedo": torch.rand(3, R, R, generator=g),
            "view": torch.rand(6, generator=g),
            "light": torch.rand(4, generator=g),
            "factors": torch.randn(3, generator=g),
            "attributes": torch.randint(0, 2, (2,), generator=g).float(),
            "eyeglasses_mask": torch.rand(R, R, generator=g) > 0.5,
            "canonical_labels": torch.randint(0, len(HELEN_CLASSES), (R, R), generator=g),
            "coverage": torch.rand(R, R, generator=g),
        }

    def batch(self, indices):
        type(self).calls += 1
        items = [self.one(i) for i in indices]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}


@pytest.fixture
def fake(monkeypatch):
    FakeSynthFaces.calls = 0
    monkeypatch.setattr(mod, "load_synthfaces_class", lambda: FakeSynthFaces)
    return FakeSynthFaces


def render(out, *extra):
    return mod.main(["--out", str(out), "--resolution", "8", "--count", "10", "--seed", "3", "--chunk-size", "4",
                     "--no-progress", *extra])


def test_render_all_ground_truth(fake, tmp_path):
    out = tmp_path / "sf"
    assert render(out) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"] == "synthfaces" and meta["count"] == 10 and meta["resolution"] == 8
    assert meta["classes"] == list(HELEN_CLASSES) and meta["attribute_names"] == ["Male", "Smiling"]
    arrays = meta["arrays"]
    assert arrays["depth"]["dtype"] == "float16" and arrays["depth"]["shape"] == [10, 8, 8]
    assert arrays["albedo"]["dtype"] == "uint8" and arrays["albedo"]["shape"] == [10, 8, 8, 3]
    assert arrays["view"]["shape"] == [10, 6] and arrays["light"]["shape"] == [10, 4]
    assert arrays["factors"]["dtype"] == "float32" and arrays["attributes"]["dtype"] == "uint8"
    assert meta["details"]["factor_names"] == ["f0", "f1", "f2"] and meta["details"]["seed"] == 3
    assert json.loads((out / "splits.json").read_text()) == {"train": list(range(9)), "test": [9]}
    ref = FakeSynthFaces(8, 10, 3).one(9)
    ds = FaceDataset(out, "test")
    item = ds[0]
    assert item["index"] == 9
    assert torch.allclose(item["image"], ref["image"], atol=0.5 / 255 + 1e-6)
    assert torch.equal(item["labels"], ref["labels"])
    assert item["depth"].shape == (1, 8, 8) and torch.allclose(item["depth"], ref["depth"], atol=1e-3)
    assert item["albedo"].shape == (3, 8, 8)
    assert torch.allclose(item["view"], ref["view"]) and torch.allclose(item["factors"], ref["factors"])
    assert torch.equal(item["attributes"], ref["attributes"])
    assert item["eyeglasses_mask"].dtype == torch.bool and torch.equal(item["eyeglasses_mask"], ref["eyeglasses_mask"])
    assert item["canonical_labels"].dtype == torch.int64
    assert torch.equal(item["canonical_labels"], ref["canonical_labels"])
    assert item["coverage"].shape == (8, 8) and torch.allclose(item["coverage"], ref["coverage"], atol=1e-3)
    assert arrays["canonical_labels"]["kind"] == "label" and arrays["coverage"]["kind"] == "plane"


def test_splits_option(fake, tmp_path):
    assert render(tmp_path / "a", "--splits", "train=0.6,val=0.2,test=0.2") == 0
    assert json.loads((tmp_path / "a" / "splits.json").read_text()) == {
        "train": list(range(6)), "val": [6, 7], "test": [8, 9]}
    assert render(tmp_path / "b", "--splits", "train=0.6,bogus=0.4") == 2


def test_resume_and_rerun(fake, tmp_path, monkeypatch, capsys):
    assert render(tmp_path / "full") == 0
    original = FakeSynthFaces.batch
    state = {"n": 0}

    def flaky(self, indices):
        state["n"] += 1
        if state["n"] == 3:  # probe + first chunk done, interrupt in the second chunk
            raise KeyboardInterrupt
        return original(self, indices)

    monkeypatch.setattr(FakeSynthFaces, "batch", flaky)
    out = tmp_path / "out"
    assert render(out) == 130
    assert json.loads((out / "progress.json").read_text())["rows_done"] == 4
    monkeypatch.setattr(FakeSynthFaces, "batch", original)
    assert render(out) == 0
    assert "resumed after 4 of 10" in capsys.readouterr().out
    for f in ("images.npy", "labels.npy", "depth.npy", "albedo.npy", "view.npy", "factors.npy", "attributes.npy",
              "splits.json", "names.txt"):
        assert (out / f).read_bytes() == (tmp_path / "full" / f).read_bytes(), f
    FakeSynthFaces.calls = 0
    assert render(out) == 0
    assert "already complete" in capsys.readouterr().out
    assert FakeSynthFaces.calls == 1  # only the probe batch: nothing re-rendered
    assert render(out, "--seed", "4") == 2
    err = capsys.readouterr().err
    assert "different arguments" in err and "seed" in err
    assert render(out, "--seed", "4", "--overwrite") == 0


def test_real_synthfaces_32px(tmp_path):
    SynthFacesReal = pytest.importorskip("helpers.data.synthfaces").SynthFaces
    out = tmp_path / "real"
    assert mod.main(["--out", str(out), "--resolution", "32", "--count", "6", "--chunk-size", "4",
                     "--no-progress"]) == 0
    ds = FaceDataset(out, "train")
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["labels"].shape == (32, 32)
    assert int(item["labels"].max()) < len(ds.classes)
    for key in ("depth", "albedo", "view", "light", "factors", "attributes"):
        assert key in item, key
    # rows equal the generator's own batch (uint8 quantisation of images, float16 depth)
    ref = SynthFacesReal(32, 6, 0).batch([0, 1])
    assert torch.equal(item["labels"], ref["labels"][0])
    assert torch.allclose(item["image"], ref["image"][0], atol=0.5 / 255 + 1e-6)
    assert torch.allclose(item["depth"], ref["depth"][0], atol=2e-3)
    assert ds.meta["attribute_names"] == list(SynthFacesReal.attribute_names)
    assert ds.classes == list(HELEN_CLASSES)
