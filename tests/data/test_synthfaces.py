"""Tests of the SynthFaces dataset: determinism, shapes, labels, attribute names and correlations."""
import pytest
import torch

from helpers.data.labels import HELEN_CLASSES, HELEN_ID
from helpers.data.synthfaces import SynthFaces

CELEBA_20 = ("Smiling", "Mouth_Slightly_Open", "Eyeglasses", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair",
             "Gray_Hair", "Big_Nose", "Pointy_Nose", "Narrow_Eyes", "Bushy_Eyebrows", "Arched_Eyebrows",
             "Wearing_Lipstick", "Pale_Skin", "Mustache", "No_Beard", "Male", "Young", "Big_Lips")
KEYS = ("image", "labels", "depth", "albedo", "view", "light", "factors", "attributes", "mask", "shading",
        "canonical_labels", "eyeglasses_mask")


def _assert_same(a: dict, b: dict, atol: float = 0.0):
    assert a.keys() == b.keys()
    for key in a:
        if a[key].is_floating_point():
            assert torch.allclose(a[key], b[key], atol=atol, rtol=0), key
        else:
            assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def ds32():
    return SynthFaces(resolution=32, length=100, seed=3)


def test_item_is_deterministic(ds32):
    _assert_same(ds32[5], ds32[5])
    _assert_same(ds32[7], SynthFaces(resolution=32, length=100, seed=3)[7])


def test_batch_rows_equal_items_whatever_the_batch(ds32):
    item = ds32[5]
    for indices, row in (([7, 5, 9], 1), ([5, 1], 0), ([2, 3, 4, 5], 3)):
        batch = ds32.batch(indices)
        _assert_same({k: v[row] for k, v in batch.items()}, item, atol=1e-5)


def test_different_seeds_and_indices_differ(ds32):
    other = SynthFaces(resolution=32, length=100, seed=4)
    assert not torch.equal(ds32[5]["image"], other[5]["image"])
    assert not torch.equal(ds32[5]["factors"], ds32[6]["factors"])


@pytest.mark.parametrize("res", [32, 64])
def test_shapes_dtypes_ranges(res):
    ds = SynthFaces(resolution=res, length=10, seed=0)
    item = ds[0]
    assert set(KEYS) <= item.keys()
    assert item["image"].shape == (3, res, res) and item["image"].dtype == torch.float32
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["labels"].shape == (res, res) and item["labels"].dtype == torch.int64
    assert 0 <= item["labels"].min() and item["labels"].max() < len(HELEN_CLASSES)
    assert item["depth"].shape == (1, res, res) and item["albedo"].shape == (3, res, res)
    assert 0.85 < item["depth"].min() and item["depth"].max() < 1.15
    assert 0 <= item["albedo"].min() and item["albedo"].max() <= 1
    assert item["view"].shape == (6,) and item["view"].dtype == torch.float32
    assert item["light"].shape == (len(ds.light_names),) and len(ds.view_names) == 6
    assert item["factors"].shape == (len(ds.factor_names),) and item["factors"].dtype == torch.float32
    assert item["attributes"].shape == (len(ds.attribute_names),)
    assert set(item["attributes"].unique().tolist()) <= {0, 1}
    assert item["eyeglasses_mask"].dtype == torch.bool and item["eyeglasses_mask"].shape == (res, res)
    assert item["mask"].shape == (1, res, res) and 0 <= item["mask"].min() and item["mask"].max() <= 1
    assert ((item["labels"] > 0) == (item["mask"][0] >= 0.5)).all()
    batch = ds.batch([0, 1, 2])
    assert batch["image"].shape == (3, 3, res, res) and batch["labels"].shape == (3, res, res)
    assert len(ds) == 10 and ds.classes == HELEN_CLASSES


def test_large_resolutions_render():
    for res in (128, 256):
        item = SynthFaces(resolution=res, length=2, seed=1)[1]
        assert item["image"].shape == (3, res, res)
        assert (item["labels"] == HELEN_ID["skin"]).sum() > 0.05 * res * res


def test_frontal_faces_show_their_parts():
    ds = SynthFaces(resolution=64, length=24, seed=11, pose_range=(15.0, 10.0, 3.0))
    labels = ds.batch(range(24))["labels"]
    for name in ("skin", "left_eye", "right_eye", "nose", "upper_lip", "lower_lip"):
        counts = (labels == HELEN_ID[name]).flatten(1).sum(1)
        assert (counts > 0).all(), (name, counts)
    # subject's left eye is on the image right in frontal views
    cols = torch.arange(64.0)
    for face in labels:
        left = (face == HELEN_ID["left_eye"]).float()
        right = (face == HELEN_ID["right_eye"]).float()
        assert (left.sum(0) * cols).sum() / left.sum() > (right.sum(0) * cols).sum() / right.sum()


def test_eyeglasses_mask_follows_the_attribute():
    ds = SynthFaces(resolution=64, length=400, seed=0, pose_range=(20.0, 10.0, 3.0))
    ann = ds.annotations(range(400))
    glasses = ann["attributes"][:, ds.attribute_names.index("Eyeglasses")]
    chosen = [int(i) for i in torch.nonzero(glasses)[:3, 0]] + [int(i) for i in torch.nonzero(glasses == 0)[:3, 0]]
    batch = ds.batch(chosen)
    has = batch["eyeglasses_mask"].flatten(1).any(1)
    assert has.tolist() == [True] * 3 + [False] * 3


def test_annotations_match_rendered_batch(ds32):
    ann = ds32.annotations([4, 8])
    batch = ds32.batch([4, 8])
    for key in ("factors", "attributes", "view", "light"):
        assert torch.equal(ann[key], batch[key])


def test_names():
    ds = SynthFaces(resolution=32, length=1)
    assert set(CELEBA_20) <= set(ds.attribute_names)
    assert len(ds.attribute_names) >= 20 and len(ds.factor_names) >= 20
    assert ds.view_names == ("yaw", "pitch", "roll", "tx", "ty", "tz")
    assert ds.light_names[:2] == ("ambient", "diffuse")


def test_attribute_correlations():
    ds = SynthFaces(resolution=32, length=2000, seed=0)
    attrs = ds.annotations(range(2000))["attributes"].float()
    names = ds.attribute_names
    corr = torch.corrcoef(attrs.T)

    def c(a, b):
        return corr[names.index(a), names.index(b)].item()

    assert c("Male", "Mustache") > 0.2
    assert c("Male", "Wearing_Lipstick") < -0.2
    assert c("Young", "Gray_Hair") < -0.2
    assert c("Male", "No_Beard") < -0.2
    assert c("Smiling", "Mouth_Slightly_Open") > 0.2
    rates = attrs.mean(0)
    assert ((rates > 0.02) & (rates < 0.98)).all(), dict(zip(names, rates.tolist()))


def test_views_cover_the_pose_range():
    ds = SynthFaces(resolution=32, length=1000, seed=0)
    view = ds.annotations(range(1000))["view"]
    yaw_deg = view[:, 0].rad2deg()
    assert yaw_deg.min() < -40 and yaw_deg.max() > 40 and yaw_deg.abs().max() <= 45.001
    assert view[:, 1].rad2deg().abs().max() <= 20.001


def test_batch_in_other_views_keeps_the_face(ds32):
    own = ds32.batch([4, 9])
    _assert_same(ds32.batch([4, 9], views=own["view"]), own)  # its own views: the same renders
    views = torch.zeros(2, 6)  # both frontal
    other = ds32.batch([4, 9], views=views)
    assert torch.equal(other["view"], views)
    for key in ("albedo", "depth", "canonical_labels", "light", "factors", "attributes", "background"):
        assert torch.equal(other[key], own[key]), key
    assert (other["image"] - own["image"]).abs().mean() > 0.01  # a turned face seen from the front looks different
    alone = ds32.batch([4], views=torch.zeros(1, 6))  # rows do not depend on the batch
    assert torch.allclose(alone["image"][0], other["image"][0], atol=1e-5)
    with pytest.raises(ValueError, match="views"):
        ds32.batch([4, 9], views=torch.zeros(3, 6))


def test_bad_arguments():
    with pytest.raises(ValueError):
        SynthFaces(resolution=8)
    with pytest.raises(IndexError):
        SynthFaces(resolution=32, length=3)[3]


def test_extreme_pose_range_renders_whole_faces():
    ds = SynthFaces(resolution=48, length=8, seed=2, pose_range=(60.0, 30.0, 8.0))
    batch = ds.batch(range(8))
    assert batch["view"][:, 0].abs().max() <= torch.deg2rad(torch.tensor(60.0)) + 1e-6
    fg = batch["mask"][:, 0] >= 0.5
    assert (fg.flatten(1).float().mean(1) > 0.2).all()
    assert ((batch["labels"] > 0) == fg).all()


def test_faces_fill_the_frame_like_face_crops():
    ds = SynthFaces(resolution=32, length=256, seed=5)
    labels = ds.batch(range(256))["labels"]
    share = torch.bincount(labels.flatten(), minlength=len(HELEN_CLASSES)).double() / labels.numel()

    def s(*names):
        return sum(share[HELEN_ID[n]].item() for n in names)

    assert 0.22 < s("background") < 0.42 and 0.26 < s("skin") < 0.42 and 0.15 < s("hair") < 0.33
    assert s("nose") > 0.010 and s("upper_lip", "lower_lip", "inner_mouth") > 0.010
    for name in ("left_eye", "right_eye", "left_brow", "right_brow"):
        assert s(name) > 0.0017, (name, s(name))
