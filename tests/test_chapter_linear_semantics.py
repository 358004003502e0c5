"""Chapter 04 runs headless at the smoke profile, records every table the issue names, and refuses other datasets."""
from __future__ import annotations

import subprocess

import pytest

from tests.chapter_runs import run_smoke

CLAIMS = {"decorrelation_helps", "mutual_reconstruction_stabilises", "yaw_pitch_linear", "yaw_augmentation_helps",
          "sparse_components_local", "ward_three_regions"}


def test_chapter_records_its_tables_and_claims(tmp_path):
    metrics = run_smoke("04_linear_semantics", tmp_path)
    assert {c["id"] for c in metrics["claims"]} == CLAIMS
    m = metrics["metrics"]
    assert set(m["table1"]) == {"plain", "decorrelated"}
    assert {"fd_features", "fd_features_floor", "ppl_w_end_features", "mean_abs_correlation",
            "variance_spread"} <= set(m["table1"]["plain"]["seed0"])
    assert set(m["unsup3d"]) == {"balanced", "unbalanced", "flat_depth_reference"}
    assert {"side", "mad", "yaw_corr", "pitch_corr"} <= set(m["unsup3d"]["unbalanced"]["mutual_0.5"])
    assert len(m["table2"]["corr"]) == 14 and len(m["regressor"]["mae"]) == 14
    # the faster Eq. 5 solver ends at or below Adam's objective from the same start
    assert m["eq5"]["proximal_final"] <= m["eq5"]["adam_final"] * (1 + 1e-3)


def test_chapter_refuses_a_dataset_without_ground_truth(tmp_path):
    with pytest.raises(subprocess.CalledProcessError) as error:
        run_smoke("04_linear_semantics", tmp_path, dataset="celeba")
    output = (error.value.stderr or b"").decode() + (error.value.stdout or b"").decode()
    assert "dataset='celeba': allowed values are 'synthfaces'" in output
