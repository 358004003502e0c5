"""Plumbing shared by the dataset converters in data_scripts/: reading images, square crops, resizing, seeded
splits, and a resumable conversion loop that writes the common format (see faceformat) and reports what it did."""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .faceformat import SPLIT_NAMES, FaceDatasetWriter, FormatError, load_meta, read_json


class ConversionError(ValueError):
    """A problem that stops a conversion: printed as one line ``error: ...`` by the scripts."""


class BadItem(Exception):
    """One source image (or its masks) cannot be converted; skippable with --skip-bad."""


def load_rgb(path: Path, draft_size: int | None = None):
    """Open an image fully as RGB; BadItem naming the file if it is missing, truncated or not an image."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if draft_size and img.format == "JPEG":
                # JPEG DCT scaling to at least twice the target size: much faster, and the antialiased resize follows.
                img.draft("RGB", (draft_size, draft_size))
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise BadItem(f"missing image file {path}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise BadItem(f"cannot read image {path} ({type(err).__name__}: {err})") from None


def load_gray(path: Path) -> np.ndarray:
    """Open a mask / soft label map as a 2-D uint8 array (RGB ones: the maximum over channels)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("L", "1"):
                arr = np.asarray(img)
            elif img.mode == "P":
                arr = np.asarray(img.convert("L"))
            elif img.mode.startswith("I"):
                arr = np.clip(np.asarray(img), 0, 255)
            else:
                arr = np.asarray(img.convert("RGB")).max(axis=2)
    except FileNotFoundError:
        raise BadItem(f"missing mask file {path}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise BadItem(f"cannot read mask {path} ({type(err).__name__}: {err})") from None
    return arr.astype(np.uint8)


def square_box(width: int, height: int, mode: str = "center") -> tuple[int, int, int, int]:
    """Box (left, top, right, bottom) of the centred square: cropped ("center") or padded ("pad") to the square."""
    if mode == "center":
        side = min(width, height)
    elif mode == "pad":
        side = max(width, height)
    else:
        raise ValueError(f"unknown crop mode {mode!r}; expected 'center' or 'pad'")
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def resize_image(img, resolution: int, crop: str = "center") -> np.ndarray:
    """PIL RGB image -> uint8 [R,R,3]: centre square crop (or zero pad), then antialiased Lanczos resize."""
    from PIL import Image

    img = img.crop(square_box(*img.size, crop))  # PIL pads out-of-range boxes with black
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


def resize_labels(labels: np.ndarray, resolution: int, crop: str = "center") -> np.ndarray:
    """uint8 label map [H,W] -> [R,R]: the same square crop / zero (background) pad, then nearest resize."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8), mode="L")
    img = img.crop(square_box(*img.size, crop))
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.NEAREST)
    return np.asarray(img, dtype=np.uint8)


def seeded_split(n: int, seed: int, val_fraction: float, test_fraction: float) -> list[str]:
    """Split tags for n items: a random permutation (numpy default_rng(seed)); the first round(n * test_fraction)
    positions of it are test, the next round(n * val_fraction) val, the rest train. With n >= 2 and a positive
    test fraction, test gets at least one item and train keeps at least one."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConversionError(f"bad split fractions val={val_fraction} test={test_fraction}: need 0 <= each, sum < 1")
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    if test_fraction > 0 and n >= 2:
        n_test = max(n_test, 1)
    while n_test + n_val >= n and n_test + n_val > 0 and n >= 1:
        if n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    order = np.random.default_rng(seed).permutation(n)
    tags = ["train"] * n
    for pos in order[:n_test]:
        tags[pos] = "test"
    for pos in order[n_test:n_test + n_val]:
        tags[pos] = "val"
    return tags


def add_common_args(parser, default_resolution: int = 128) -> None:
    """The arguments every converter shares."""
    parser.add_argument("--out", required=True, help="output dataset directory (created)")
    parser.add_argument("--resolution", type=int, default=default_resolution,
                        help=f"side of the square output images (default {default_resolution})")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unreadable / inconsistent images (counted and listed in the report) "
                             "instead of stopping")
    parser.add_argument("--limit", type=int, default=None, help="convert only the first N images")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output made with other arguments")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_crop_arg(parser) -> None:
    """--crop of converters whose images are not square."""
    parser.add_argument("--crop", choices=("center", "pad"), default="center",
                        help="square box: centre crop to the shorter side (default) or zero pad to the longer")


def source_folder(root, expected: str) -> Path:
    """`root` as a Path, or a ConversionError naming it and the `expected` layout when it is not a folder."""
    root = Path(root)
    if not root.is_dir():
        raise ConversionError(f"--root {root} is not a folder; {expected}")
    return root


def add_split_args(parser, fallback: bool) -> None:
    """--seed, --val-fraction, --test-fraction of a seeded random split (`fallback`: used only without split files)."""
    what = "fallback random split" if fallback else "random split"
    parser.add_argument("--seed", type=int, default=0, help=f"seed of the {what} (default 0)")
    parser.add_argument("--val-fraction", type=float, default=0.05, help=f"{what}: validation fraction (default 0.05)")
    parser.add_argument("--test-fraction", type=float, default=0.05, help=f"{what}: test fraction (default 0.05)")


@dataclass
class Item:
    """One source image to convert: its name (names.txt), split tag (None: unknown -> BadItem), loader payload."""

    name: str
    split: str | None
    payload: Any = None


@dataclass
class Report:
    out: Path
    converted: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)
    already_complete: bool = False
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = []
        if self.already_complete:
            lines.append(f"{self.out} is already complete with these arguments: left as is")
        lines.append(f"converted {self.converted} images to {self.out}")
        lines.append(f"skipped {len(self.skipped)}" + (":" if self.skipped else ""))
        for name, why in self.skipped[:5]:
            lines.append(f"  {name}: {why}")
        if len(self.skipped) > 5:
            lines.append(f"  ... and {len(self.skipped) - 5} more (all in meta.json details)")
        lines.append("splits: " + ", ".join(f"{k} {v}" for k, v in self.splits.items()))
        lines.extend(self.notes)
        return "\n".join(lines)


def convert(items: Sequence[Item], load: Callable[[Item], dict], *, out, source: str, resolution: int,
            classes: Sequence[str] = (), attribute_names: Sequence[str] | None = None, details: dict | None = None,
            config: dict | None = None, skip_bad: bool = False, overwrite: bool = False, progress: bool = True,
            checkpoint_every: int = 256, notes: Iterable[str] = ()) -> Report:
    """Convert ``items`` in order with ``load(item) -> {"image": uint8 [R,R,3], "labels"?: [R,R], "attributes"?: [A]}``.

    ``load`` raises BadItem for an image that cannot be converted: stop with ConversionError naming it, or with
    ``skip_bad`` skip it and record it. Resumable: the writer's progress.json holds the position in ``items``, the
    rows written, their names and split tags, and the skipped items; a rerun with the same ``config`` continues.
    """
    from tqdm import tqdm

    if not items:
        raise ConversionError(f"no images to convert; nothing written to {out}")
    # the list of source images (names and split tags) is part of the arguments: a changed source folder cannot
    # silently resume at the wrong position
    listing = hashlib.sha1("\n".join(f"{it.name}\t{it.split}" for it in items).encode()).hexdigest()
    config = {**(config or {}), "source_files_sha1": listing}
    writer = FaceDatasetWriter(out, source, resolution, len(items), classes=classes, attribute_names=attribute_names,
                               details=details, config=config, overwrite=overwrite)
    notes = list(notes)
    if writer.complete:
        meta = load_meta(out)
        splits = read_json(Path(out) / "splits.json")
        skipped = [tuple(s) for s in meta.get("details", {}).get("skipped", [])]
        return Report(Path(out), meta["count"], skipped, {k: len(v) for k, v in splits.items()}, True, notes)
    state = writer.state or {}
    cursor = int(state.get("cursor", 0))
    names: list[str] = list(state.get("names", []))[:writer.rows_done]
    tags: list[str] = list(state.get("tags", []))[:writer.rows_done]
    skipped: list[list[str]] = list(state.get("skipped", []))
    row = writer.rows_done
    if cursor:
        notes.append(f"resumed after {cursor} of {len(items)} source images")

    def save() -> None:
        writer.checkpoint(row, {"cursor": cursor, "names": names, "tags": tags, "skipped": skipped})

    bar = tqdm(total=len(items), initial=cursor, desc=f"{source} -> {Path(out).name}", unit="img",
               file=sys.stderr, disable=None if progress else True, dynamic_ncols=True)
    try:
        while cursor < len(items):
            item = items[cursor]
            try:
                if item.split is None:
                    raise BadItem(f"{item.name} has no split assignment")
                values = load(item)
            except BadItem as err:
                if not skip_bad:
                    raise ConversionError(f"{err} (pass --skip-bad to skip such images)") from None
                skipped.append([item.name, str(err)])
            else:
                writer.write(row, **values)
                names.append(item.name)
                tags.append(item.split)
                row += 1
            cursor += 1
            bar.update(1)
            if cursor % checkpoint_every == 0:
                save()
    except BaseException:
        save()  # keep what is done: a rerun resumes from here
        raise
    finally:
        bar.close()
    save()
    splits = {k: [i for i, t in enumerate(tags) if t == k] for k in SPLIT_NAMES}
    if not splits["val"]:
        splits.pop("val")
    if row == 0:
        raise ConversionError(f"no image could be converted ({len(skipped)} skipped); nothing written to {out}")
    writer.finish(splits, names, {**(details or {}), "skipped_count": len(skipped), "skipped": skipped,
                                  "split_sizes": {k: len(v) for k, v in splits.items()}})
    return Report(Path(out), row, [tuple(s) for s in skipped], {k: len(v) for k, v in splits.items()}, False, notes)


def run_main(parser, run: Callable[[Any], Report | int], argv: Sequence[str] | None, script: str) -> int:
    """Parse the command line, run the converter (its arguments carry `command`, the command line, for meta.json) and
    print its report to stdout, or ``error: ...`` (one line) to stderr and return 2."""
    args = parser.parse_args(argv)
    args.command = " ".join([script, *(sys.argv[1:] if argv is None else argv)])
    try:
        result = run(args)
    except (ConversionError, FormatError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    if isinstance(result, Report):
        print(result.text())
        return 0
    return int(result or 0)
