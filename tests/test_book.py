"""helpers.book and data_scripts/run_book.py: parameter checks, papermill runs, grids, clean outputs, tables."""
from __future__ import annotations

import csv
import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from helpers import book, config

REPO = Path(__file__).resolve().parents[1]
WIDGET_MIME = book.WIDGET_MIME

PARAMETERS = 'profile = "smoke"\nseed = 0\nout_dir = "runs/toy"\n'
BODY = '''\
from helpers import config, runs
config.check_injected_parameters()
cfg = config.validate(profile=profile, seed=seed, out_dir=out_dir, device="cpu")
run = runs.Run(cfg, chapter="toy", show_header=False)
import torch
torch.manual_seed(cfg.seed)
score = round(float(torch.rand(())), 4)
run.record("table/score", score)
run.claim("positive", "the score is positive", paper=0.5, ours=score, criterion="> 0", reproduced=score > 0)
path = run.save()
print("score", score, "profile", cfg.profile.name)
run.show_claims()
score * 2
'''


def toy_notebook(folder: Path, name: str = "toy.ipynb", parameters: str = PARAMETERS) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Toy chapter"),
                nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(BODY),
                nbformat.v4.new_code_cell('print("after the checks")')]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    nbformat.write(nb, path)
    return path


def expected_score(seed: int) -> float:
    torch.manual_seed(seed)
    return round(float(torch.rand(())), 4)


@pytest.fixture(scope="module")
def run_book():
    spec = importlib.util.spec_from_file_location("_run_book_under_test", REPO / "data_scripts" / "run_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stdout_of_cell(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


# ------------------------------------------------------------------------------------------------ without kernels
def test_declared_parameters_and_check(tmp_path):
    nb = toy_notebook(tmp_path)
    assert book.declared_parameters(nb) == {"profile": '"smoke"', "seed": "0", "out_dir": '"runs/toy"'}
    book.check_parameters([nb], ["seed", "profile", "out_dir"])
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) 'epochz', 'lr'; it declares profile, seed, out_dir"):
        book.check_parameters([nb], ["seed", "epochz", "lr"])
    bare = nbformat.v4.new_notebook()
    bare.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(bare, tmp_path / "bare.ipynb")
    with pytest.raises(ValueError, match="no cell tagged 'parameters'"):
        book.declared_parameters(tmp_path / "bare.ipynb")


def test_run_book_refuses_unknown_name_before_running(tmp_path, monkeypatch, capsys, run_book):
    monkeypatch.chdir(tmp_path)
    nb = toy_notebook(tmp_path / "nb")
    out = tmp_path / "batch"
    assert run_book.main([str(nb), "-p", "epochz", "3", "--out", str(out)]) == 2
    err = capsys.readouterr()
    assert "epochz" in err.err and "running" not in err.out
    assert not out.exists() and not (tmp_path / "runs").exists()
    assert sorted(p.name for p in (tmp_path / "nb").iterdir()) == ["toy.ipynb"]


def test_run_book_other_refusals(tmp_path, monkeypatch, capsys, run_book):
    monkeypatch.chdir(tmp_path)
    nb = toy_notebook(tmp_path)
    cases = {
        ("-p", "seed"): "give the parameter's name and at least one value",
        ("-p", "seed", "0", "-p", "seed", "1"): "-p seed given twice",
        ("--in-place", "-p", "seed", "0", "1"): "--in-place runs one combination",
    }
    for args, message in cases.items():
        assert run_book.main([str(nb), *args]) == 2, args
        assert message in capsys.readouterr().err, args
    assert run_book.main([str(tmp_path / "missing.ipynb")]) == 2
    assert "no such notebook" in capsys.readouterr().err
    assert run_book.main([]) == 2
    assert "no notebooks given" in capsys.readouterr().err
    # a notebook without out_dir cannot be run in a batch (its metrics.json would land in one place)
    no_out = toy_notebook(tmp_path, "no_out.ipynb", parameters='profile = "smoke"\nseed = 0\n')
    assert run_book.main([str(no_out), "-p", "seed", "1"]) == 2
    assert "'out_dir'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_build_grid_reads_yaml_scalars(run_book):
    grid = run_book.build_grid([["beta", "0.5", "3", "true", "null", "cpu"]])
    assert grid == {"beta": [0.5, 3, True, None, "cpu"]}
    assert book.parameter_grid({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    assert book.parameter_grid({}) == [{}]
    assert book.run_name({"profile": "cpu", "seed": 3}) == "profile=cpu,seed=3"
    assert book.run_name({"root": "/a b"}) == "root=_a_b"
    assert book.run_name({}) == "default"


def test_toc_notebooks(tmp_path, run_book, capsys):
    for name in ("a", "b", "c", "d", "v1.2"):
        toy_notebook(tmp_path / "notebooks", f"{name}.ipynb")
    (tmp_path / "intro.md").write_text("# Intro\n")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\n"
        "root: intro\n"
        "parts:\n"
        "  - caption: One\n"
        "    chapters:\n"
        "      - file: notebooks/b.ipynb\n"
        "      - file: notebooks/a\n"
        "        sections:\n"
        "          - file: notebooks/d\n"
        "          - file: notebooks/missing\n"
        "  - caption: Two\n"
        "    chapters:\n"
        "      - file: notebooks/c\n"
        "      - file: notebooks/v1.2\n"
        "      - url: https://example.org\n"
        "        title: elsewhere\n")
    found = book.toc_notebooks(tmp_path / "_toc.yml")
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "notebooks/b.ipynb", "notebooks/a.ipynb", "notebooks/d.ipynb", "notebooks/c.ipynb", "notebooks/v1.2.ipynb"]
    assert run_book.main(["--toc", str(tmp_path / "_toc.yml"), "--list"]) == 0
    assert capsys.readouterr().out.splitlines() == [str(p) for p in found]


def test_strip_volatile_on_a_synthetic_notebook():
    nb = nbformat.v4.new_notebook()
    nb.metadata.update({"papermill": {"duration": 1.5}, "widgets": {"state": {}}, "kernelspec": {"name": "x"}})
    injected = nbformat.v4.new_code_cell("# Parameters\nseed = 1\n", metadata={"tags": ["injected-parameters"]})
    cell = nbformat.v4.new_code_cell("f()", metadata={
        "papermill": {"start_time": "now"}, "execution": {"iopub.status.busy": "now"}, "ExecuteTime": {},
        "collapsed": False, "scrolled": True, "tags": ["keep"]})
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={WIDGET_MIME: {"model_id": "abc"}, "text/plain": "HBox()"},
                               metadata={WIDGET_MIME: {"x": 1}}),
        nbformat.v4.new_output("display_data", data={"text/plain": "ok"}),
        nbformat.v4.new_output("stream", name="stdout", text="hi\n"),
        nbformat.v4.new_output("stream", name="stdout", text="[train] step 1\n"),
        nbformat.v4.new_output("stream", name="stderr", text="warn\n"),
        nbformat.v4.new_output("stream", name="stdout", text="done\n"),
    ]
    cell.outputs[1]["transient"] = {"display_id": "d1"}
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), injected, cell]
    kept = book.strip_volatile(nbformat.from_dict(nb.copy()))
    assert [c["id"] for c in kept.cells] == ["cell-000", "cell-001", "cell-002"]
    assert kept.metadata == {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                             "language_info": {"name": "python"}}
    assert kept.cells[2].metadata == {"tags": ["keep"]}
    assert kept.cells[2].outputs[0]["data"] == {"text/plain": "HBox()"} and kept.cells[2].outputs[0].metadata == {}
    assert "transient" not in kept.cells[2].outputs[1]
    assert [(o.get("name"), o.get("text")) for o in kept.cells[2].outputs[2:]] == [
        ("stdout", "hi\n[train] step 1\n"), ("stderr", "warn\n"), ("stdout", "done\n")]  # runs of one stream merged
    nbformat.validate(kept)
    dropped = book.strip_volatile(nbformat.from_dict(nb.copy()), drop_injected=True)
    assert [c.source for c in dropped.cells] == ["# t", "f()"]
    assert [c["id"] for c in dropped.cells] == ["cell-000", "cell-001"]


def test_summarise_and_tables(tmp_path):
    records = [
        {"notebook": "toy", "profile": "cpu", "seed": 0, "m/a": 1.0, "m/b": 10.0},
        {"notebook": "toy", "profile": "cpu", "seed": 1, "m/a": 3.0, "m/b": 10.0},
        {"notebook": "toy", "profile": "smoke", "seed": 0, "m/a": 5.0},
    ]
    table = book.summarise(records)
    assert table == [
        {"notebook": "toy", "profile": "cpu", "n_seeds": 2, "m/a": (2.0, statistics.stdev([1.0, 3.0])),
         "m/b": (10.0, 0.0)},
        {"notebook": "toy", "profile": "smoke", "n_seeds": 1, "m/a": (5.0, 0.0)},
    ]
    csv_path, md_path = book.write_tables(table, tmp_path / "t")
    rows = list(csv.reader(csv_path.open()))
    assert rows[0] == ["notebook", "profile", "n_seeds", "m/a mean", "m/a std", "m/b mean", "m/b std"]
    assert rows[1][:5] == ["toy", "cpu", "2", "2.0", str(statistics.stdev([1.0, 3.0]))]
    assert rows[2] == ["toy", "smoke", "1", "5.0", "0.0", "", ""]
    assert md_path.read_text().splitlines() == [
        "| metric | toy, profile=cpu, n_seeds=2 | toy, profile=smoke, n_seeds=1 |", "|---|---|---|",
        "| m/a | 2 ± 1.4 | 5 ± 0 |", "| m/b | 10 ± 0 |  |"]


def test_collect_keeps_top_level_metrics_apart_from_parameters(tmp_path):
    rows = []
    for seed, fid in ((0, 10.0), (1, 14.0)):
        path = tmp_path / f"{seed}.json"
        path.write_text(json.dumps({"metrics": {"fid": fid, "t": {"acc": 0.5 + seed / 10, "name": "x"}},
                                    "claims": [{"id": "c", "ours": True, "reproduced": seed == 0}]}))
        rows.append(("toy", {"seed": seed}, path))
    records = book.collect(rows)
    assert records[0] == {"notebook": "toy", "seed": 0, "metrics/fid": 10.0, "t/acc": 0.5,
                          "claim/c/reproduced": 1.0}
    (row,) = book.summarise(records)
    assert row["n_seeds"] == 2 and row["metrics/fid"] == (12.0, statistics.stdev([10.0, 14.0]))
    assert row["claim/c/reproduced"] == (0.5, statistics.stdev([1.0, 0.0]))


def fake_papermill(monkeypatch, fail_when=None):
    """Replace papermill's execution by a copy that injects the parameters like papermill (no kernel)."""
    import papermill as pm

    def execute_notebook(src, dst, parameters=None, **kwargs):
        if fail_when and fail_when(parameters):
            raise RuntimeError("first line\nValueError: bad notebook parameters")
        nb = nbformat.read(src, as_version=4)
        nb.metadata["papermill"] = {"parameters": parameters}
        if parameters:
            at = 1 + next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
            source = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in parameters.items())
            nb.cells.insert(at, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
        for cell in nb.cells:
            cell.metadata["papermill"] = {"duration": 0.1}
        nbformat.write(nb, dst)
        return nb

    monkeypatch.setattr(pm, "execute_notebook", execute_notebook)


def test_in_place_run_keeps_no_injected_cell(tmp_path, monkeypatch):
    fake_papermill(monkeypatch)
    nb = toy_notebook(tmp_path)
    book.execute(book.Job(nb, {"profile": "cpu"}, nb, in_place=True))
    written = nbformat.read(nb, as_version=4)
    assert [c.metadata.get("tags", []) for c in written.cells] == [[], ["parameters"], [], []]
    assert written.cells[1].source == PARAMETERS  # BOOK_PROFILE, not a hard-coded profile, decides next time
    assert "papermill" not in written.metadata and "papermill" not in written.cells[2].metadata
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.ipynb"]
    out = tmp_path / "out" / "toy.ipynb"
    book.execute(book.Job(nb, {"profile": "cpu"}, out))  # a batch run shows what it ran with
    assert "injected-parameters" in nbformat.read(out, as_version=4).cells[2].metadata["tags"]


def test_failed_runs_are_reported_and_the_rest_summarised(tmp_path, monkeypatch, capsys, run_book):
    def fake_execute(job, env=None, timeout=None):
        if job.params["seed"] == 1:
            raise RuntimeError("kernel died\nValueError: seed=1 is unlucky")
        out = Path(job.params["out_dir"])
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps({"metrics": {"m": {"x": 1.5 * (job.params["seed"] + 1)}}}))
        return job.output

    monkeypatch.setattr(book, "execute", fake_execute)
    nb = toy_notebook(tmp_path)
    assert run_book.main([str(nb), "-p", "seed", "0", "1", "2", "--out", str(tmp_path / "b")]) == 1
    printed = capsys.readouterr().out
    assert "seed=1: FAILED (RuntimeError: ValueError: seed=1 is unlucky)" in printed
    assert "seed=0: ok" in printed and "seed=2: ok" in printed
    rows = list(csv.DictReader((tmp_path / "b" / "summary.csv").open()))
    assert [(r["n_seeds"], float(r["m/x mean"])) for r in rows] == [("2", 3.0)]


def test_in_place_batch_headers_show_the_commit_it_started_from(tmp_path, monkeypatch, run_book):
    seen = []

    def fake_execute(job, env=None, timeout=None):
        seen.append(dict(env or {}))
        job.output.write_text(job.output.read_text() + " ")  # writing back in place dirties the tree for the next one
        return job.output

    monkeypatch.setattr(book, "execute", fake_execute)
    monkeypatch.delenv("BOOK_GIT_COMMIT", raising=False)
    first, second = toy_notebook(tmp_path), toy_notebook(tmp_path / "b")
    assert run_book.main([str(first), str(second), "--in-place"]) == 0
    start = config.git_commit(run_book.REPO)
    assert start and [e["BOOK_GIT_COMMIT"] for e in seen] == [start, start]


# ------------------------------------------------------------------------------------------------ with kernels
def test_papermill_refuses_unknown_profile_fast(tmp_path):
    nb = toy_notebook(tmp_path)
    out = tmp_path / "out.ipynb"
    papermill = Path(sys.executable).parent / "papermill"
    result = subprocess.run([str(papermill), str(nb), str(out), "-p", "profile", "fast", "--cwd", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "profile='fast': allowed values are 'smoke', 'cpu', 'gpu', 'paper'" in text
    executed = nbformat.read(out, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "ValueError"
    assert not executed.cells[-1].outputs  # nothing ran after the failed check
    assert not (tmp_path / "runs").exists()


def test_papermill_refuses_an_undeclared_parameter(tmp_path):
    import papermill as pm

    nb = toy_notebook(tmp_path)
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), parameters={"epochz": 3, "seed": 1},
                            kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    assert info.value.ename == "ValueError"
    assert "unknown parameter(s) 'epochz': this notebook's parameters are out_dir, profile, seed" in info.value.evalue
    assert not (tmp_path / "runs").exists()


def test_grid_over_seeds_writes_metrics_and_summary(tmp_path, monkeypatch, capsys, run_book):
    monkeypatch.chdir(tmp_path)
    nb = toy_notebook(tmp_path / "nb")
    out = tmp_path / "batch"
    code = run_book.main([str(nb), "-p", "seed", "0", "1", "-p", "profile", "smoke", "--out", str(out), "-j", "2"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "running 2 notebook run(s), 2 at a time" in printed
    scores = [expected_score(0), expected_score(1)]
    for seed, score in zip((0, 1), scores):
        folder = out / "toy" / f"seed={seed},profile=smoke"
        metrics = book.load_metrics(folder / "metrics.json")
        assert metrics["parameters"]["seed"] == seed and metrics["parameters"]["out_dir"] == str(folder)
        assert metrics["metrics"] == {"table": {"score": score}}
        assert metrics["claims"][0]["ours"] == score
        executed = nbformat.read(folder / "toy.ipynb", as_version=4)
        assert "papermill" not in executed.metadata
        assert f"score {score} profile smoke" in stdout_of_cell(executed.cells[3])
    assert sorted(p.name for p in out.iterdir()) == ["summary.csv", "summary.md", "toy"]
    mean, std = statistics.fmean(scores), statistics.stdev(scores)
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == 1
    assert rows[0]["notebook"] == "toy" and rows[0]["profile"] == "smoke" and rows[0]["n_seeds"] == "2"
    assert float(rows[0]["table/score mean"]) == pytest.approx(mean)
    assert float(rows[0]["table/score std"]) == pytest.approx(std)
    assert float(rows[0]["claim/positive/reproduced mean"]) == 1.0
    md = (out / "summary.md").read_text()
    assert f"{mean:.4g} ± {std:.2g}" in md
    assert md.splitlines()[0] == "| metric | toy, profile=smoke, n_seeds=2 |"
    assert [line.split(" | ")[0] for line in md.splitlines()[2:]] == [
        "| claim/positive", "| claim/positive/reproduced", "| table/score"]
    assert not (tmp_path / "runs").exists()


def test_execute_twice_gives_identical_files(tmp_path):
    nb = toy_notebook(tmp_path / "nb")
    params = {"seed": 3, "out_dir": str(tmp_path / "metrics")}
    first = book.execute(book.Job(nb, params, tmp_path / "one" / "toy.ipynb"))
    second = book.execute(book.Job(nb, params, tmp_path / "two" / "toy.ipynb"))
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in first.parent.iterdir()) == ["toy.ipynb"]  # the temporary copy is gone
    executed = nbformat.read(first, as_version=4)
    assert [c.metadata.get("tags", []) for c in executed.cells] == [[], ["parameters"], ["injected-parameters"], [],
                                                                   []]
    assert [c["id"] for c in executed.cells] == [f"cell-{i:03d}" for i in range(5)]
    assert "seed = 3" in executed.cells[2].source
    body = executed.cells[3]
    assert {o.output_type for o in body.outputs} == {"stream", "display_data", "execute_result"}
    assert f"score {expected_score(3)} profile smoke" in stdout_of_cell(body)
    assert executed.cells[4].outputs[0].text == "after the checks\n"
    text = first.read_text()
    for volatile in ('"papermill"', '"execution"', "start_time", "duration", WIDGET_MIME):
        assert volatile not in text, volatile


def test_markdown_outputs_render_with_tables():
    """Claims tables are Markdown outputs: the book must render them with a Markdown flavour that has tables."""
    import yaml

    config = yaml.safe_load((Path(__file__).parents[1] / "_config.yml").read_text())
    assert config["sphinx"]["config"]["nb_render_markdown_format"] in ("myst", "gfm")


def test_a_failed_run_keeps_its_partial_notebook_and_names_the_cell(tmp_path, run_book, capsys):
    nb = toy_notebook(tmp_path)
    broken = nbformat.read(nb, as_version=4)
    broken.cells[3].source = 'raise ValueError("device=\'cuda\' is not what this cell expected")'
    nbformat.write(broken, nb)
    out = tmp_path / "b"
    assert run_book.main([str(nb), "-p", "seed", "3", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    partial = out / "toy" / "seed=3" / "toy.failed.ipynb"
    assert f"FAILED (ValueError: device='cuda' is not what this cell expected in cell [4]; partial run in {partial})" \
        in captured.out
    assert "toy.ipynb failed:" in captured.err and 'raise ValueError("device=' in captured.err  # the traceback
    code = [c for c in nbformat.read(partial, as_version=4).cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3, 4]  # parameters, injected parameters, body, the failure
    assert f"score {expected_score(3)}" in stdout_of_cell(code[2])  # the cells before the failure ran
    assert code[3].outputs[0]["ename"] == "ValueError"
    assert sorted(p.name for p in partial.parent.iterdir()) == ["metrics.json", "toy.failed.ipynb"]
    toy_notebook(tmp_path)  # the notebook fixed: a successful rerun removes the stale partial copy
    assert run_book.main([str(nb), "-p", "seed", "3", "--out", str(out)]) == 0
    assert sorted(p.name for p in partial.parent.iterdir()) == ["metrics.json", "toy.ipynb"]
