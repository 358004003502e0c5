"""helpers.runs: the content of metrics.json, claims and their table."""
from __future__ import annotations

import json
import math

import nbformat
import numpy as np
import pytest
import torch

from helpers import runs
from helpers.config import validate


@pytest.fixture
def run(tmp_path):
    cfg = validate(profile="smoke", seed=7, device="cpu", out_dir=tmp_path / "out", steps=3)
    return runs.Run(cfg, chapter="00_test", show_header=False)


def test_header_is_printed(tmp_path, capsys):
    cfg = validate(profile="smoke", seed=7, device="cpu", out_dir=tmp_path)
    runs.Run(cfg, chapter="x")
    out = capsys.readouterr().out
    assert "profile: smoke" in out and "seed: 7" in out and "git_commit:" in out
    runs.Run(cfg, chapter="x", show_header=False)
    assert capsys.readouterr().out == ""


def test_metrics_json_content(run, tmp_path):
    with run.phase("train"):
        pass
    with run.phase("eval"):
        pass
    with run.phase("train"):
        pass
    assert run.record("table1/full/miou", 0.71) is None  # a cell ending in run.record(...) shows nothing
    run.record("table1/no_kl/miou", torch.tensor(0.5))
    run.record("fid", np.float32(12.5))
    run.record("curve", torch.tensor([1.0, 2.0]))
    run.record("counts", {"train": np.int64(256), "test": 64})
    run.record("nan", float("nan"))
    run.claim("recon", "full model mIoU >= 0.70", paper=0.7031, ours=torch.tensor(0.75), criterion=">= 0.70",
              reproduced=np.bool_(True))
    run.claim("fid_order", "FID ranks the models as the paper", paper=None, ours=[1, 2], criterion="same order",
              reproduced=False)
    path = run.save()
    assert path == tmp_path / "out" / "metrics.json"
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]  # no temporary file left
    data = json.loads(path.read_text())
    assert data == runs.load_metrics(path)
    assert set(data) == {"chapter", "header", "parameters", "finished", "wall_seconds", "metrics", "claims"}
    assert data["chapter"] == "00_test"
    assert {"profile", "device", "torch", "seed", "git_commit"} <= set(data["header"])
    assert data["header"]["profile"] == "smoke" and data["header"]["seed"] == 7
    assert data["header"]["device"] == "cpu" and data["header"]["torch"] == torch.__version__
    assert data["parameters"] == {"profile": "smoke", "dataset": "synthfaces", "data_root": None, "seed": 7,
                                  "device": "cpu", "retrain": False, "out_dir": str(tmp_path / "out"), "steps": 3}
    assert set(data["wall_seconds"]) == {"train", "eval", "total"}
    assert all(isinstance(v, float) and v >= 0 for v in data["wall_seconds"].values())
    assert data["metrics"] == {"table1": {"full": {"miou": 0.71}, "no_kl": {"miou": 0.5}}, "fid": 12.5,
                               "curve": [1.0, 2.0], "counts": {"train": 256, "test": 64}, "nan": "nan"}
    assert type(data["metrics"]["counts"]["train"]) is int
    assert data["claims"] == [
        {"id": "recon", "claim": "full model mIoU >= 0.70", "paper": 0.7031, "ours": 0.75, "criterion": ">= 0.70",
         "reproduced": True},
        {"id": "fid_order", "claim": "FID ranks the models as the paper", "paper": None, "ours": [1, 2],
         "criterion": "same order", "reproduced": False},
    ]
    for item in data["claims"]:
        assert list(item) == ["id", "claim", "paper", "ours", "criterion", "reproduced"]
    assert path.read_text().endswith("}\n")


def test_phase_time_is_recorded_even_when_the_phase_fails(run):
    with pytest.raises(RuntimeError):
        with run.phase("broken"):
            raise RuntimeError("x")
    assert "broken" in run.phases


def test_duplicate_claim_refused(run):
    run.claim("a", "x", paper=1, ours=1, criterion="=", reproduced=True)
    with pytest.raises(ValueError, match="claim 'a' recorded twice"):
        run.claim("a", "y", paper=2, ours=2, criterion="=", reproduced=True)
    assert len(run.claims) == 1


def test_record_conflicts_and_unstorable_values(run):
    run.record("a", 1)
    with pytest.raises(ValueError, match="'a' already holds a value"):
        run.record("a/b", 2)
    with pytest.raises(TypeError, match="cannot store object"):
        run.record("c", object())
    assert run.metrics == {"a": 1}


def test_non_finite_numbers_are_valid_json(run, tmp_path):
    run.record("x", [float("inf"), -math.inf, 1.0])
    text = run.save().read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text)["metrics"]["x"] == ["inf", "-inf", 1.0]


def test_claims_markdown(run):
    run.claim("recon", "mIoU >= 0.70", paper=0.70312, ours=0.712345, criterion=">= 0.70", reproduced=True)
    run.claim("order", "A beats B", paper=None, ours="A < B", criterion="A > B", reproduced=False)
    assert run.claims_markdown() == "\n".join([
        "| id | claim | paper | ours | criterion | reproduced |",
        "|---|---|---|---|---|---|",
        "| `recon` | mIoU >= 0.70 | 0.7031 | 0.7123 | >= 0.70 | yes |",
        "| `order` | A beats B | — | A < B | A > B | **no** |",
    ])


def test_claims_markdown_escapes_pipes_inside_cells(run):
    run.claim("abs", "error on |yaw| > 30°", paper="|x|", ours=1.0, criterion="lower", reproduced=True)
    assert run.claims_markdown().splitlines()[-1] == "| `abs` | error on \\|yaw\\| > 30° | \\|x\\| | 1 | lower | yes |"


def test_table_records_our_rows_and_shows_the_reference_above_them(run, capsys):
    run.table("table1", {"full": {"mIoU": 0.71234, "eyes": float("nan")}, "no KL": {"mIoU": torch.tensor(0.5)}},
              reference={"paper": {"mIoU": 0.7031, "eyes": None}}, first_column="model")
    assert run.metrics == {"table1": {"full": {"mIoU": 0.71234, "eyes": "nan"}, "no KL": {"mIoU": 0.5}}}
    assert capsys.readouterr().out.splitlines() == [  # outside a notebook the Markdown is printed
        "| model | mIoU | eyes |",
        "|---|---|---|",
        "| paper | 0.703 | — |",
        "| full | 0.712 | — |",
        "| no KL | 0.500 | — |",
    ]


def test_table_column_order_digits_and_errors(run, capsys):
    run.table("t", {"a": {"x": 1, "y": 0.123456, "z": 0.7031, "w": "text"}}, columns=["y", "x", "z", "w"], digits=1,
              formats={"z": "{:.2%}", "w": "{:.2%}"})
    assert capsys.readouterr().out.splitlines()[2] == "| a | 0.1 | 1 | 70.31% | text |"
    with pytest.raises(ValueError, match="both reference and ours"):
        run.table("u", {"a": {"x": 1}}, reference={"a": {"x": 2}})
    assert "u" not in run.metrics


def test_glue_records_under_prose_and_refuses_what_prose_cannot_quote(run, capsys):
    run.glue("acs_ratio", torch.tensor(1.92))
    run.glue("best_rule", "consistency")
    assert run.metrics["prose"] == {"acs_ratio": pytest.approx(1.92), "best_rule": "consistency"}
    assert capsys.readouterr().out == ""  # outside a kernel nothing is displayed
    with pytest.raises(ValueError, match="glue name 'acs ratio'"):
        run.glue("acs ratio", 1.0)
    with pytest.raises(TypeError, match="a number or a string"):
        run.glue("pair", [1.0, 2.0])
    with pytest.raises(ValueError, match="not prose"):
        run.glue("long", "x" * 201)


def test_glue_in_a_kernel_leaves_an_output_myst_nb_reads(tmp_path):
    from myst_nb.ext.glue import extract_glue_data_cell
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(
        "from helpers import config, runs\n"
        f"run = runs.Run(config.validate(profile='smoke', out_dir={str(tmp_path / 'out')!r}), 'x', show_header=False)\n"
        "run.glue('acs_ratio', 1.9234)\nrun.glue('rule', 'consistency')")]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    glued = dict(extract_glue_data_cell(nb.cells[0]))
    assert set(glued) == {"acs_ratio", "rule"}
    assert glued["acs_ratio"]["data"]["text/plain"] == "1.9234"
    assert glued["rule"]["data"]["text/plain"] == "'consistency'"
    assert all("text/plain" not in output.get("data", {}) for output in nb.cells[0].outputs)  # nothing shown


def test_flatten():
    assert runs.flatten({"a": {"b": {"c": 1}, "d": [1, 2]}, "e": 3.5}) == {"a/b/c": 1, "a/d": [1, 2], "e": 3.5}
    assert runs.flatten({}) == {}
