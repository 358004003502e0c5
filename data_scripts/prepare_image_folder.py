"""Convert any folder of face images (e.g. FFHQ) into the book's common face format (helpers.data.faceformat).

Every .jpg / .jpeg / .png / .webp file under --root (recursively, case-insensitive extension; hidden files and
folders, and anything inside --out, are left out) is taken in sorted order of its path relative to --root,
centre-cropped to a square (or zero-padded with --crop pad), Lanczos-resized to --resolution, and stored without
labels. Split: seeded random (numpy default_rng(--seed) permutation; --val-fraction, --test-fraction, default
5 % each). names.txt holds the relative paths.

    python data_scripts/prepare_image_folder.py --root /data/ffhq/images1024x1024 --out /data/faces/ffhq_128
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helpers.data.convert import (
    ConversionError, Item, Report, add_common_args, add_crop_arg, add_split_args, convert, load_rgb, resize_image, run_main,
    seeded_split, source_folder,
)

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def list_images(root: Path, exclude: Path | None = None) -> list[str]:
    """Relative POSIX paths of the images under root, sorted; hidden entries and ``exclude`` left out."""
    root = root.resolve()
    exclude = exclude.resolve() if exclude is not None else None
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if exclude is not None and (path == exclude or exclude in path.parents):
            continue
        if path.suffix.lower() in EXTENSIONS and path.is_file():
            found.append(rel.as_posix())
    return sorted(found)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="folder of images (searched recursively)")
    add_common_args(parser, default_resolution=128)
    add_crop_arg(parser)
    add_split_args(parser, fallback=False)
    return parser


def run(args) -> Report:
    root = source_folder(args.root, f"expected a folder holding {', '.join(EXTENSIONS)} images (searched recursively)")
    names = list_images(root, exclude=Path(args.out))
    if not names:
        raise ConversionError(f"no {', '.join(EXTENSIONS)} images under {root}")
    if args.limit is not None:
        names = names[:args.limit]
    tags = seeded_split(len(names), args.seed, args.val_fraction, args.test_fraction)
    items = [Item(n, t, root / n) for n, t in zip(names, tags)]
    resolution, crop = args.resolution, args.crop

    def load(item: Item) -> dict:
        return {"image": resize_image(load_rgb(item.payload, draft_size=2 * resolution), resolution, crop)}

    config = {"root": str(root.resolve()), "limit": args.limit, "crop": crop, "seed": args.seed,
              "val_fraction": args.val_fraction, "test_fraction": args.test_fraction}
    details = {"split": "seeded_random", "seed": args.seed, "val_fraction": args.val_fraction,
               "test_fraction": args.test_fraction, "crop": crop, "command": args.command,
               "root": str(root.resolve())}
    notes = [f"split: seeded random split (seed {args.seed}, val {args.val_fraction}, test {args.test_fraction})"]
    return convert(items, load, out=args.out, source="image_folder", resolution=resolution, classes=(),
                   details=details, config=config, skip_bad=args.skip_bad, overwrite=args.overwrite,
                   progress=not args.no_progress, notes=notes)


def main(argv=None) -> int:
    return run_main(build_parser(), run, argv, "prepare_image_folder.py")


if __name__ == "__main__":
    sys.exit(main())
