"""Train and test splits with HELEN label ids, read once into memory, from SynthFaces, HELEN or CelebAMask-HQ.

The Latents2Segments and Latents2Semantics chapters work with HELEN ids (and the ROIs built from them), whatever the
source: SynthFaces draws HELEN ids, converted HELEN stores them, and converted CelebAMask-HQ is mapped with
`MapLabels.celebamask_hq_to_helen()`.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from .faceformat import FaceDataset, FormatError
from .labels import CELEBAMASK_HQ_CLASSES, HELEN_CLASSES
from .memory import render_split
from .synthfaces import SynthFaces
from .transforms import Compose, MapLabels, Resize

HELEN_LABEL_DATASETS = ("synthfaces", "helen", "celebamask_hq")
_EXPECTED = {"helen": (HELEN_CLASSES, "prepare_helen.py"),
             "celebamask_hq": (CELEBAMASK_HQ_CLASSES, "prepare_celebamask_hq.py")}


def helen_label_splits(dataset: str, data_root: str | None, resolution: int, n_train: int, n_test: int, seed: int,
                       keys: Sequence[str] = ("image", "labels")) -> tuple[dict[str, torch.Tensor],
                                                                         dict[str, torch.Tensor]]:
    """(train, test) dicts of tensors: "image" [N, 3, R, R] in [0, 1], "labels" [N, R, R] HELEN ids (+ other keys).

    SynthFaces renders faces 0..n_train-1 for training and the next n_test for testing (seeded by `seed`); a converted
    dataset is read from its "train" and "test" splits (at most n_train / n_test items, resized to `resolution`).
    """
    if dataset not in HELEN_LABEL_DATASETS:
        raise ValueError(f"dataset={dataset!r}: allowed {HELEN_LABEL_DATASETS}")
    if dataset == "synthfaces":
        faces = SynthFaces(resolution=resolution, length=n_train + n_test, seed=seed)
        return (render_split(faces, range(n_train), keys, desc="render train"),
                render_split(faces, range(n_train, n_train + n_test), keys, desc="render test"))
    if data_root is None:
        raise ValueError(f"dataset={dataset!r} needs data_root: the folder written by data_scripts/"
                         f"{_EXPECTED[dataset][1]}")
    classes, script = _EXPECTED[dataset]
    stored = FaceDataset(data_root, split="train")
    if tuple(stored.classes) != tuple(classes):
        raise FormatError(f"{data_root}/meta.json: expected the {len(classes)} {dataset} classes {list(classes)}, "
                          f"found {stored.classes}; convert the dataset with data_scripts/{script}")
    steps = [Resize(resolution)] + ([MapLabels.celebamask_hq_to_helen()] if dataset == "celebamask_hq" else [])
    splits = []
    for split, cap in (("train", n_train), ("test", n_test)):
        ds = FaceDataset(data_root, split=split, transform=Compose(steps))
        if len(ds) == 0:
            raise FormatError(f"{data_root}/splits.json: split {split!r} is empty")
        splits.append(render_split(ds, range(min(cap, len(ds))), keys, desc=f"read {split}"))
    return splits[0], splits[1]


def split_id(run: Any, split: Mapping[str, torch.Tensor], name: str = "train") -> dict[str, Any]:
    """What names a run's (helpers.config.RunConfig) data split in the checkpoint keys of the models trained on it.

    Dataset, data_root (two conversions of the same dataset are two datasets), split name, size, resolution and
    seed; a split is a dict of tensors with a common first dimension ("image" [N, 3, R, R] and/or "labels" [N, R, R]).
    """
    if not split:
        raise ValueError("split_id: the split holds no tensors")
    sizes = {key: len(value) for key, value in split.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"split_id: the split's tensors differ in length: {sizes}")
    grid = split["image"] if "image" in split else split.get("labels")
    return {"dataset": run.dataset, "data_root": str(run.data_root) if run.data_root else None, "split": name,
            "size": next(iter(sizes.values())), "resolution": None if grid is None else int(grid.shape[-1]),
            "seed": run.seed}
