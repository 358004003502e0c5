"""Render SynthFaces into the book's common face format (helpers.data.faceformat), with all its ground truth.

Rows are rendered in chunks with ``SynthFaces(resolution, length=count, seed).batch(indices)`` (row i = sample i)
and stored as: images.npy uint8 [N,R,R,3], labels.npy uint8 [N,R,R] (HELEN ids, classes = ds.classes),
attributes.npy uint8 [N,A] (ds.attribute_names), depth.npy float16 [N,R,R] (kind "map": read back as [1,R,R]),
albedo.npy uint8 [N,R,R,3] (kind "image"), view.npy float32 [N,6], light.npy float32 [N,L], factors.npy float32
[N,F]; any other tensor the batch holds is stored the same generic way: float [B,3,R,R] -> uint8 "image" (read
back as float [3,R,R] in [0,1]), float [B,1,R,R] -> float16 "map" (read back [1,R,R]), integer [B,R,R] -> uint8
"label" (int64), bool [B,R,R] -> uint8 "bool" (bool), float [B,R,R] -> float16 "plane", other integer tensors
int64, other float tensors float32. meta.json details name the factors, views, lights and the seed.

Split: contiguous blocks in row order, train first, then val, then test (the samples are independent draws, so
blocks are as good as a shuffle): --splits train=0.8,val=0.1,test=0.1, or --val-fraction / --test-fraction
(default 0 / 0.1).

Resumable: progress is recorded after each chunk; rerunning the same command continues, a finished dataset with
the same arguments is left as is, and other arguments over an existing output stop with an error (--overwrite).

    python data_scripts/render_synthfaces.py --out data/synthfaces_64 --resolution 64 --count 20000 --seed 0
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from helpers.data.convert import ConversionError, Report, run_main
from helpers.data.faceformat import SPLIT_NAMES, ArraySpec, FaceDatasetWriter


def parse_splits(text: str | None, val_fraction: float, test_fraction: float) -> dict[str, float]:
    """'train=0.8,val=0.1,test=0.1' -> fractions (train may be left out: the rest); else from the two fractions."""
    if text:
        fractions: dict[str, float] = {}
        for part in text.split(","):
            key, _, value = part.partition("=")
            key = key.strip()
            if key not in SPLIT_NAMES:
                raise ConversionError(f"--splits: unknown split {key!r}; allowed: {', '.join(SPLIT_NAMES)}")
            try:
                fractions[key] = float(value)
            except ValueError:
                raise ConversionError(f"--splits: {part!r} is not <split>=<fraction>") from None
        fractions.setdefault("val", 0.0)
        fractions.setdefault("test", 0.0)
        fractions.setdefault("train", 1.0 - fractions["val"] - fractions["test"])
    else:
        fractions = {"train": 1.0 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}
    if any(v < 0 for v in fractions.values()) or abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ConversionError(f"split fractions {fractions} must be >= 0 and sum to 1")
    if fractions["train"] <= 0 or fractions["test"] <= 0:
        raise ConversionError(f"split fractions {fractions}: train and test must both be > 0")
    return {k: fractions[k] for k in SPLIT_NAMES}


def split_blocks(count: int, fractions: dict[str, float]) -> dict[str, list[int]]:
    """Contiguous row blocks: train, val, test; test and val get round(count * fraction), train the rest."""
    n_test = max(1, int(round(count * fractions["test"]))) if count >= 2 else 0
    n_val = int(round(count * fractions["val"]))
    n_val = min(n_val, max(0, count - n_test - 1))
    n_train = count - n_val - n_test
    splits = {"train": list(range(n_train)), "val": list(range(n_train, n_train + n_val)),
              "test": list(range(n_train + n_val, count))}
    if not splits["val"]:
        splits.pop("val")
    return splits


def _to_numpy(value):
    import torch

    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def array_plan(batch: dict, resolution: int) -> dict[str, tuple[str, ArraySpec]]:
    """{batch key: (array name, spec)} for every tensor in a SynthFaces batch."""
    plan = {}
    R = resolution
    for key, value in batch.items():
        try:
            arr = _to_numpy(value)
        except Exception:  # noqa: BLE001 - non-array entries are not stored
            continue
        if arr.dtype == object or arr.ndim == 0:
            continue
        shape = tuple(arr.shape[1:])
        if key == "image":
            plan[key] = ("images", ArraySpec("uint8", (R, R, 3), "image"))
        elif key == "labels":
            plan[key] = ("labels", ArraySpec("uint8", (R, R), "label"))
        elif key == "attributes":
            plan[key] = ("attributes", ArraySpec("uint8", shape, "attributes"))
        elif shape == (3, R, R):
            plan[key] = (key, ArraySpec("uint8", (R, R, 3), "image"))
        elif shape == (1, R, R) and arr.dtype.kind == "f":
            plan[key] = (key, ArraySpec("float16", (R, R), "map"))
        elif shape == (R, R) and arr.dtype.kind == "b":
            plan[key] = (key, ArraySpec("uint8", (R, R), "bool"))
        elif shape == (R, R) and arr.dtype.kind in "iu":
            plan[key] = (key, ArraySpec("uint8", (R, R), "label"))
        elif shape == (R, R) and arr.dtype.kind == "f":
            plan[key] = (key, ArraySpec("float16", (R, R), "plane"))
        elif arr.dtype.kind in "iub":
            plan[key] = (key, ArraySpec("int64", shape, "vector"))
        else:
            plan[key] = (key, ArraySpec("float32", shape, "vector"))
    for required in ("image", "labels"):
        if required not in plan:
            raise ConversionError(f"SynthFaces batch has no {required!r} (keys: {sorted(batch)})")
    return plan


def batch_to_rows(batch: dict, plan: dict[str, tuple[str, ArraySpec]]) -> dict[str, np.ndarray]:
    """Batched tensors -> arrays in the stored dtypes and layouts."""
    rows = {}
    for key, (name, spec) in plan.items():
        arr = _to_numpy(batch[key])
        if spec.kind == "image":
            arr = np.clip(np.rint(np.moveaxis(arr.astype(np.float32), 1, -1) * 255.0), 0, 255).astype(np.uint8)
        elif spec.kind == "map":
            arr = arr[:, 0].astype(np.float16)
        elif spec.kind == "plane":
            arr = arr.astype(np.float16)
        elif spec.kind in ("label", "attributes", "bool"):
            arr = np.rint(arr) if arr.dtype.kind == "f" else arr
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise ConversionError(f"SynthFaces {key!r} has values outside 0..255: cannot store as uint8")
            arr = arr.astype(np.uint8)
        else:
            arr = arr.astype(np.dtype(spec.dtype))
        rows[name] = arr
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output dataset directory (created)")
    parser.add_argument("--resolution", type=int, default=64, help="image side (default 64)")
    parser.add_argument("--count", type=int, default=10000, help="number of faces (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="SynthFaces seed (default 0)")
    parser.add_argument("--val-fraction", type=float, default=0.0, help="validation fraction (default 0)")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="test fraction (default 0.1)")
    parser.add_argument("--splits", default=None, help="e.g. train=0.8,val=0.1,test=0.1 (overrides the fractions)")
    parser.add_argument("--chunk-size", type=int, default=64, help="faces rendered per batch (default 64)")
    parser.add_argument("--overwrite", action="store_true", help="replace an output made with other arguments")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def load_synthfaces_class():
    try:
        from helpers.data.synthfaces import SynthFaces
    except ImportError as err:
        raise ConversionError(f"cannot import helpers.data.synthfaces.SynthFaces: {err}") from None
    return SynthFaces


def run(args) -> Report:
    from tqdm import tqdm

    if args.count < 2:
        raise ConversionError(f"--count {args.count}: need at least 2 faces (a train and a test one)")
    if args.resolution < 8 or args.chunk_size < 1:
        raise ConversionError(f"--resolution {args.resolution} (>= 8) or --chunk-size {args.chunk_size} (>= 1) "
                              "out of range")
    fractions = parse_splits(args.splits, args.val_fraction, args.test_fraction)
    SynthFaces = load_synthfaces_class()
    ds = SynthFaces(resolution=args.resolution, length=args.count, seed=args.seed)
    plan = array_plan(ds.batch([0]), args.resolution)
    names = {k: list(getattr(ds, k, []) or []) for k in ("factor_names", "view_names", "light_names")}
    attribute_names = list(ds.attribute_names) if "attributes" in plan else None
    extras = {name: spec for key, (name, spec) in plan.items() if name not in ("images", "labels", "attributes")}
    config = {"count": args.count, "seed": args.seed, "resolution": args.resolution, "splits": fractions}
    details = {"seed": args.seed, "generator": "helpers.data.synthfaces.SynthFaces", **names,
               "split": "contiguous blocks: train, val, test", "split_fractions": fractions,
               "command": args.command}
    writer = FaceDatasetWriter(args.out, "synthfaces", args.resolution, args.count, classes=list(ds.classes),
                               attribute_names=attribute_names, extra_arrays=extras, details=details,
                               config=config, overwrite=args.overwrite)
    splits = split_blocks(args.count, fractions)
    report = Report(Path(args.out), args.count, [], {k: len(v) for k, v in splits.items()})
    if writer.complete:
        report.already_complete = True
        return report
    start = writer.rows_done
    if start:
        report.notes.append(f"resumed after {start} of {args.count} faces")
    bar = tqdm(total=args.count, initial=start, desc=f"synthfaces -> {Path(args.out).name}", unit="face",
               file=sys.stderr, disable=True if args.no_progress else None, dynamic_ncols=True)
    try:
        for s in range(start, args.count, args.chunk_size):
            indices = list(range(s, min(s + args.chunk_size, args.count)))
            writer.write_batch(s, **batch_to_rows(ds.batch(indices), plan))
            writer.checkpoint(indices[-1] + 1)
            bar.update(len(indices))
    finally:
        bar.close()
    writer.finish(splits, [f"synthfaces/seed{args.seed}/{i}" for i in range(args.count)])
    return report


def main(argv=None) -> int:
    return run_main(build_parser(), run, argv, "render_synthfaces.py")


if __name__ == "__main__":
    sys.exit(main())
