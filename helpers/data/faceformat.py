"""The book's one on-disk face dataset format ("helpers-faces", version 1): writer and reader.

Every real dataset (CelebAMask-HQ, HELEN, any folder of face images) and SynthFaces are converted by the scripts in
``data_scripts/`` into a directory laid out as below, and read by :class:`FaceDataset`.

Layout of a dataset directory::

    meta.json      written LAST: its presence marks a complete dataset
    images.npy     uint8   [N, R, R, 3]   RGB images, R = resolution
    labels.npy     uint8   [N, R, R]      label maps, ids index ``meta["classes"]`` (absent when classes == [])
    attributes.npy uint8   [N, A]         0/1 attributes named by ``meta["attribute_names"]`` (when present)
    <extra>.npy    any                    optional ground truth (SynthFaces: depth, albedo, view, light, factors)
    splits.json    {"train": [rows], "val": [rows], "test": [rows]}  ("train" and "test" always present)
    names.txt      one line per row: the source file name / id of that row (provenance)
    progress.json  only while a conversion is unfinished (rows done, converter state); removed by finish()

``meta.json``::

    {"format": "helpers-faces", "version": 1, "source": "celebamask_hq" | "helen" | "image_folder" | "synthfaces",
     "resolution": R, "count": N, "classes": [...], "attribute_names": [...] (only when attributes.npy exists),
     "arrays": {name: {"file": "name.npy", "dtype": "uint8", "shape": [N, ...], "kind": kind}},
     "details": {free form: "config" (the arguments that made it), seed, split method, skipped count, ...}}

``kind`` tells the reader how to turn one row into a tensor: ``image`` (uint8 [H,W,3] -> float32 [3,H,W] in [0,1]),
``label`` (-> int64 [H,W]), ``attributes`` (-> float32 [A]), ``map`` ([H,W] -> float32 [1,H,W]), ``plane``
([H,W] -> float32 [H,W]), ``bool`` (-> bool), ``vector`` (-> float32, or int64 for integer arrays).

All ``.npy`` files are written through ``numpy.lib.format.open_memmap`` and read with ``np.load(mmap_mode="r")``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from numpy.lib.format import open_memmap

from ..checkpoint import describe_differences

FORMAT_NAME = "helpers-faces"
FORMAT_VERSION = 1
SPLIT_NAMES = ("train", "val", "test")
SOURCES = ("celebamask_hq", "helen", "image_folder", "synthfaces")
KINDS = ("image", "label", "attributes", "map", "plane", "bool", "vector")

CONVERT_COMMANDS = (
    "python data_scripts/prepare_celebamask_hq.py --root <CelebAMask-HQ folder> --out {out}",
    "python data_scripts/prepare_helen.py --root <HELEN folder> --out {out}",
    "python data_scripts/prepare_image_folder.py --root <folder of images> --out {out}",
    "python data_scripts/render_synthfaces.py --out {out}",
)
LAYOUT_TEXT = (
    "meta.json, images.npy (uint8 [N,R,R,3]), labels.npy (uint8 [N,R,R], when labelled), attributes.npy "
    "(uint8 [N,A], when present), optional ground-truth .npy files, splits.json, names.txt"
)


class FormatError(ValueError):
    """A dataset directory that is missing, incomplete, inconsistent, or made with other arguments."""


# ----------------------------------------------------------------------------------------------------------------
# small JSON helpers


def _write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    """Atomic JSON write: write a temporary file next to it, then rename."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=indent)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise FormatError(f"cannot read {path}: {err}") from None


def _normalise(obj: Any) -> Any:
    """JSON round trip, so that tuples/lists and int/float spellings compare equal."""
    return json.loads(json.dumps(obj))


# ----------------------------------------------------------------------------------------------------------------
# writer


@dataclass
class ArraySpec:
    """One array of the format: dtype and per-row shape (the leading N is added by the writer)."""

    dtype: str
    shape: tuple[int, ...]
    kind: str = "vector"

    def to_json(self, count: int, name: str) -> dict:
        return {"file": f"{name}.npy", "dtype": np.dtype(self.dtype).name, "shape": [count, *self.shape],
                "kind": self.kind}


def _as_spec(name: str, spec: Any) -> ArraySpec:
    if isinstance(spec, ArraySpec):
        return spec
    if isinstance(spec, dict):
        return ArraySpec(spec["dtype"], tuple(spec["shape"]), spec.get("kind", "vector"))
    dtype, shape, *rest = spec
    kind = rest[0] if rest else "vector"
    if kind not in KINDS:
        raise FormatError(f"array {name!r}: unknown kind {kind!r}; expected one of {KINDS}")
    return ArraySpec(np.dtype(dtype).name, tuple(int(s) for s in shape), kind)


class FaceDatasetWriter:
    """Preallocates the arrays of a dataset as memmaps, fills them row by row, and resumes an unfinished run.

    Args:
        out: dataset directory (created).
        source: one of SOURCES.
        resolution: side R of the square images.
        count: number of rows to preallocate (an upper bound: ``finish`` may keep fewer, e.g. after skipped images).
        classes: class names of labels.npy (empty: no labels).
        attribute_names: names of the 0/1 attributes (None: no attributes).
        extra_arrays: {name: ArraySpec | (dtype, per-row shape[, kind])} of ground-truth arrays.
        details: free-form JSON-able details for meta.json.
        config: the JSON-able arguments that determine the content; a rerun with the same config resumes (or leaves
            a finished dataset alone), a different one raises FormatError unless ``overwrite``.
        overwrite: delete an existing dataset (finished or not) at ``out`` made with another config.

    After construction: ``complete`` (a finished dataset with the same config is already there: nothing to do),
    ``rows_done`` and ``state`` (what the last ``checkpoint`` recorded; 0 and {} for a fresh start).
    """

    def __init__(self, out, source: str, resolution: int, count: int, classes: Sequence[str] = (),
                 attribute_names: Sequence[str] | None = None, extra_arrays: dict | None = None,
                 details: dict | None = None, config: dict | None = None, overwrite: bool = False):
        if source not in SOURCES:
            raise FormatError(f"unknown source {source!r}; expected one of {SOURCES}")
        if count < 0 or resolution <= 0:
            raise FormatError(f"bad count {count} or resolution {resolution}")
        self.out = Path(out)
        self.source = source
        self.resolution = int(resolution)
        self.count = int(count)
        self.classes = list(classes)
        self.attribute_names = None if attribute_names is None else list(attribute_names)
        self.details = dict(details or {})
        R = self.resolution
        specs: dict[str, ArraySpec] = {"images": ArraySpec("uint8", (R, R, 3), "image")}
        if self.classes:
            if len(self.classes) > 256:
                raise FormatError("labels.npy is uint8: at most 256 classes")
            specs["labels"] = ArraySpec("uint8", (R, R), "label")
        if self.attribute_names is not None:
            specs["attributes"] = ArraySpec("uint8", (len(self.attribute_names),), "attributes")
        for name, spec in (extra_arrays or {}).items():
            if name in specs or name in ("meta", "progress", "splits", "names"):
                raise FormatError(f"extra array name {name!r} is reserved")
            specs[name] = _as_spec(name, spec)
        self.specs = specs
        self.config = _normalise({
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "source": source, "resolution": R, "count": self.count,
            "classes": self.classes, "attribute_names": self.attribute_names,
            "arrays": {k: [v.dtype, list(v.shape), v.kind] for k, v in specs.items()},
            "args": config or {},
        })
        self.complete = False
        self.rows_done = 0
        self.state: dict = {}
        self.arrays: dict[str, np.memmap] = {}

        if self.out.exists() and not self.out.is_dir():
            raise FormatError(f"output {self.out} exists and is not a directory")
        meta_path, progress_path = self.out / "meta.json", self.out / "progress.json"
        if meta_path.exists():
            old = read_json(meta_path).get("details", {}).get("config")
            if old == self.config:
                self.complete = True
                return
            if not overwrite:
                changed = describe_differences(old or {}, self.config, names=("existing", "requested"))
                raise FormatError(
                    f"{self.out} already holds a finished dataset made with different arguments "
                    f"({changed or 'unknown config'}); "
                    "choose another --out or pass --overwrite to replace it")
            self._remove_existing()
        elif progress_path.exists():
            progress = read_json(progress_path)
            if progress.get("config") == self.config:
                self._open("r+")
                self.rows_done = int(progress.get("rows_done", 0))
                self.state = progress.get("state", {})
                return
            if not overwrite:
                changed = describe_differences(progress.get("config") or {}, self.config, names=("existing", "requested"))
                raise FormatError(
                    f"{self.out} holds an unfinished conversion made with different arguments ({changed}); rerun with the "
                    "original arguments to resume, choose another --out, or pass --overwrite to start again")
            self._remove_existing()
        self.out.mkdir(parents=True, exist_ok=True)
        self._open("w+")
        self.checkpoint(0, {})

    # -- files
    def _remove_existing(self) -> None:
        for name in ("meta.json", "progress.json", "splits.json", "names.txt"):
            (self.out / name).unlink(missing_ok=True)
        for path in self.out.glob("*.npy"):
            path.unlink()

    def _open(self, mode: str) -> None:
        for name, spec in self.specs.items():
            path = self.out / f"{name}.npy"
            shape = (self.count, *spec.shape)
            if mode == "r+":
                if not path.exists():
                    raise FormatError(f"cannot resume: {path} is missing; pass --overwrite to start again")
                arr = open_memmap(path, mode="r+")
                if arr.shape != shape or arr.dtype != np.dtype(spec.dtype):
                    raise FormatError(f"cannot resume: {path} has shape {arr.shape} {arr.dtype}, expected {shape} "
                                      f"{spec.dtype}; pass --overwrite to start again")
            else:
                arr = open_memmap(path, mode="w+", dtype=np.dtype(spec.dtype), shape=shape)
            self.arrays[name] = arr

    # -- rows
    def write(self, index: int, *, image=None, labels=None, attributes=None, **extras) -> None:
        """Write one row. ``image`` uint8 [R,R,3], ``labels`` [R,R] ids, ``attributes`` 0/1 [A], extras by name."""
        if self.complete:
            raise FormatError(f"{self.out} is already complete")
        if not 0 <= index < self.count:
            raise IndexError(f"row {index} outside 0..{self.count - 1}")
        values = {"images": image, "labels": labels, "attributes": attributes, **extras}
        for name, value in values.items():
            if value is None:
                continue
            if name not in self.arrays:
                raise FormatError(f"array {name!r} was not declared (declared: {sorted(self.arrays)})")
            value = np.asarray(value)
            target = self.arrays[name]
            if value.shape != target.shape[1:]:
                raise FormatError(f"{name}: row shape {value.shape}, expected {target.shape[1:]}")
            target[index] = value

    def write_batch(self, start: int, **arrays) -> None:
        """Write rows start..start+B-1 at once; keys as in ``write`` but batched (``images`` for images)."""
        for name, value in arrays.items():
            key = {"image": "images"}.get(name, name)
            if key not in self.arrays:
                raise FormatError(f"array {key!r} was not declared (declared: {sorted(self.arrays)})")
            value = np.asarray(value)
            target = self.arrays[key]
            if value.shape[1:] != target.shape[1:] or start < 0 or start + len(value) > self.count:
                raise FormatError(f"{key}: batch shape {value.shape} at row {start} does not fit {target.shape}")
            target[start:start + len(value)] = value

    def checkpoint(self, rows_done: int, state: dict | None = None) -> None:
        """Flush the memmaps, then record ``rows_done`` and the converter's JSON-able ``state`` in progress.json."""
        for arr in self.arrays.values():
            arr.flush()
        self.rows_done = int(rows_done)
        self.state = state or {}
        _write_json(self.out / "progress.json",
                    {"config": self.config, "rows_done": self.rows_done, "state": self.state})

    def finish(self, splits: dict[str, Sequence[int]], names: Sequence[str], details: dict | None = None) -> dict:
        """Write splits.json, names.txt and (last) meta.json; the dataset keeps ``len(names)`` rows."""
        count = len(names)
        if count > self.count:
            raise FormatError(f"{count} names for {self.count} preallocated rows")
        splits = {k: [int(i) for i in v] for k, v in splits.items()}
        unknown = set(splits) - set(SPLIT_NAMES)
        if unknown or "train" not in splits or "test" not in splits:
            raise FormatError(f"splits must have keys train and test (and optionally val), got {sorted(splits)}")
        seen: set[int] = set()
        for key, rows in splits.items():
            bad = [i for i in rows if not 0 <= i < count]
            if bad:
                raise FormatError(f"split {key!r} has rows outside 0..{count - 1}: {bad[:5]}")
            if seen & set(rows):
                raise FormatError(f"split {key!r} overlaps another split")
            seen |= set(rows)
        for name in names:
            if "\n" in str(name) or "\r" in str(name):
                raise FormatError(f"name {name!r} contains a line break")
        if count < self.count:
            self._shrink(count)
        for arr in self.arrays.values():
            arr.flush()
        with open(self.out / "names.txt", "w") as f:
            f.writelines(f"{n}\n" for n in names)
        _write_json(self.out / "splits.json", splits)
        meta = {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "source": self.source, "resolution": self.resolution,
            "count": count, "classes": self.classes,
        }
        if self.attribute_names is not None:
            meta["attribute_names"] = self.attribute_names
        meta["arrays"] = {k: v.to_json(count, k) for k, v in self.specs.items()}
        meta["details"] = {**self.details, **(details or {}), "config": self.config}
        self.arrays.clear()
        _write_json(self.out / "meta.json", meta, indent=1)
        (self.out / "progress.json").unlink(missing_ok=True)
        self.complete = True
        return meta

    def _shrink(self, count: int, chunk: int = 256) -> None:
        """Keep the first ``count`` rows of every array (copy into a smaller file, then rename)."""
        for name, arr in list(self.arrays.items()):
            path = self.out / f"{name}.npy"
            tmp = self.out / f"{name}.npy.tmp"
            small = open_memmap(tmp, mode="w+", dtype=arr.dtype, shape=(count, *arr.shape[1:]))
            for s in range(0, count, chunk):
                e = min(s + chunk, count)
                small[s:e] = arr[s:e]
            small.flush()
            del small
            self.arrays.pop(name)
            del arr
            os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------------
# reader


def _layout_message(root: Path) -> str:
    return f"expected a converted dataset directory at {root} holding {LAYOUT_TEXT}"


def _convert_hint(root: Path) -> str:
    return "convert one with one of: " + " | ".join(c.format(out=root) for c in CONVERT_COMMANDS)


def load_meta(root) -> dict:
    """Read and check meta.json of a dataset directory; raises FormatError with what to do when it is not there."""
    root = Path(root)
    if not root.exists():
        raise FormatError(f"dataset root {root} does not exist; {_layout_message(root)}. {_convert_hint(root)}")
    if not root.is_dir():
        raise FormatError(f"dataset root {root} is not a directory; {_layout_message(root)}")
    meta_path = root / "meta.json"
    if not meta_path.exists():
        progress = root / "progress.json"
        if progress.exists():
            rows = read_json(progress).get("rows_done", "?")
            raise FormatError(f"{root} is an incomplete dataset (no meta.json; the conversion stopped after {rows} "
                              "rows): rerun the same data_scripts command with the same arguments to resume it")
        raise FormatError(f"{root} has no meta.json: it is not a converted dataset (or its conversion never "
                          f"finished); {_layout_message(root)}. {_convert_hint(root)}")
    meta = read_json(meta_path)
    if meta.get("format") != FORMAT_NAME:
        raise FormatError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT_NAME!r}")
    if meta.get("version") != FORMAT_VERSION:
        raise FormatError(f"{meta_path}: version {meta.get('version')!r}, this code reads version {FORMAT_VERSION}")
    for key in ("source", "resolution", "count", "classes", "arrays"):
        if key not in meta:
            raise FormatError(f"{meta_path} lacks the key {key!r}")
    if "images" not in meta["arrays"]:
        raise FormatError(f"{meta_path} lists no images array")
    return meta


def _row_to_tensor(value: np.ndarray, kind: str) -> torch.Tensor:
    value = np.array(value)  # copy out of the memmap
    if kind == "image":
        return torch.from_numpy(value).permute(2, 0, 1).float().div_(255.0)
    if kind == "label":
        return torch.from_numpy(value.astype(np.int64))
    if kind == "map":
        return torch.from_numpy(value.astype(np.float32))[None]
    if kind == "bool":
        return torch.from_numpy(value.astype(bool))
    if value.dtype.kind in "biu" and kind != "attributes":
        return torch.from_numpy(value.astype(np.int64))
    return torch.from_numpy(value.astype(np.float32))


class FaceDataset(torch.utils.data.Dataset):
    """A split of a dataset in the common format, as a torch Dataset of dicts.

    Items: ``image`` float32 [3,H,W] in [0,1]; ``labels`` int64 [H,W] with the stored ids (``classes`` names them)
    when the dataset has labels; ``attributes`` float32 0/1 [A] when present; ``index`` (the row in the arrays);
    every extra array under its own name (``image``-kind arrays as float [3,H,W] in [0,1], ``map`` arrays as float
    [1,H,W], others as float32 / int64). ``transform`` (a callable on the dict) is applied last.

    Arrays are opened lazily with ``np.load(mmap_mode="r")`` in each process (DataLoader workers reopen them).
    """

    def __init__(self, root, split: str = "train", transform: Callable | None = None):
        self.root = Path(root)
        self.meta = load_meta(self.root)
        self.split = split
        self.transform = transform
        splits_path = self.root / "splits.json"
        if not splits_path.exists():
            raise FormatError(f"{splits_path} is missing; {_layout_message(self.root)}")
        self.splits = {k: list(map(int, v)) for k, v in read_json(splits_path).items()}
        if split not in self.splits:
            raise FormatError(f"unknown split {split!r} for {self.root}; allowed splits: {sorted(self.splits)}")
        count = int(self.meta["count"])
        self.indices = np.asarray(self.splits[split], dtype=np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= count):
            raise FormatError(f"{splits_path}: split {split!r} has rows outside 0..{count - 1}")
        self._check_arrays()
        self._arrays: dict[str, np.ndarray] | None = None

    # -- checks
    def _check_arrays(self) -> None:
        count, R = int(self.meta["count"]), int(self.meta["resolution"])
        for name, info in self.meta["arrays"].items():
            path = self.root / info["file"]
            if not path.exists():
                raise FormatError(f"{path} is missing (listed in meta.json); {_layout_message(self.root)}")
            try:
                arr = np.load(path, mmap_mode="r")
            except (ValueError, OSError, EOFError) as error:
                raise FormatError(f"{path} cannot be read as the array meta.json lists (shape {info['shape']}, "
                                  f"{info['dtype']}; {path.stat().st_size} bytes on disk): {error}. The file is "
                                  f"probably truncated (an interrupted copy or conversion); copy or convert the "
                                  f"dataset again. {_convert_hint(self.root)}") from error
            if list(arr.shape) != list(info["shape"]) or arr.dtype != np.dtype(info["dtype"]):
                raise FormatError(f"{path} has shape {list(arr.shape)} {arr.dtype} but meta.json says "
                                  f"{info['shape']} {info['dtype']}")
            if arr.shape[0] != count:
                raise FormatError(f"{path} has {arr.shape[0]} rows but meta.json says count {count}")
        shape = self.meta["arrays"]["images"]["shape"]
        if list(shape[1:]) != [R, R, 3]:
            raise FormatError(f"{self.root / 'images.npy'} has rows {shape[1:]}, expected [{R}, {R}, 3]")
        if self.meta["classes"] and "labels" not in self.meta["arrays"]:
            raise FormatError(f"{self.root}/meta.json names classes but lists no labels.npy")
        if "attributes" in self.meta["arrays"]:
            A = len(self.meta.get("attribute_names") or [])
            if self.meta["arrays"]["attributes"]["shape"][1:] != [A]:
                raise FormatError(f"{self.root / 'attributes.npy'} has {self.meta['arrays']['attributes']['shape'][1:]}"
                                  f" columns but meta.json names {A} attributes")

    # -- properties
    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def attribute_names(self) -> list[str]:
        return list(self.meta.get("attribute_names") or [])

    @property
    def resolution(self) -> int:
        return int(self.meta["resolution"])

    @property
    def source(self) -> str:
        return self.meta["source"]

    @property
    def names(self) -> list[str]:
        """Source file name / id of every row (all rows, not only this split)."""
        with open(self.root / "names.txt") as f:
            return [line.rstrip("\n") for line in f]

    def array(self, name: str) -> np.ndarray:
        """The whole memory-mapped array ``name`` (e.g. "images", "labels"), all rows, read-only."""
        arrays = self._open()
        if name not in arrays:
            raise KeyError(f"{self.root} has no array {name!r}; it has {sorted(arrays)}")
        return arrays[name]

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = {name: np.load(self.root / info["file"], mmap_mode="r")
                            for name, info in self.meta["arrays"].items()}
        return self._arrays

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_arrays"] = None  # reopen the memmaps in the receiving process
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for split {self.split!r} of size {len(self)}")
        row = int(self.indices[i])
        item: dict[str, Any] = {}
        for name, arr in self._open().items():
            kind = self.meta["arrays"][name].get("kind", "vector")
            item["image" if name == "images" else name] = _row_to_tensor(arr[row], kind)
        item["index"] = row
        if self.transform is not None:
            item = self.transform(item)
        return item

    def batch(self, positions) -> dict:
        """Items ``positions`` (of this split) as one dict of batched tensors, like ``SynthFaces.batch``:
        ``image`` [B,3,H,W], ``labels`` [B,H,W], ..., ``index`` int64 [B]; the transform is applied to the batch
        (the transforms of ``helpers.data.transforms`` accept batches)."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        rows = self.indices[positions]
        out: dict[str, Any] = {}
        for name, arr in self._open().items():
            kind = self.meta["arrays"][name].get("kind", "vector")
            value = np.asarray(arr[rows])
            if kind == "image":
                tensor = torch.from_numpy(value).permute(0, 3, 1, 2).float().div_(255.0)
            elif kind == "map":
                tensor = torch.from_numpy(value.astype(np.float32))[:, None]
            else:
                tensor = torch.stack([_row_to_tensor(v, kind) for v in value]) if len(value) else \
                    _row_to_tensor(value, kind)
            out["image" if name == "images" else name] = tensor
        out["index"] = torch.from_numpy(rows.copy())
        if self.transform is not None:
            out = self.transform(out)
        return out

    def __repr__(self) -> str:
        return (f"FaceDataset({str(self.root)!r}, split={self.split!r}: {len(self)} of {self.meta['count']} rows, "
                f"source={self.source}, resolution={self.resolution}, classes={len(self.classes)}, "
                f"attributes={len(self.attribute_names)})")
