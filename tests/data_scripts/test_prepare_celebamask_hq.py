import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.data_scripts.layouts import (
    CELEBA_ATTRS, HQ_KEYS, HQ_MASK, HQ_PARTITION, REPO, hq_attributes, hq_expected_labels, load_script,
    make_celebamask_hq,
)
from helpers.data.faceformat import FaceDataset, FormatError
from helpers.data.labels import CELEBAMASK_HQ_CLASSES

mod = load_script("prepare_celebamask_hq")
RES = HQ_MASK // 2  # 16: masks 32 -> 16 with nearest, blocks are 2-pixel aligned


def convert(root, out, *extra):
    return mod.main(["--root", str(root), "--out", str(out), "--resolution", str(RES), "--no-progress", *extra])


def test_labels_pixel_exact_and_attributes(celebamask_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert convert(celebamask_root, out) == 0
    report = capsys.readouterr().out
    assert "converted 6 images" in report and "standard split" in report
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"] == "celebamask_hq" and meta["count"] == 6 and meta["resolution"] == RES
    assert meta["classes"] == list(CELEBAMASK_HQ_CLASSES)
    assert meta["attribute_names"] == CELEBA_ATTRS
    names = (out / "names.txt").read_text().split()
    assert names == [f"{k}.jpg" for k in HQ_KEYS]
    labels = np.load(out / "labels.npy", mmap_mode="r")
    attributes = np.load(out / "attributes.npy")
    for row, k in enumerate(HQ_KEYS):
        expected = hq_expected_labels(k)[::2, ::2]
        np.testing.assert_array_equal(labels[row], expected, err_msg=f"image {k}")
        np.testing.assert_array_equal(attributes[row], hq_attributes(k))
    # spot checks of the painting order, independent of the helper above
    hair, skin, eye_g, l_eye = (CELEBAMASK_HQ_CLASSES.index(n) for n in ("hair", "skin", "eye_g", "l_eye"))
    full = hq_expected_labels(0)
    assert full[5, 10] == hair == 13      # hair over skin: hair comes later
    assert full[20, 8] == skin == 1
    assert full[12, 9] == l_eye == 4      # l_eye over eye_g
    assert full[12, 14] == eye_g == 3
    assert full[30, 15] == CELEBAMASK_HQ_CLASSES.index("cloth")  # cloth over neck
    # images: antialiased resize of the 64 px JPEG, close to a box-filtered reference
    images = np.load(out / "images.npy")
    src = np.asarray(Image.open(celebamask_root / "CelebA-HQ-img" / "0.jpg").convert("RGB"), dtype=np.float32)
    ref = src.reshape(RES, 4, RES, 4, 3).mean(axis=(1, 3))
    assert np.abs(images[0].astype(np.float32) - ref).mean() < 3.0


def test_attribute_parsing_double_spaces(tmp_path):
    path = tmp_path / "attr.txt"
    path.write_text("2\nA B  C\n0.jpg  1 -1  1\n1.jpg -1 -1 -1\n")
    names, rows = mod.parse_attribute_file(path)
    assert names == ["A", "B", "C"]
    np.testing.assert_array_equal(rows["0.jpg"], [1, 0, 1])
    np.testing.assert_array_equal(rows["1.jpg"], [0, 0, 0])
    path.write_text("2\nA B C\n0.jpg 1 -1 1\n1.jpg -1 -1\n")
    with pytest.raises(ValueError, match="line 4"):
        mod.parse_attribute_file(path)
    path.write_text("3\nA B C\n0.jpg 1 -1 1\n")
    with pytest.raises(ValueError, match="says 3 rows"):
        mod.parse_attribute_file(path)


def test_standard_split_via_mapping_and_partition(celebamask_root, tmp_path):
    out = tmp_path / "out"
    assert convert(celebamask_root, out) == 0
    splits = json.loads((out / "splits.json").read_text())
    tag = {"0": "train", "1": "val", "2": "test"}
    expected = {s: [row for row, k in enumerate(HQ_KEYS) if tag[HQ_PARTITION[k]] == s] for s in tag.values()}
    assert splits == expected
    meta = json.loads((out / "meta.json").read_text())
    assert meta["details"]["split"] == "standard"
    test = FaceDataset(out, "test")
    assert [int(i) for i in test.indices] == expected["test"]


def test_partition_option_and_mapping_mismatch(tmp_path):
    root = make_celebamask_hq(tmp_path / "hq")
    moved = tmp_path / "celeba" / "list_eval_partition.txt"
    moved.parent.mkdir()
    (root / "list_eval_partition.txt").rename(moved)
    assert convert(root, tmp_path / "a", "--partition", str(moved)) == 0
    assert json.loads((tmp_path / "a" / "meta.json").read_text())["details"]["split"] == "standard"
    mapping = root / "CelebA-HQ-to-CelebA-mapping.txt"
    mapping.write_text(mapping.read_text().replace("119613", "119612", 1))  # orig_idx no longer matches orig_file
    with pytest.raises(ValueError, match="does not match"):
        mod.parse_mapping(mapping)


def test_seeded_fallback_split(tmp_path, capsys):
    root = make_celebamask_hq(tmp_path / "hq", mapping=False)
    out1, out2, out3 = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    args = ("--test-fraction", "0.34", "--val-fraction", "0.17")
    assert convert(root, out1, *args) == 0
    report = capsys.readouterr().out
    assert "seeded random split" in report and "CelebA-HQ-to-CelebA-mapping.txt" in report
    assert convert(root, out2, *args) == 0
    assert convert(root, out3, *args, "--seed", "5") == 0
    s1, s2, s3 = (json.loads((o / "splits.json").read_text()) for o in (out1, out2, out3))
    assert s1 == s2
    assert sorted(sum(s1.values(), [])) == list(range(6))
    assert [len(s1[k]) for k in ("train", "val", "test")] == [3, 1, 2]
    assert s1 != s3  # another seed, another split (for this seed pair)
    meta = json.loads((out1 / "meta.json").read_text())
    assert meta["details"]["split"] == "seeded_random" and meta["details"]["seed"] == 0


def test_unknown_part_name(celebamask_root, tmp_path, capsys):
    bad = celebamask_root / "CelebAMask-HQ-mask-anno" / "0" / "00001_beard.png"
    Image.fromarray(np.zeros((HQ_MASK, HQ_MASK), dtype=np.uint8)).save(bad)
    assert convert(celebamask_root, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert str(bad) in err and "'beard'" in err and "skin, nose, eye_g" in err and "--skip-bad" in err
    assert not (tmp_path / "out" / "meta.json").exists()
    assert convert(celebamask_root, tmp_path / "skip", "--skip-bad") == 0
    report = capsys.readouterr().out
    assert "converted 5 images" in report and "skipped 1" in report and "1.jpg" in report
    ds = FaceDataset(tmp_path / "skip", "train")
    assert "1.jpg" not in ds.names and len(ds.names) == 5
    meta = ds.meta
    assert meta["details"]["skipped_count"] == 1
    labels = np.load(tmp_path / "skip" / "labels.npy")
    assert labels.shape == (5, RES, RES)
    np.testing.assert_array_equal(labels[1], hq_expected_labels(2)[::2, ::2])  # rows shifted past the skipped one
    splits = json.loads((tmp_path / "skip" / "splits.json").read_text())
    assert sorted(sum(splits.values(), [])) == list(range(5))


def test_missing_folder_and_root(tmp_path, capsys):
    root = make_celebamask_hq(tmp_path / "hq")
    assert convert(tmp_path / "nowhere", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "CelebA-HQ-img/<k>.jpg" in err
    import shutil
    shutil.rmtree(root / "CelebAMask-HQ-mask-anno")
    assert convert(root, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "missing folder" in err and "CelebAMask-HQ-mask-anno" in err and "<k:05d>_<part>.png" in err


def test_image_without_masks_is_not_silently_background(celebamask_root, tmp_path, capsys):
    for path in (celebamask_root / "CelebAMask-HQ-mask-anno" / "0").glob("00003_*.png"):
        path.unlink()
    assert convert(celebamask_root, tmp_path / "out") == 2
    assert "no mask files for image" in capsys.readouterr().err


def test_corrupt_jpg(celebamask_root, tmp_path, capsys):
    bad = celebamask_root / "CelebA-HQ-img" / "2.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])  # truncated JPEG
    assert convert(celebamask_root, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "cannot read image" in err
    (celebamask_root / "CelebA-HQ-img" / "3.jpg").write_bytes(b"not a jpeg at all")
    assert convert(celebamask_root, tmp_path / "skip", "--skip-bad") == 0
    report = capsys.readouterr().out
    assert "skipped 2" in report and "2.jpg" in report and "3.jpg" in report


def test_resume_after_interrupt(celebamask_root, tmp_path, monkeypatch, capsys):
    full = tmp_path / "full"
    assert convert(celebamask_root, full) == 0
    out = tmp_path / "resumed"
    calls = {"n": 0}
    original = mod.merge_masks

    def flaky(masks):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(masks)

    monkeypatch.setattr(mod, "merge_masks", flaky)
    assert convert(celebamask_root, out) == 130
    progress = json.loads((out / "progress.json").read_text())
    assert progress["rows_done"] == 3 and progress["state"]["cursor"] == 3
    with pytest.raises(FormatError, match="incomplete"):
        FaceDataset(out)
    monkeypatch.setattr(mod, "merge_masks", original)
    calls["n"] = 0
    assert convert(celebamask_root, out) == 0
    assert "resumed after 3 of 6" in capsys.readouterr().out
    for name in ("images.npy", "labels.npy", "attributes.npy", "splits.json", "names.txt"):
        assert (out / name).read_bytes() == (full / name).read_bytes(), name
    assert not (out / "progress.json").exists()
    # same arguments again: left as is; other arguments: a clear error
    assert convert(celebamask_root, out) == 0
    assert "already complete" in capsys.readouterr().out
    assert mod.main(["--root", str(celebamask_root), "--out", str(out), "--resolution", "8", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "different arguments" in err and "--overwrite" in err


def test_limit_and_cli(celebamask_root, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, str(REPO / "data_scripts" / "prepare_celebamask_hq.py"), "--root",
                           str(celebamask_root), "--out", str(out), "--resolution", str(RES), "--limit", "2"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "converted 2 images" in proc.stdout
    assert FaceDataset(out, "train").meta["count"] == 2
    proc = subprocess.run([sys.executable, str(REPO / "data_scripts" / "prepare_celebamask_hq.py"), "--root",
                           str(tmp_path / "missing"), "--out", str(out)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
