"""Convert HELEN (the relabelled face-parsing version) into the book's common face format (helpers.data.faceformat).

Expected under --root::

    images/<name>.jpg                         photos of any size (not square)
    labels/<name>/<name>_lbl00.png .. _lbl10.png
                                              11 soft (0..255) grayscale maps, in HELEN_CLASSES order: background,
                                              skin, left brow, right brow, left eye, right eye, nose, upper lip,
                                              inner mouth, lower lip, hair; same size as the image
    exemplars.txt, tuning.txt, testing.txt    split lists: train (2000) / val (230) / test (100)

Split list lines may be ``<name>`` or ``<index> , <name>`` (the official files use the second form): the name is
what follows the last comma, or the only field; blank lines are ignored. exemplars.txt and testing.txt are
required when any list is present; tuning.txt is optional. With no list at all, every image in images/ is used
with a seeded random split (--seed, --val-fraction, --test-fraction), stated in the report and meta.json details.

Label map = argmax over the 11 soft maps, ties going to the lowest class id (numpy argmax takes the first
maximum; so a pixel where all maps are 0 is background). Images and label maps get the same square box: a
centre crop to the shorter side (default, --crop center) or a zero pad to the longer side (--crop pad: black
pixels labelled background); then Lanczos (antialiased) resize for images and nearest for labels.
classes = HELEN_CLASSES.

    python data_scripts/prepare_helen.py --root /data/helen --out /data/faces/helen_128
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from helpers.data.convert import (
    BadItem, ConversionError, Item, Report, add_common_args, add_crop_arg, add_split_args, convert, load_gray, load_rgb,
    resize_image, resize_labels, run_main, seeded_split, source_folder,
)
from helpers.data.labels import HELEN_CLASSES

SPLIT_FILES = {"train": "exemplars.txt", "val": "tuning.txt", "test": "testing.txt"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
LAYOUT = ("expected the HELEN face-parsing layout under --root: images/<name>.jpg, "
          "labels/<name>/<name>_lbl00.png .. <name>_lbl10.png, and the split lists exemplars.txt, tuning.txt, "
          "testing.txt")


def parse_split_file(path: Path) -> list[str]:
    """Names in a HELEN split list: lines ``<name>`` or ``<index> , <name>``."""
    names = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        if "," in line:
            name = line.rsplit(",", 1)[1].strip()
        else:
            tokens = line.split()
            name = tokens[1] if len(tokens) == 2 and tokens[0].isdigit() else line
        if not name:
            raise ConversionError(f"split list {path}: cannot read a name from line {line!r}")
        names.append(name)
    return names


def find_image(root: Path, name: str) -> Path:
    for ext in IMAGE_EXTENSIONS:
        path = root / "images" / f"{name}{ext}"
        if path.exists():
            return path
    return root / "images" / f"{name}.jpg"


def label_paths(root: Path, name: str) -> list[Path]:
    return [root / "labels" / name / f"{name}_lbl{c:02d}.png" for c in range(len(HELEN_CLASSES))]


def argmax_labels(maps: list[np.ndarray]) -> np.ndarray:
    """Soft maps [C] x [H,W] -> uint8 ids, ties to the lowest id."""
    return np.argmax(np.stack(maps), axis=0).astype(np.uint8)


def load_label_map(root: Path, name: str) -> np.ndarray:
    maps = []
    for path in label_paths(root, name):
        soft = load_gray(path)
        if maps and soft.shape != maps[0].shape:
            raise BadItem(f"label map {path} is {soft.shape[1]}x{soft.shape[0]}, {name}_lbl00.png is "
                          f"{maps[0].shape[1]}x{maps[0].shape[0]}")
        maps.append(soft)
    return argmax_labels(maps)


def build_items(root: Path, args) -> tuple[list[Item], dict, list[str]]:
    present = {k: root / f for k, f in SPLIT_FILES.items() if (root / f).is_file()}
    if present:
        missing = [str(root / SPLIT_FILES[k]) for k in ("train", "test") if k not in present]
        if missing:
            raise ConversionError(f"missing split list {', '.join(missing)}; {LAYOUT}")
        items, where = [], {}
        for split, path in present.items():
            for name in parse_split_file(path):
                if name in where:
                    raise ConversionError(f"{name} is listed in both {where[name]} and {path}")
                where[name] = path
                items.append(Item(name, split, name))
        notes = ["split: " + ", ".join(f"{k} from {p.name}" for k, p in present.items())]
        return items, {"split": "official_lists", "split_files": [str(p) for p in present.values()]}, notes
    names = sorted(p.stem for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not names:
        raise ConversionError(f"no images in {root / 'images'}; {LAYOUT}")
    tags = seeded_split(len(names), args.seed, args.val_fraction, args.test_fraction)
    notes = [f"split: seeded random split (seed {args.seed}, val {args.val_fraction}, test {args.test_fraction}) "
             f"because no split list ({', '.join(SPLIT_FILES.values())}) was found in {root}"]
    details = {"split": "seeded_random", "seed": args.seed, "val_fraction": args.val_fraction,
               "test_fraction": args.test_fraction}
    return [Item(n, t, n) for n, t in zip(names, tags)], details, notes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="HELEN folder (images/, labels/, split lists)")
    add_common_args(parser, default_resolution=128)
    add_crop_arg(parser)
    add_split_args(parser, fallback=True)
    return parser


def run(args) -> Report:
    root = source_folder(args.root, LAYOUT)
    for sub in ("images", "labels"):
        if not (root / sub).is_dir():
            raise ConversionError(f"missing folder {root / sub}; {LAYOUT}")
    items, split_details, notes = build_items(root, args)
    if args.limit is not None:
        items = items[:args.limit]
    resolution, crop = args.resolution, args.crop

    def load(item: Item) -> dict:
        name = item.payload
        path = find_image(root, name)
        labels = load_label_map(root, name)
        image = load_rgb(path)
        if image.size != (labels.shape[1], labels.shape[0]):
            raise BadItem(f"image {path} is {image.size[0]}x{image.size[1]} but its label maps in "
                          f"{root / 'labels' / name} are {labels.shape[1]}x{labels.shape[0]}")
        return {"image": resize_image(image, resolution, crop), "labels": resize_labels(labels, resolution, crop)}

    config = {"root": str(root.resolve()), "limit": args.limit, "crop": crop, "seed": args.seed,
              "val_fraction": args.val_fraction, "test_fraction": args.test_fraction}
    details = {**split_details, "command": args.command, "root": str(root.resolve()), "crop": crop,
               "labels": "argmax of the 11 soft maps (ties -> lowest id), HELEN_CLASSES ids"}
    return convert(items, load, out=args.out, source="helen", resolution=resolution, classes=HELEN_CLASSES,
                   details=details, config=config, skip_bad=args.skip_bad, overwrite=args.overwrite,
                   progress=not args.no_progress, notes=notes)


def main(argv=None) -> int:
    return run_main(build_parser(), run, argv, "prepare_helen.py")


if __name__ == "__main__":
    sys.exit(main())
