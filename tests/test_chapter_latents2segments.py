"""The Latents2Segments chapter runs on a converted HELEN dataset at the smoke profile, with the HELEN slicing."""
from __future__ import annotations

from tests.chapter_runs import run_smoke
from tests.data_scripts.layouts import load_script, make_helen

SPLITS = {"train": [f"{100000 + i}_1" for i in range(16)], "val": ["200000_1"],
          "test": [f"{300000 + i}_1" for i in range(4)]}


def test_chapter_runs_on_helen_layout_with_two_slices(tmp_path):
    converted = tmp_path / "helen"
    raw = make_helen(tmp_path / "raw", splits=SPLITS)
    assert load_script("prepare_helen").main(["--root", str(raw), "--out", str(converted), "--resolution", "32",
                                              "--no-progress"]) == 0
    metrics = run_smoke("02_latents2segments", tmp_path, dataset="helen", data_root=str(converted))
    assert metrics["parameters"]["dataset"] == "helen"
    assert {c["id"] for c in metrics["claims"]} == {"acs_l2s", "acs_gain", "segmentation_f1", "segmentation_speed"}
    assert set(metrics["metrics"]["table2_f1"]["L2S, consistency rule (ours)"]) == {"hair", "skin", "mean"}  # HELEN: two slices
    assert len(metrics["metrics"]["activeness_map"]["L2S"]) == 2
    assert all(len(row) == 2 for row in metrics["metrics"]["activeness_map"]["SAE"])
