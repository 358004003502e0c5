import pytest
import torch

from helpers.data.faceformat import FormatError
from helpers.data.splits import helen_label_splits
from tests.data_scripts.layouts import load_script, make_helen


def test_synthfaces_splits_are_disjoint_seeded_renders():
    train, test = helen_label_splits("synthfaces", None, 32, 6, 3, seed=1)
    again, _ = helen_label_splits("synthfaces", None, 32, 6, 3, seed=1)
    assert train["image"].shape == (6, 3, 32, 32) and test["labels"].shape == (3, 32, 32)
    assert torch.equal(train["image"], again["image"])
    assert not any(torch.equal(test["image"][0], image) for image in train["image"])
    assert int(train["labels"].max()) <= 10  # HELEN ids


def test_converted_helen_is_read_resized_and_checked(tmp_path):
    raw = make_helen(tmp_path / "raw")
    out = tmp_path / "helen"
    assert load_script("prepare_helen").main(["--root", str(raw), "--out", str(out), "--resolution", "32",
                                              "--no-progress"]) == 0
    train, test = helen_label_splits("helen", out, 16, n_train=2, n_test=10, seed=0)
    assert train["image"].shape == (2, 3, 16, 16) and len(test["image"]) == 2  # capped by the split's size
    with pytest.raises(FormatError, match="expected the 19 celebamask_hq classes"):
        helen_label_splits("celebamask_hq", out, 16, 2, 2, seed=0)


@pytest.mark.parametrize("dataset, root, message", [
    ("ffhq", None, "dataset='ffhq': allowed"),
    ("helen", None, "needs data_root: the folder written by data_scripts/prepare_helen.py"),
])
def test_bad_arguments_say_what_is_expected(dataset, root, message):
    with pytest.raises(ValueError, match=message):
        helen_label_splits(dataset, root, 32, 2, 2, seed=0)
