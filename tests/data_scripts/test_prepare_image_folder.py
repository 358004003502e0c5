import json

import numpy as np
from PIL import Image

from tests.data_scripts.layouts import load_script, smooth_image
from helpers.data.faceformat import FaceDataset

mod = load_script("prepare_image_folder")


def make_folder(root):
    (root / "a" / "b").mkdir(parents=True)
    (root / ".cache").mkdir()
    Image.fromarray(smooth_image(40, 20, 0)).save(root / "z.png")
    Image.fromarray(smooth_image(20, 40, 1)).save(root / "a" / "one.JPG", quality=95)
    Image.fromarray(smooth_image(32, 32, 2)).save(root / "a" / "b" / "two.webp", lossless=True)
    Image.fromarray(smooth_image(32, 32, 3)).save(root / "a" / "b" / "three.jpeg", quality=95)
    Image.fromarray(smooth_image(32, 32, 4)).save(root / ".cache" / "hidden.png")
    (root / "notes.txt").write_text("not an image")
    return root


def convert(root, out, *extra):
    return mod.main(["--root", str(root), "--out", str(out), "--resolution", "16", "--no-progress", *extra])


def test_convert_folder(tmp_path, capsys):
    root = make_folder(tmp_path / "faces")
    out = tmp_path / "out"
    assert convert(root, out, "--test-fraction", "0.25") == 0
    assert "converted 4 images" in capsys.readouterr().out
    ds = FaceDataset(out, "train")
    assert ds.names == ["a/b/three.jpeg", "a/b/two.webp", "a/one.JPG", "z.png"]
    assert ds.classes == [] and ds.source == "image_folder" and "labels" not in ds.meta["arrays"]
    item = ds[0]
    assert set(item) == {"image", "index"} and item["image"].shape == (3, 16, 16)
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    images = np.load(out / "images.npy")
    # z.png is 40x20: the centre crop keeps columns 10..30, then a 20 -> 16 antialiased resize
    src = smooth_image(40, 20, 0)[:, 10:30].astype(np.float32)
    ref = np.asarray(Image.fromarray(src.astype(np.uint8)).resize((16, 16), Image.LANCZOS), dtype=np.float32)
    assert np.abs(images[3].astype(np.float32) - ref).max() <= 1
    splits = json.loads((out / "splits.json").read_text())
    assert len(splits["test"]) == 1 and len(splits["train"]) == 3
    assert sorted(splits["train"] + splits["test"]) == [0, 1, 2, 3]


def test_seeded_split_is_deterministic(tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(20):
        Image.fromarray(smooth_image(8, 8, i)).save(root / f"{i:02d}.png")
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert convert(root, tmp_path / name, "--seed", seed, "--val-fraction", "0.1", "--test-fraction", "0.2") == 0
    a, b, c = (json.loads((tmp_path / n / "splits.json").read_text()) for n in "abc")
    assert a == b and a != c
    assert [len(a[k]) for k in ("train", "val", "test")] == [14, 2, 4]


def test_out_inside_root_is_excluded(tmp_path):
    root = make_folder(tmp_path / "faces")
    assert convert(root, root / "converted") == 0
    assert convert(root, root / "converted") == 0  # rerun: same list, already complete


def test_errors(tmp_path, capsys):
    assert convert(tmp_path / "missing", tmp_path / "out") == 2
    assert "missing" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert convert(empty, tmp_path / "out") == 2
    assert "no .jpg" in capsys.readouterr().err
    root = make_folder(tmp_path / "faces")
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert convert(root, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "--skip-bad" in err
    assert convert(root, tmp_path / "out", "--skip-bad") == 0
    out = capsys.readouterr().out
    assert "converted 4 images" in out and "skipped 1" in out and "broken.png" in out


def test_changed_source_folder_does_not_resume_silently(tmp_path, monkeypatch, capsys):
    root = make_folder(tmp_path / "faces")
    original, calls = mod.load_rgb, {"n": 0}

    def flaky(path, draft_size=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(path, draft_size)

    monkeypatch.setattr(mod, "load_rgb", flaky)
    assert convert(root, tmp_path / "out") == 130
    monkeypatch.setattr(mod, "load_rgb", original)
    Image.fromarray(smooth_image(8, 8, 9)).save(root / "a" / "aa_new.png")
    assert convert(root, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "unfinished conversion made with different arguments" in err and "source_files_sha1" in err
    assert convert(root, tmp_path / "out", "--overwrite") == 0
    assert "converted 5 images" in capsys.readouterr().out
