"""One way to train a model of the book: `train_model(run, family, split, **options)`.

It takes the profile's row of the model family (`helpers.config.Family`: resolution, width, steps, batch size and the
recipe: learning rate, warm-up and decay, weight averaging, precision and memory format), asks the family's module for its training spec
(`<module>.book_spec(row, split, seed, **options)`), names the training data once in the checkpoint key (dataset,
data_root, split, size, resolution, seed: `helpers.data.splits.split_id`), and trains or loads the model from the
checkpoint cache. The returned `Trained` has a one-line `summary` and the `spec` it was trained with, so a chapter
shows what it trains:

    sae_trained = book_models.train_model(cfg, "sae", train_split)
    print(sae_trained.summary)
"""
from __future__ import annotations

import importlib
from typing import Any, Mapping, Sequence

import torch

from .config import RunConfig
from .data.splits import split_id
from .train import EMA, Evaluate, Schedule, Trained, TrainSpec, train

# family -> the module that builds its training spec; each defines book_spec(row, split, seed, **options) and
# EVALUATED_NETS, the networks a chapter evaluates (the ones a weight average applies to)
FAMILIES: dict[str, str] = {
    "mask_vae": "helpers.models.mask_vae",
    "sis": "helpers.models.sis",
    "sae": "helpers.models.sae",
    "l2s": "helpers.models.l2s",
    "segmenter": "helpers.models.segmenter",
    "features": "helpers.models.features",
    "stylegan": "helpers.models.stylegan",
    "w_encoder": "helpers.models.inversion",
    "semantics": "helpers.models.semantics",
    "unsup3d": "helpers.models.unsup3d",
    "classifier": "helpers.models.attribute_classifiers",
    "flow": "helpers.models.flow",
}


def book_spec(run: RunConfig, family: str, split: Mapping[str, torch.Tensor], split_name: str = "train",
              evaluate: Evaluate | None = None, evaluate_at: Sequence[int] = (), **options: Any) -> TrainSpec:
    """The TrainSpec of `family` for this run: the profile's row and recipe, the data's identity in the key.

    `evaluate` and `evaluate_at` record held-out quality while it trains (`Trained.curve`); they do not change the
    model or its key. Other keyword arguments go to the family's `book_spec` (e.g. `config=`).
    """
    if family not in FAMILIES:
        raise ValueError(f"family={family!r}: the book trains {', '.join(FAMILIES)}")
    row = run.family(family)
    module = importlib.import_module(FAMILIES[family])
    spec = module.book_spec(row, split, run.seed, **options)
    spec.data_id = split_id(run, split, split_name)
    spec.schedule = Schedule(warmup=row.warmup, decay=row.decay)
    spec.ema = EMA(module.EVALUATED_NETS, half_life=row.ema) if row.ema else None
    spec.precision, spec.channels_last = row.precision, row.channels_last
    spec.evaluate, spec.evaluate_at = evaluate, tuple(evaluate_at)
    return spec


def train_model(run: RunConfig, family: str, split: Mapping[str, torch.Tensor], split_name: str = "train",
                progress: bool = True, **options: Any) -> Trained:
    """Train the run's model of `family` on `split` (or load it from the checkpoint cache); see the module doc.

    Keyword arguments go to `book_spec` (evaluate, evaluate_at, and the family's own, e.g. config=).
    """
    spec = book_spec(run, family, split, split_name, **options)
    return train(spec, device=run.device, retrain=run.retrain, progress=progress)


__all__ = ["FAMILIES", "book_spec", "train_model"]
