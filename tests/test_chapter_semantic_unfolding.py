"""Chapter 05 runs headless at the smoke profile, records Table 1, the edits and the claims, and refuses other data."""
from __future__ import annotations

import subprocess

import pytest

from helpers.data.synthfaces import ATTRIBUTE_NAMES
from tests.chapter_runs import run_smoke

CLAIMS = {"separability_improves", "dci_improves", "edits_disentangled", "identity_preserved"}
SPACES = {"W+", "W*", "W* without L_lm", "W* without L_ap", "W* with a linear T"}
EDITED = {"Male", "Eyeglasses", "Smiling", "Wearing_Lipstick", "Mustache"}


def test_chapter_records_table1_the_edits_and_its_claims(tmp_path):
    metrics = run_smoke("05_semantic_unfolding", tmp_path)
    assert {c["id"] for c in metrics["claims"]} == CLAIMS
    m = metrics["metrics"]
    assert set(m["table1"]) == SPACES | {"W+ non-linear probe"}
    for space, row in m["table1"].items():
        assert len(row["accuracy"]) == len(ATTRIBUTE_NAMES) == len(row["balanced_accuracy"])
        if space in SPACES:
            assert all(0 <= row[k] <= 1 for k in ("disentanglement", "completeness", "informativeness"))
    assert set(m["editing"]) == set(m["entanglement"]) == {"W+", "W*", "W+ conditional"}
    for space, edits in m["editing"].items():
        assert set(edits) == EDITED
        for edit in edits.values():  # the unedited face (s = 0; T^-1(T(w)) = w up to float32) starts every curve
            start = edit["curve"][0]
            assert start["s"] == 0 and abs(start["target"]) < 1e-4 and abs(start["others"]) < 1e-4
        assert set(m["entanglement"][space]) == EDITED
        assert all(len(row) == len(ATTRIBUTE_NAMES) for row in m["entanglement"][space].values())
    assert len(m["flow"]["validation_curve"]["frozen_accuracy"]) >= 2


def test_chapter_refuses_a_dataset_without_attributes_to_score(tmp_path):
    with pytest.raises(subprocess.CalledProcessError) as error:
        run_smoke("05_semantic_unfolding", tmp_path, dataset="celeba")
    output = (error.value.stderr or b"").decode() + (error.value.stdout or b"").decode()
    assert "dataset='celeba': allowed values are 'synthfaces'" in output
