"""helpers.book_models: one entry point trains every family of chapters 01-03, keyed by model and data identity."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from helpers import book_models, config
from helpers.data.splits import helen_label_splits
from helpers.models import l2s, sae
from helpers.models import mask_vae as mv
from helpers.models import sis
from helpers.train import EMA, Schedule, cache_key


def smoke_run(tmp_path, dataset="synthfaces", data_root=None, steps=2, **families):
    profile = config.PROFILES["smoke"]
    if families:
        profile = dataclasses.replace(profile, families={**profile.families, **families})
    return config.RunConfig(profile=profile, dataset=dataset, data_root=data_root, seed=0, device=torch.device("cpu"),
                            retrain=False, out_dir=tmp_path, steps=steps)


@pytest.fixture(scope="module")
def split():
    train_split, _ = helen_label_splits("synthfaces", None, 32, 32, 2, seed=0, keys=("image", "labels", "attributes"))
    return train_split


def family_options(family, split):
    if family == "mask_vae":
        return {"config": mv.scaled_config(11, 32, 8, grid=8), "class_weights": torch.ones(11)}
    if family == "sis":
        return {"config": sis.SISConfig(num_classes=11, resolution=32, width=4, n_blocks=1)}
    return {}


@pytest.mark.parametrize("family", ["mask_vae", "sis", "sae", "segmenter", "features"])
def test_every_family_trains_once_then_comes_from_the_cache(family, split, tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE_DIR", str(tmp_path / "cache"))
    run = smoke_run(tmp_path)
    first = book_models.train_model(run, family, split, progress=False, **family_options(family, split))
    again = book_models.train_model(run, family, split, progress=False, **family_options(family, split))
    assert not first.from_cache and again.from_cache and again.path == first.path
    assert first.spec.steps == 2 and first.spec.batch_size == run.profile.family(family).batch_size
    assert f"{family}: " in first.summary and "2 steps of batch" in first.summary and "trained in" in first.summary
    assert "(loaded from the checkpoint cache)" in again.summary and "trained in" in again.summary


def test_datasets_differing_only_in_data_root_get_different_keys(split, tmp_path):
    a, b = tmp_path / "conversion_a", tmp_path / "conversion_b"
    a.mkdir(), b.mkdir()
    keys = [cache_key(book_models.book_spec(smoke_run(tmp_path, "celebamask_hq", root), family, split,
                                            **family_options(family, split)), "fp32")
            for family in ("mask_vae", "sae") for root in (a, b)]
    assert keys[0] != keys[1] and keys[2] != keys[3]
    assert keys[0]["data"]["data_root"] == str(a) and keys[1]["data"]["data_root"] == str(b)
    # and the rest of the data's identity is there too
    assert {"dataset", "split", "size", "resolution", "seed"} <= set(keys[0]["data"])
    other_split = cache_key(book_models.book_spec(smoke_run(tmp_path, "celebamask_hq", a), "sae", split,
                                                  split_name="test"), "fp32")
    assert other_split != keys[2]


def test_the_row_sets_steps_batch_lr_and_recipe(split, tmp_path):
    row = config.Family(32, 2, 7, 4, lr=5e-4, warmup=3, decay="cosine", ema=500.0, precision="fp32",
                        channels_last=False, model={"lambda_l1": 3.0})
    spec = book_models.book_spec(smoke_run(tmp_path, steps=None, sae=row), "sae", split)
    assert (spec.steps, spec.batch_size, spec.precision, spec.channels_last) == (7, 4, "fp32", False)
    assert spec.config["model"]["lr"] == 5e-4 and spec.config["model"]["lambda_l1"] == 3.0
    assert spec.schedule == Schedule(warmup=3, decay="cosine") and spec.ema == EMA(("sae",), half_life=500.0)
    assert "7 steps of batch 4, lr warm-up 3 steps then cosine" in spec.describe()
    plain = book_models.book_spec(smoke_run(tmp_path, steps=None, sae=config.Family(32, 2, 7, 4)), "sae", split)
    assert plain.schedule == Schedule() and plain.ema is None and "lr" not in plain.describe()
    with pytest.raises(ValueError, match="family='glow'"):  # a family the book does not train
        book_models.book_spec(smoke_run(tmp_path), "glow", split)


@pytest.mark.parametrize("dataset", ["synthfaces", "helen"])
def test_l2s_is_keyed_by_its_sae_and_chapter_03_gets_chapter_02s_models(dataset, split, tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE_DIR", str(tmp_path / "cache"))
    run = smoke_run(tmp_path, dataset, tmp_path if dataset == "helen" else None)
    model_cfg = l2s.book_config(run)
    assert model_cfg.slices == (l2s.HELEN_SLICES if dataset == "helen" else l2s.PAPER_SLICES)
    sae_trained = book_models.train_model(run, "sae", split, progress=False)
    first = book_models.train_model(run, "l2s", split, sae=sae_trained, config=model_cfg, progress=False)
    again = book_models.train_model(run, "l2s", split, sae=book_models.train_model(run, "sae", split, progress=False),
                                    config=model_cfg, progress=False)
    assert not first.from_cache and again.from_cache and again.path == first.path
    x = split["image"][:2]
    assert torch.equal(again.nets["sae"](x), first.nets["sae"](x))
    longer = dataclasses.replace(run, steps=3)  # another SAE gives another L2S checkpoint
    other = book_models.train_model(longer, "l2s", split, sae=book_models.train_model(longer, "sae", split,
                                                                                      progress=False),
                                    config=model_cfg, progress=False)
    assert other.path != first.path


def test_feature_network_checks_its_data(split, tmp_path):
    run = smoke_run(tmp_path)
    with pytest.raises(ValueError, match="attributes"):
        book_models.book_spec(run, "features", {"image": split["image"]})
    with pytest.raises(ValueError, match="px"):
        book_models.book_spec(run, "features", {"image": split["image"][..., :16, :16],
                                                "attributes": split["attributes"]})


def test_l2s_book_config_follows_the_rows(tmp_path):
    run = smoke_run(tmp_path)
    cfg = l2s.book_config(run)
    assert cfg.l1_weights == run.profile.family("l2s").model.get("l1_weights", "paper")
    assert cfg.sae == sae.book_config(run.profile.family("sae"))
    paper = config.RunConfig(profile=config.PROFILES["paper"], dataset="synthfaces", data_root=None, seed=0,
                             device=torch.device("cpu"), retrain=False, out_dir=tmp_path, steps=None)
    assert l2s.book_config(paper).l1_weights == "paper" and l2s.book_config(paper).sae.lambda_l1 == 1.0  # the paper's
