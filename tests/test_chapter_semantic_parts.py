"""The semantic-parts chapter runs on a converted CelebAMask-HQ dataset (19 classes) at the smoke profile."""
from __future__ import annotations

from helpers.models.mask_vae import ABLATIONS
from tests.chapter_runs import run_smoke
from tests.data_scripts.layouts import load_script, make_celebamask_hq


def test_chapter_runs_on_celebamask_hq_layout(tmp_path):
    converted = tmp_path / "celebamask_hq"
    convert = load_script("prepare_celebamask_hq")
    raw = make_celebamask_hq(tmp_path / "raw", keys=list(range(40)), mapping=False, partition=False)  # > 1 batch
    assert convert.main(["--root", str(raw), "--out", str(converted), "--resolution", "32", "--no-progress"]) == 0
    metrics = run_smoke("01_semantic_parts_vae", tmp_path, dataset="celebamask_hq", data_root=str(converted))
    assert metrics["parameters"]["dataset"] == "celebamask_hq"
    weights = dict(metrics["metrics"]["class_weights"])
    assert weights.pop("rule") == "inverse_sqrt"  # below the paper profile (chapter 01's stated deviation)
    assert len(weights) == 19  # background + CelebAMask-HQ's 18 parts
    assert {c["id"] for c in metrics["claims"]} == {
        "recon_miou", "weighted_ce_small_parts", "lstm_adapts_neighbours", "interpolation_monotone",
        "sis_shape_control"}
    assert set(metrics["metrics"]["table1"]) == set(ABLATIONS) | {
        "full, trained longer"}
