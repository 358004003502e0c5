import json

import numpy as np
from PIL import Image

from tests.data_scripts.layouts import HELEN_H, HELEN_NAMES, HELEN_W, helen_expected_labels, helen_soft_maps, load_script, make_helen
from helpers.data.faceformat import FaceDataset
from helpers.data.labels import HELEN_CLASSES, HELEN_ID

mod = load_script("prepare_helen")
ALL_NAMES = HELEN_NAMES["train"] + HELEN_NAMES["val"] + HELEN_NAMES["test"]
CROP = (HELEN_W - HELEN_H) // 2  # 8: centre crop keeps columns 8..40


def convert(root, out, resolution, *extra):
    return mod.main(["--root", str(root), "--out", str(out), "--resolution", str(resolution), "--no-progress",
                     *extra])


def test_designed_argmax_and_ties():
    maps = helen_soft_maps(ALL_NAMES[0])
    labels = mod.argmax_labels(list(maps))
    assert labels[20, 12] == HELEN_ID["skin"]
    assert labels[2, 20] == HELEN_ID["hair"]
    assert labels[10, 16] == HELEN_ID["skin"]          # left eye 180 < skin 200
    assert labels[10, 30] == HELEN_ID["right_eye"]     # 250 > skin
    assert labels[22, 19] == HELEN_ID["skin"]          # upper lip 200 ties with skin 200: lowest id wins
    assert labels[24, 19] == HELEN_ID["lower_lip"]     # 201 > 200
    assert labels[31, 1] == HELEN_ID["background"]     # all maps zero
    assert labels[16, 22] == HELEN_ID["nose"]
    tie = [np.full((2, 2), 7, np.uint8) for _ in HELEN_CLASSES]
    assert (mod.argmax_labels(tie) == 0).all()


def test_convert_native_pixel_exact(helen_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert convert(helen_root, out, HELEN_H) == 0
    report = capsys.readouterr().out
    assert "converted 6 images" in report
    ds = FaceDataset(out, "train")
    assert ds.classes == list(HELEN_CLASSES) and ds.source == "helen" and ds.resolution == HELEN_H
    assert ds.names == ALL_NAMES
    labels = ds.array("labels")
    for row, name in enumerate(ALL_NAMES):
        np.testing.assert_array_equal(labels[row], helen_expected_labels(name)[:, CROP:CROP + HELEN_H], err_msg=name)
    images = ds.array("images")
    src = np.asarray(Image.open(helen_root / "images" / f"{ALL_NAMES[0]}.jpg").convert("RGB"))
    assert np.abs(images[0].astype(int) - src[:, CROP:CROP + HELEN_H].astype(int)).max() == 0  # no resize
    splits = json.loads((out / "splits.json").read_text())
    assert splits == {"train": [0, 1, 2], "val": [3], "test": [4, 5]}
    item = ds[1]
    assert item["labels"].dtype.is_floating_point is False and tuple(item["labels"].shape) == (HELEN_H, HELEN_H)
    assert item["index"] == 1 and "attributes" not in item


def test_convert_resized_and_padded(helen_root, tmp_path):
    out = tmp_path / "half"
    assert convert(helen_root, out, HELEN_H // 2) == 0
    labels = np.load(out / "labels.npy")
    for row, name in enumerate(ALL_NAMES):
        np.testing.assert_array_equal(labels[row], helen_expected_labels(name)[:, CROP:CROP + HELEN_H][::2, ::2])
    out = tmp_path / "pad"
    assert convert(helen_root, out, HELEN_W, "--crop", "pad") == 0
    labels = np.load(out / "labels.npy")
    pad = (HELEN_W - HELEN_H) // 2
    expected = np.zeros((HELEN_W, HELEN_W), np.uint8)
    expected[pad:pad + HELEN_H] = helen_expected_labels(ALL_NAMES[0])
    np.testing.assert_array_equal(labels[0], expected)
    assert (np.load(out / "images.npy")[0, :pad] == 0).all()


def test_split_list_formats(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("1 , 100032540_1\n2 , 10405146_1\n\n1057414_1\n3 10722111_1\n")
    assert mod.parse_split_file(path) == ["100032540_1", "10405146_1", "1057414_1", "10722111_1"]
    root = make_helen(tmp_path / "plain", list_style="plain")
    assert convert(root, tmp_path / "out", 16) == 0
    assert json.loads((tmp_path / "out" / "splits.json").read_text())["test"] == [4, 5]


def test_missing_lists_and_folders(tmp_path, capsys):
    root = make_helen(tmp_path / "helen")
    (root / "testing.txt").unlink()
    assert convert(root, tmp_path / "o1", 16) == 2
    assert "testing.txt" in capsys.readouterr().err
    for f in ("exemplars.txt", "tuning.txt"):
        (root / f).unlink()
    assert convert(root, tmp_path / "o2", 16, "--test-fraction", "0.3") == 0
    assert "seeded random split" in capsys.readouterr().out
    import shutil
    shutil.rmtree(root / "labels")
    assert convert(root, tmp_path / "o3", 16) == 2
    err = capsys.readouterr().err
    assert "missing folder" in err and "labels" in err and "_lbl00.png" in err


def test_missing_label_map_and_skip_bad(helen_root, tmp_path, capsys):
    gone = helen_root / "labels" / ALL_NAMES[2] / f"{ALL_NAMES[2]}_lbl07.png"
    gone.unlink()
    assert convert(helen_root, tmp_path / "out", 16) == 2
    err = capsys.readouterr().err
    assert str(gone) in err
    (helen_root / "images" / f"{ALL_NAMES[4]}.jpg").write_bytes(b"\xff\xd8\xff garbage")
    assert convert(helen_root, tmp_path / "skip", 16, "--skip-bad") == 0
    report = capsys.readouterr().out
    assert "converted 4 images" in report and "skipped 2" in report
    ds = FaceDataset(tmp_path / "skip", "test")
    assert ds.names == [n for i, n in enumerate(ALL_NAMES) if i not in (2, 4)]
    assert len(ds) == 1 and ds.meta["details"]["skipped_count"] == 2


def test_size_mismatch_is_an_error(helen_root, tmp_path, capsys):
    name = ALL_NAMES[0]
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(helen_root / "images" / f"{name}.jpg")
    assert convert(helen_root, tmp_path / "out", 16) == 2
    assert "label maps" in capsys.readouterr().err


def test_resume(helen_root, tmp_path, monkeypatch, capsys):
    assert convert(helen_root, tmp_path / "full", 16) == 0
    original, calls = mod.load_label_map, {"n": 0}

    def flaky(root, name):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(root, name)

    monkeypatch.setattr(mod, "load_label_map", flaky)
    assert convert(helen_root, tmp_path / "out", 16) == 130
    monkeypatch.setattr(mod, "load_label_map", original)
    assert convert(helen_root, tmp_path / "out", 16) == 0
    for f in ("images.npy", "labels.npy", "splits.json", "names.txt"):
        assert (tmp_path / "out" / f).read_bytes() == (tmp_path / "full" / f).read_bytes()
