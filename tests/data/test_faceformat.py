import json
import pickle

import numpy as np
import pytest
import torch

from helpers.data.convert import seeded_split, square_box
from helpers.data.faceformat import FORMAT_NAME, ArraySpec, FaceDataset, FaceDatasetWriter, FormatError, load_meta

R = 4
CLASSES = ["background", "a", "b"]


def rows(n):
    rng = np.random.default_rng(0)
    return {
        "image": rng.integers(0, 256, (n, R, R, 3), dtype=np.uint8),
        "labels": rng.integers(0, 3, (n, R, R), dtype=np.uint8),
        "attributes": rng.integers(0, 2, (n, 2), dtype=np.uint8),
        "depth": rng.random((n, R, R)).astype(np.float16),
        "view": rng.random((n, 6)).astype(np.float32),
    }


def make(out, n=5, keep=None, **kw):
    data = rows(n)
    writer = FaceDatasetWriter(out, "synthfaces", R, n, classes=CLASSES, attribute_names=["x", "y"],
                               extra_arrays={"depth": ArraySpec("float16", (R, R), "map"),
                                             "view": ("float32", (6,))},
                               details={"seed": 1}, config={"k": 1}, **kw)
    keep = n if keep is None else keep
    for i in range(keep):
        writer.write(i, **{k: v[i] for k, v in data.items()})
    meta = writer.finish({"train": list(range(keep - 1)), "test": [keep - 1]}, [f"f{i}" for i in range(keep)])
    return data, meta


def test_roundtrip(tmp_path):
    out = tmp_path / "ds"
    data, meta = make(out)
    assert meta["format"] == FORMAT_NAME and meta["version"] == 1 and meta["count"] == 5
    on_disk = json.loads((out / "meta.json").read_text())
    assert on_disk["arrays"]["images"] == {"file": "images.npy", "dtype": "uint8", "shape": [5, R, R, 3],
                                           "kind": "image"}
    assert on_disk["arrays"]["depth"]["shape"] == [5, R, R] and on_disk["details"]["seed"] == 1
    assert not (out / "progress.json").exists()
    ds = FaceDataset(out, "train")
    assert len(ds) == 4 and ds.classes == CLASSES and ds.attribute_names == ["x", "y"]
    assert ds.resolution == R and ds.source == "synthfaces" and ds.meta["count"] == 5
    item = ds[2]
    assert item["index"] == 2
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, R, R)
    assert torch.allclose(item["image"], torch.from_numpy(data["image"][2]).permute(2, 0, 1).float() / 255)
    assert item["labels"].dtype == torch.int64 and torch.equal(item["labels"], torch.from_numpy(data["labels"][2]).long())
    assert item["attributes"].dtype == torch.float32 and item["attributes"].tolist() == data["attributes"][2].tolist()
    assert item["depth"].shape == (1, R, R) and item["depth"].dtype == torch.float32
    assert torch.allclose(item["view"], torch.from_numpy(data["view"][2]))
    test = FaceDataset(out, "test")
    assert len(test) == 1 and test[0]["index"] == 4 and test[-1]["index"] == 4
    with pytest.raises(IndexError):
        test[1]
    assert isinstance(np.load(out / "images.npy", mmap_mode="r"), np.memmap)
    # pickles without the memmaps (DataLoader workers reopen them), and batches through a DataLoader
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[1]["image"], ds[1]["image"])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, R, R) and batch["index"].tolist() == [0, 1, 2]
    b = ds.batch([3, 1])
    assert b["index"].tolist() == [3, 1] and b["image"].shape == (2, 3, R, R) and b["depth"].shape == (2, 1, R, R)
    for key in ("image", "labels", "attributes", "depth", "view"):
        assert torch.equal(b[key][0], ds[3][key]) and b[key].dtype == ds[3][key].dtype, key
    ds_t = FaceDataset(out, "train", transform=lambda item: {**item, "extra": 1})
    assert ds_t[0]["extra"] == 1


def test_fewer_rows_than_preallocated(tmp_path):
    data, meta = make(tmp_path / "ds", n=6, keep=4)
    assert meta["count"] == 4
    images = np.load(tmp_path / "ds" / "images.npy")
    assert images.shape == (4, R, R, 3) and np.array_equal(images, data["image"][:4])
    assert FaceDataset(tmp_path / "ds", "test")[0]["index"] == 3


def test_reader_errors(tmp_path):
    with pytest.raises(FormatError, match="does not exist") as err:
        FaceDataset(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value) and "images.npy" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="no meta.json") as err:
        FaceDataset(tmp_path / "empty")
    assert "data_scripts/prepare_celebamask_hq.py" in str(err.value)
    out = tmp_path / "ds"
    make(out)
    with pytest.raises(FormatError, match=r"allowed splits: \['test', 'train'\]"):
        FaceDataset(out, "val")
    meta = json.loads((out / "meta.json").read_text())
    meta["arrays"]["labels"]["shape"] = [5, R, R + 1]
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(FormatError, match="labels.npy"):
        FaceDataset(out)
    meta["arrays"]["labels"]["shape"] = [5, R, R]
    meta["format"] = "other"
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(FormatError, match="format"):
        load_meta(out)
    meta["format"] = FORMAT_NAME
    (out / "meta.json").write_text(json.dumps(meta))
    (out / "depth.npy").unlink()
    with pytest.raises(FormatError, match="depth.npy is missing"):
        FaceDataset(out)


@pytest.mark.parametrize("keep_bytes", [200, 40])  # cut in the data / inside the .npy header
def test_truncated_array_is_named_with_its_shape(tmp_path, keep_bytes):
    out = tmp_path / "ds"
    make(out)
    path = out / "images.npy"
    path.write_bytes(path.read_bytes()[:keep_bytes])
    with pytest.raises(FormatError) as err:
        FaceDataset(out)
    msg = str(err.value)
    assert str(path) in msg and f"shape [5, {R}, {R}, 3]" in msg and "uint8" in msg and "truncated" in msg


def test_incomplete_and_resume(tmp_path):
    out = tmp_path / "ds"
    data = rows(5)
    w = FaceDatasetWriter(out, "image_folder", R, 5, config={"a": 1})
    for i in range(3):
        w.write(i, image=data["image"][i])
    w.checkpoint(3, {"cursor": 3})
    del w
    with pytest.raises(FormatError, match="incomplete.*after 3 rows.*resume"):
        FaceDataset(out)
    with pytest.raises(FormatError, match="different arguments"):
        FaceDatasetWriter(out, "image_folder", R, 5, config={"a": 2})
    w = FaceDatasetWriter(out, "image_folder", R, 5, config={"a": 1})
    assert w.rows_done == 3 and w.state == {"cursor": 3} and not w.complete
    for i in range(3, 5):
        w.write(i, image=data["image"][i])
    w.finish({"train": [0, 1, 2], "val": [3], "test": [4]}, list("abcde"))
    assert np.array_equal(np.load(out / "images.npy"), data["image"])
    assert FaceDatasetWriter(out, "image_folder", R, 5, config={"a": 1}).complete
    with pytest.raises(FormatError, match="finished dataset made with different arguments"):
        FaceDatasetWriter(out, "image_folder", R, 5, config={"a": 9})
    w = FaceDatasetWriter(out, "image_folder", R, 5, config={"a": 9}, overwrite=True)
    assert not (out / "meta.json").exists() and w.rows_done == 0
    assert FaceDataset.__name__  # the old dataset is gone


def test_writer_checks(tmp_path):
    w = FaceDatasetWriter(tmp_path / "w", "helen", R, 3, classes=CLASSES)
    with pytest.raises(FormatError, match="row shape"):
        w.write(0, image=np.zeros((R, R + 1, 3), np.uint8))
    with pytest.raises(FormatError, match="not declared"):
        w.write(0, depth=np.zeros((R, R)))
    with pytest.raises(FormatError, match="train and test"):
        w.finish({"train": [0]}, ["a", "b", "c"])
    with pytest.raises(FormatError, match="overlaps"):
        w.finish({"train": [0, 1], "test": [1]}, ["a", "b", "c"])
    with pytest.raises(FormatError, match="outside"):
        w.finish({"train": [0], "test": [3]}, ["a", "b", "c"])
    with pytest.raises(FormatError, match="unknown source"):
        FaceDatasetWriter(tmp_path / "x", "ffhq", R, 3)


def test_helpers():
    tags = seeded_split(20, 0, 0.1, 0.2)
    assert tags == seeded_split(20, 0, 0.1, 0.2)
    assert (tags.count("train"), tags.count("val"), tags.count("test")) == (14, 2, 4)
    assert seeded_split(2, 0, 0.0, 0.05).count("test") == 1
    assert square_box(48, 32) == (8, 0, 40, 32)
    assert square_box(32, 48, "pad") == (-8, 0, 40, 48)
