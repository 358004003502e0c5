"""Fixture builders for the data_scripts tests: tiny datasets in the exact official on-disk layouts."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.data.labels import CELEBAMASK_HQ_PARTS, HELEN_CLASSES

REPO = Path(__file__).resolve().parents[2]


def load_script(name: str):
    """Import data_scripts/<name>.py as a module (data_scripts is a folder of scripts, not a package)."""
    key = f"_data_scripts_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, REPO / "data_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


def smooth_image(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth RGB uint8 image (gradients + a colour offset per seed), so JPEG keeps it close."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 200, size=3)
    img = np.stack([base[0] + 40 * x / width, base[1] + 40 * y / height, base[2] + 20 * (x + y) / (width + height)],
                   axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ CelebAMask-HQ
CELEBA_ATTRS = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
                "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
                "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
                "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
                "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
                "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
                "Wearing_Necktie", "Young"]
HQ_IMAGE = 64   # stands for 1024
HQ_MASK = 32    # stands for 512
HQ_KEYS = [0, 1, 2, 3, 4, 2001]  # 2001 lives in mask folder 1
HQ_ORIG_IDX = {0: 119613, 1: 99094, 2: 200145, 3: 5, 4: 162770, 2001: 182637}  # 0-based CelebA indices
# CelebA partition of those files (orig_idx + 1): 0 train, 1 val, 2 test
HQ_PARTITION = {0: "0", 1: "0", 2: "2", 3: "0", 4: "1", 2001: "2"}


def hq_part_masks(k: int) -> dict[str, np.ndarray]:
    """Binary masks (HQ_MASK^2) of image k; every block is aligned to 2-pixel cells so nearest 2x down is exact."""
    s = HQ_MASK
    d = 2 * (k % 3)  # shift per image
    m = {}

    def box(y0, y1, x0, x1):
        a = np.zeros((s, s), dtype=bool)
        a[y0:y1, x0:x1] = True
        return a

    m["skin"] = box(4, 28, 6, 26)
    m["hair"] = box(0, 10 + d, 4, 28)            # overlaps skin at the top: hair is painted later, wins
    m["nose"] = box(14, 20, 14, 18)
    m["eye_g"] = box(10, 14, 8, 24)              # eyeglasses, painted before the eyes: eyes win inside
    m["l_eye"] = box(10, 14, 8 + d, 12 + d)
    m["r_eye"] = box(10, 14, 18, 22)
    m["u_lip"] = box(22, 24, 12, 20)
    m["l_lip"] = box(24, 26, 12, 20)
    if k % 2 == 0:
        m["cloth"] = box(28, 32, 0, 32)
        m["neck"] = box(26, 32, 10, 22)          # cloth is later: wins where they overlap
    if k == 2001:
        m.pop("eye_g")
    return m


def hq_expected_labels(k: int, part_order=CELEBAMASK_HQ_PARTS) -> np.ndarray:
    """Merged official-id label map at the mask resolution: painted in official order, later wins."""
    labels = np.zeros((HQ_MASK, HQ_MASK), dtype=np.uint8)
    masks = hq_part_masks(k)
    for pid, part in enumerate(part_order, start=1):
        if part in masks:
            labels[masks[part]] = pid
    return labels


def hq_attributes(k: int) -> np.ndarray:
    rng = np.random.default_rng(100 + k)
    return rng.integers(0, 2, size=len(CELEBA_ATTRS)).astype(np.uint8)


def make_celebamask_hq(root: Path, keys=HQ_KEYS, mapping: bool = True, partition: bool = True,
                       attributes: bool = True) -> Path:
    """CelebAMask-HQ official layout: CelebA-HQ-img/, CelebAMask-HQ-mask-anno/<k//2000>/, annotation files."""
    root = Path(root)
    (root / "CelebA-HQ-img").mkdir(parents=True)
    for k in keys:
        Image.fromarray(smooth_image(HQ_IMAGE, HQ_IMAGE, k)).save(root / "CelebA-HQ-img" / f"{k}.jpg", quality=95)
        folder = root / "CelebAMask-HQ-mask-anno" / str(k // 2000)
        folder.mkdir(parents=True, exist_ok=True)
        for part, mask in hq_part_masks(k).items():
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{k:05d}_{part}.png")
    for empty in range(2, 15):  # the official release has folders 0..14
        (root / "CelebAMask-HQ-mask-anno" / str(empty)).mkdir(parents=True, exist_ok=True)
    if attributes:
        lines = [str(len(keys)), " ".join(CELEBA_ATTRS)]
        for i, k in enumerate(keys):
            values = [str(2 * int(v) - 1) for v in hq_attributes(k)]
            sep = "  " if i % 2 == 0 else " "  # double spaces on some lines, as in the official file
            lines.append(f"{k}.jpg{sep}" + sep.join(values))
        (root / "CelebAMask-HQ-attribute-anno.txt").write_text("\n".join(lines) + "\n")
    if mapping:
        rows = ["idx         orig_idx    orig_file"]
        rows += [f"{k}  {HQ_ORIG_IDX[k]}  {HQ_ORIG_IDX[k] + 1:06d}.jpg" for k in keys]
        (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(rows) + "\n")
    if partition:
        rows = [f"{HQ_ORIG_IDX[k] + 1:06d}.jpg {HQ_PARTITION[k]}" for k in keys]
        rows += ["000001.jpg 0", "000002.jpg 1", "202599.jpg 2"]  # unrelated CelebA files
        (root / "list_eval_partition.txt").write_text("\n".join(sorted(rows)) + "\n")
    return root


# ------------------------------------------------------------------------------------------------ HELEN
HELEN_W, HELEN_H = 48, 32  # not square: centre crop takes columns 8..40
HELEN_NAMES = {"train": ["100032540_1", "10405146_1", "1057414_1"], "val": ["10722111_1"],
               "test": ["1030333538_1", "1045519440_1"]}


def helen_soft_maps(name: str) -> np.ndarray:
    """11 soft maps [11,H,W] (uint8) with a designed argmax, including exact ties; 2-pixel aligned blocks."""
    seed = sum(map(ord, name))
    H, W = HELEN_H, HELEN_W
    maps = np.zeros((len(HELEN_CLASSES), H, W), dtype=np.uint8)
    maps[0] = 120                               # background everywhere, moderate
    maps[1, 4:28, 10:38] = 200                  # skin
    maps[10, 0:8, 8:40] = 210                   # hair on top
    maps[6, 12:20, 20:28] = 230                 # nose
    maps[4, 8:12, 14:20] = 180                  # left eye: weaker than skin (200) -> skin wins there
    maps[5, 8:12, 28:34] = 250                  # right eye wins
    maps[7, 22:24, 18:30] = 200                 # upper lip ties with skin (200): the lowest id (skin, 1) wins
    maps[9, 24:26, 18:30] = 201                 # lower lip beats skin by one
    off = 2 * (seed % 3)
    maps[8, 20:22, 20 + off:24 + off] = 255     # inner mouth
    maps[:, 30:32, 0:4] = 0                     # all zero: argmax is background
    return maps


def helen_expected_labels(name: str) -> np.ndarray:
    return np.argmax(helen_soft_maps(name), axis=0).astype(np.uint8)


def make_helen(root: Path, list_style: str = "official", splits: dict[str, list[str]] = HELEN_NAMES) -> Path:
    """HELEN face-parsing layout: images/<name>.jpg, labels/<name>/<name>_lblNN.png, split lists (`splits`: names per split)."""
    root = Path(root)
    (root / "images").mkdir(parents=True)
    files = {"train": "exemplars.txt", "val": "tuning.txt", "test": "testing.txt"}
    for split, names in splits.items():
        lines = []
        for i, name in enumerate(names, start=1):
            Image.fromarray(smooth_image(HELEN_W, HELEN_H, i)).save(root / "images" / f"{name}.jpg", quality=95)
            folder = root / "labels" / name
            folder.mkdir(parents=True)
            for c, soft in enumerate(helen_soft_maps(name)):
                Image.fromarray(soft).save(folder / f"{name}_lbl{c:02d}.png")
            if list_style == "official" and split != "val":
                lines.append(f"{i} , {name}")
            else:
                lines.append(name)
        (root / files[split]).write_text("\n".join(lines) + "\n\n")
    return root
