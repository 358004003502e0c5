"""Convert CelebAMask-HQ from its official layout into the book's common face format (helpers.data.faceformat).

Expected under --root (the official release)::

    CelebA-HQ-img/<k>.jpg                                  1024x1024 images, k = 0..29999
    CelebAMask-HQ-mask-anno/<k // 2000>/<k:05d>_<part>.png 512x512 binary masks, one per part present (folders 0..14)
    CelebAMask-HQ-attribute-anno.txt                       optional: line 1 count, line 2 the 40 names, then
                                                           "<k>.jpg v1 .. v40" with values +-1 (any whitespace)
    CelebA-HQ-to-CelebA-mapping.txt                        optional: header, then "idx orig_idx orig_file"
    list_eval_partition.txt                                optional (CelebA's, or --partition): "<orig_file> 0|1|2"

Label maps: the part masks of an image are painted in the official order (helpers.data.labels.CELEBAMASK_HQ_PARTS),
later parts overwriting earlier ones, label = position + 1, background 0; stored with these official ids
(classes = CELEBAMASK_HQ_CLASSES; helpers.data.labels.celebamask_hq_to_helen_table() converts to HELEN ids).
A mask counts where any channel is non-zero. Label maps are merged at the mask resolution, then resized with
nearest; images get a Lanczos (antialiased) resize (JPEG decoding at a reduced DCT scale of at least twice the
target size first, for speed).

Split: with both the mapping and the partition file, CelebA's standard split through the mapping
(orig_idx is 0-based, so the CelebA file is number orig_idx + 1; 0 train, 1 val, 2 test: 24183 / 2993 / 2824 on the
full set). Otherwise a seeded random split (numpy default_rng(--seed) permutation; --val-fraction and
--test-fraction, default 5 % each), stated in the report and in meta.json details.

    python data_scripts/prepare_celebamask_hq.py --root /data/CelebAMask-HQ --out /data/faces/celebamask_hq_128
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

from helpers.data.convert import (
    BadItem, ConversionError, Item, Report, add_common_args, add_split_args, convert, load_gray, load_rgb, resize_image,
    resize_labels, run_main, seeded_split, source_folder,
)
from helpers.data.labels import CELEBAMASK_HQ_CLASSES, CELEBAMASK_HQ_PARTS

IMAGE_DIR = "CelebA-HQ-img"
MASK_DIR = "CelebAMask-HQ-mask-anno"
ATTRIBUTE_FILE = "CelebAMask-HQ-attribute-anno.txt"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
PARTITION_FILE = "list_eval_partition.txt"
PARTITION_TAGS = {"0": "train", "1": "val", "2": "test"}
MASK_NAME = re.compile(r"^(\d+)_(.+)\.png$", re.IGNORECASE)
PART_ID = {part: i + 1 for i, part in enumerate(CELEBAMASK_HQ_PARTS)}

LAYOUT = (f"expected the official CelebAMask-HQ layout under --root: {IMAGE_DIR}/<k>.jpg, "
          f"{MASK_DIR}/<k // 2000>/<k:05d>_<part>.png, optionally {ATTRIBUTE_FILE}, {MAPPING_FILE} and "
          f"{PARTITION_FILE}")


def parse_attribute_file(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """CelebA-style attribute file -> (names, {file name: uint8 0/1 [A]}). Splits on any whitespace."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConversionError(f"cannot read attribute file {path}: {err}") from None
    lines = [line for line in lines if line.strip()]
    if len(lines) < 2:
        raise ConversionError(f"attribute file {path} has no header: expected line 1 the count, line 2 the names")
    try:
        count = int(lines[0].split()[0])
    except ValueError:
        raise ConversionError(f"attribute file {path}: line 1 should be the row count, got {lines[0]!r}") from None
    names = lines[1].split()
    rows: dict[str, np.ndarray] = {}
    for number, line in enumerate(lines[2:], start=3):
        tokens = line.split()
        if len(tokens) != len(names) + 1:
            raise ConversionError(f"attribute file {path} line {number}: {len(tokens)} fields, expected a file name "
                                  f"and {len(names)} values")
        try:
            values = np.array([int(v) for v in tokens[1:]])
        except ValueError:
            raise ConversionError(f"attribute file {path} line {number}: values must be -1 or 1") from None
        if not np.isin(values, (-1, 1)).all():
            raise ConversionError(f"attribute file {path} line {number}: values must be -1 or 1")
        rows[tokens[0]] = ((values + 1) // 2).astype(np.uint8)
    if len(rows) != count:
        raise ConversionError(f"attribute file {path}: line 1 says {count} rows, found {len(rows)}")
    return names, rows


def parse_mapping(path: Path) -> dict[int, int]:
    """CelebA-HQ-to-CelebA-mapping.txt -> {HQ index: CelebA file number (1-based)}; checks orig_idx vs orig_file."""
    mapping: dict[int, int] = {}
    lines = Path(path).read_text().splitlines()
    for number, line in enumerate(lines[1:], start=2):
        tokens = line.split()
        if not tokens:
            continue
        try:
            idx, orig_idx, orig_file = int(tokens[0]), int(tokens[1]), tokens[2]
            file_number = int(Path(orig_file).stem)
        except (ValueError, IndexError):
            raise ConversionError(f"mapping file {path} line {number}: expected 'idx orig_idx orig_file', "
                                  f"got {line!r}") from None
        if file_number != orig_idx + 1:
            raise ConversionError(f"mapping file {path} line {number}: orig_idx {orig_idx} (0-based) does not match "
                                  f"orig_file {orig_file} (1-based)")
        mapping[idx] = file_number
    return mapping


def parse_partition(path: Path) -> dict[int, str]:
    """CelebA list_eval_partition.txt -> {CelebA file number: 'train' | 'val' | 'test'}."""
    partition: dict[int, str] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            partition[int(Path(tokens[0]).stem)] = PARTITION_TAGS[tokens[1]]
        except (ValueError, IndexError, KeyError):
            raise ConversionError(f"partition file {path} line {number}: expected '<file> 0|1|2', "
                                  f"got {line!r}") from None
    return partition


def list_images(root: Path) -> list[tuple[int, Path]]:
    image_dir = root / IMAGE_DIR
    if not image_dir.is_dir():
        raise ConversionError(f"missing folder {image_dir}; {LAYOUT}")
    images = []
    for path in image_dir.iterdir():
        if path.suffix.lower() in (".jpg", ".jpeg", ".png") and path.stem.isdigit():
            images.append((int(path.stem), path))
    if not images:
        raise ConversionError(f"no <k>.jpg images in {image_dir}; {LAYOUT}")
    return sorted(images)


def index_masks(root: Path) -> tuple[dict[int, list[tuple[str, Path]]], list[Path]]:
    """{k: [(part, path), ...]} over all numbered folders of the mask directory, and the files not named like masks."""
    mask_dir = root / MASK_DIR
    if not mask_dir.is_dir():
        raise ConversionError(f"missing folder {mask_dir}; {LAYOUT}")
    masks: dict[int, list[tuple[str, Path]]] = {}
    ignored: list[Path] = []
    folders = [p for p in mask_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    if not folders:
        raise ConversionError(f"no numbered folders (0..14) in {mask_dir}; {LAYOUT}")
    for folder in folders:
        for path in folder.iterdir():
            match = MASK_NAME.match(path.name)
            if match is None:
                ignored.append(path)
                continue
            masks.setdefault(int(match.group(1)), []).append((match.group(2), path))
    return masks, ignored


def merge_masks(masks: list[tuple[str, Path]]) -> np.ndarray:
    """Paint the binary part masks in the official order (later parts win): uint8 label map with official ids."""
    for part, path in masks:
        if part not in PART_ID:
            raise BadItem(f"mask file {path} has unknown part name {part!r}; known parts: "
                          f"{', '.join(CELEBAMASK_HQ_PARTS)}")
    labels = None
    for part, path in sorted(masks, key=lambda m: PART_ID[m[0]]):
        mask = load_gray(path)
        if labels is None:
            labels = np.zeros(mask.shape, dtype=np.uint8)
        elif mask.shape != labels.shape:
            raise BadItem(f"mask file {path} is {mask.shape[1]}x{mask.shape[0]}, the other masks of this image are "
                          f"{labels.shape[1]}x{labels.shape[0]}")
        labels[mask > 0] = PART_ID[part]
    if labels is None:
        raise BadItem("no mask files")
    return labels


def build_split(root: Path, keys: list[int], args) -> tuple[list[str | None], dict, list[str]]:
    """Split tag per image: the standard CelebA split if mapping + partition exist, else a seeded random split."""
    mapping_path = root / MAPPING_FILE
    partition_path = Path(args.partition) if args.partition else root / PARTITION_FILE
    if args.partition and not partition_path.is_file():
        raise ConversionError(f"--partition {partition_path} does not exist (expected CelebA's "
                              f"{PARTITION_FILE}: '<orig_file> 0|1|2' per line)")
    if mapping_path.is_file() and partition_path.is_file():
        mapping, partition = parse_mapping(mapping_path), parse_partition(partition_path)
        tags = [partition.get(mapping.get(k, -1)) for k in keys]
        details = {"split": "standard", "split_files": [str(mapping_path), str(partition_path)]}
        notes = [f"split: CelebA standard split via {mapping_path.name} and {partition_path}"]
        missing = sum(t is None for t in tags)
        if missing:
            notes.append(f"{missing} images have no entry in the mapping/partition files (skippable with --skip-bad)")
        return tags, details, notes
    absent = [str(p) for p in (mapping_path, partition_path) if not p.is_file()]
    tags = seeded_split(len(keys), args.seed, args.val_fraction, args.test_fraction)
    details = {"split": "seeded_random", "seed": args.seed, "val_fraction": args.val_fraction,
               "test_fraction": args.test_fraction, "split_files_missing": absent}
    notes = [f"split: seeded random split (seed {args.seed}, val {args.val_fraction}, test {args.test_fraction}) "
             f"because {', '.join(absent)} not found; the standard split needs both files"]
    return tags, details, notes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="CelebAMask-HQ folder (official layout)")
    add_common_args(parser, default_resolution=128)
    parser.add_argument("--partition", default=None, help=f"CelebA's {PARTITION_FILE} if not in --root")
    add_split_args(parser, fallback=True)
    return parser


def run(args) -> Report:
    root = source_folder(args.root, LAYOUT)
    images = list_images(root)
    if args.limit is not None:
        images = images[:args.limit]
    masks, ignored = index_masks(root)
    attribute_path = root / ATTRIBUTE_FILE
    notes: list[str] = []
    attribute_names, attributes = None, {}
    if attribute_path.is_file():
        attribute_names, attributes = parse_attribute_file(attribute_path)
    else:
        notes.append(f"no {ATTRIBUTE_FILE} in {root}: attributes not written")
    if ignored:
        notes.append(f"ignored {len(ignored)} files in {MASK_DIR} not named <k:05d>_<part>.png "
                     f"(e.g. {ignored[0]})")
    keys = [k for k, _ in images]
    tags, split_details, split_notes = build_split(root, keys, args)
    notes.extend(split_notes)
    items = [Item(path.name, tag, (k, path)) for (k, path), tag in zip(images, tags)]
    resolution = args.resolution

    def load(item: Item) -> dict:
        k, path = item.payload
        if k not in masks:
            raise BadItem(f"no mask files for image {path} in {root / MASK_DIR / str(k // 2000)} "
                          f"(expected {k:05d}_<part>.png)")
        labels = merge_masks(masks[k])
        image = load_rgb(path, draft_size=2 * resolution)
        values = {"image": resize_image(image, resolution), "labels": resize_labels(labels, resolution)}
        if attribute_names is not None:
            if path.name not in attributes:
                raise BadItem(f"no row for {path.name} in {attribute_path}")
            values["attributes"] = attributes[path.name]
        return values

    config = {"root": str(root.resolve()), "limit": args.limit, "partition": args.partition, "seed": args.seed,
              "val_fraction": args.val_fraction, "test_fraction": args.test_fraction}
    details = {**split_details, "command": args.command, "root": str(root.resolve()),
               "labels": "official CelebAMask-HQ ids: masks painted in CELEBAMASK_HQ_PARTS order, later parts win"}
    return convert(items, load, out=args.out, source="celebamask_hq", resolution=resolution,
                   classes=CELEBAMASK_HQ_CLASSES, attribute_names=attribute_names, details=details, config=config,
                   skip_bad=args.skip_bad, overwrite=args.overwrite, progress=not args.no_progress, notes=notes)


def main(argv=None) -> int:
    return run_main(build_parser(), run, argv, "prepare_celebamask_hq.py")


if __name__ == "__main__":
    sys.exit(main())
