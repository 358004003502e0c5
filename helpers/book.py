"""Running the book's notebooks headless: the toc, parameter grids, papermill runs, clean outputs and result tables.

Used by `data_scripts/run_book.py` (batch reruns and `make book`) and by the tests.
"""
from __future__ import annotations

import csv
import itertools
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import nbformat
import yaml

from .runs import flatten, load_metrics

VOLATILE_CELL_METADATA = ("papermill", "execution", "ExecuteTime", "collapsed", "scrolled")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def toc_notebooks(toc: str | os.PathLike = "_toc.yml") -> list[Path]:
    """The notebooks listed in a jupyter-book v1 `_toc.yml`, in reading order (paths relative to the toc's folder)."""
    toc = Path(toc)
    root = toc.parent
    found: list[Path] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            entry = node.get("file") or node.get("root")
            if isinstance(entry, str):
                for suffix in ("", ".ipynb"):
                    candidate = root / (entry + suffix)
                    if candidate.suffix == ".ipynb" and candidate.is_file():
                        found.append(candidate)
                        break
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(toc.read_text()))
    return found


def declared_parameters(notebook: str | os.PathLike) -> dict[str, Any]:
    """Names and default expressions of the notebook's `parameters` cell (papermill's own reading)."""
    import papermill as pm

    params = pm.inspect_notebook(str(notebook))
    if not params:
        raise ValueError(f"{notebook}: no cell tagged 'parameters'")
    return {name: info["default"] for name, info in params.items()}


def check_parameters(notebooks: Iterable[Path], names: Iterable[str]) -> None:
    """Refuse, before running anything, a parameter name that a notebook does not declare."""
    problems = []
    for nb in notebooks:
        declared = declared_parameters(nb)
        unknown = [n for n in names if n not in declared]
        if unknown:
            problems.append(f"{nb}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
                            f"it declares {', '.join(declared)}")
    if problems:
        raise ValueError("\n".join(problems))


def parameter_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the values in `grid` (name -> list of values), in a stable order."""
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def run_name(params: Mapping[str, Any]) -> str:
    """A folder name for one combination of parameters, e.g. 'profile=cpu,seed=3'."""
    if not params:
        return "default"
    text = ",".join(f"{k}={v}" for k, v in params.items())
    return "".join(c if c.isalnum() or c in "=,.-_" else "_" for c in text)


def strip_volatile(nb: nbformat.NotebookNode, drop_injected: bool = False) -> nbformat.NotebookNode:
    """Remove what changes from run to run (timestamps, durations, papermill and widget metadata); fix cell ids.

    Two runs with the same inputs then give identical files.
    """
    nb.metadata = nbformat.from_dict({
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    cells = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if drop_injected and "injected-parameters" in tags:
            continue
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = _merged_streams(cell.outputs)
            for output in cell.outputs:
                output.pop("transient", None)
                if "data" in output:
                    output["data"].pop(WIDGET_MIME, None)
                output.get("metadata", {}).pop(WIDGET_MIME, None)
        cells.append(cell)
    for position, cell in enumerate(cells):
        cell["id"] = f"cell-{position:03d}"
    nb.cells = cells
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nb


def _merged_streams(outputs: list) -> list:
    """Consecutive stream outputs of one name (stdout, stderr) joined into one, as a live notebook shows them."""
    merged = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (output.get("output_type") == "stream" and previous is not None
                and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
            previous["text"] = previous["text"] + output["text"]
        else:
            merged.append(output)
    return merged


@dataclass
class Job:
    """One notebook run: the notebook, its parameters, where the executed copy goes."""

    notebook: Path
    params: dict[str, Any]
    output: Path
    in_place: bool = False


def execute(job: Job, env: Mapping[str, str] | None = None, timeout: int | None = None) -> Path:
    """Run one notebook with papermill in its own folder, then write it back without volatile metadata."""
    import papermill as pm

    os.environ.update({"BOOK_HEADLESS": "1", **(env or {})})
    job.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = job.output.with_name(f".{job.output.stem}.running.ipynb")
    failed = failed_copy(job)
    failed.unlink(missing_ok=True)  # an earlier run's
    try:
        pm.execute_notebook(str(job.notebook), str(tmp), parameters=job.params or None, kernel_name="python3",
                            cwd=str(job.notebook.parent), progress_bar=False, execution_timeout=timeout)
        # a notebook written back in place keeps no injected cell: its parameters cell (BOOK_PROFILE) stays in charge
        nb = strip_volatile(nbformat.read(tmp, as_version=4), drop_injected=job.in_place or not job.params)
        nbformat.write(nb, job.output)
    except pm.PapermillExecutionError:
        if tmp.exists():  # the cells that ran and the failing cell's traceback, kept for inspection
            tmp.replace(failed)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return job.output


def failed_copy(job: Job) -> Path:
    """Where `execute` keeps the partly executed notebook of a run that raised (beside its output, git-ignored)."""
    return job.output.with_name(f"{job.output.stem}.failed.ipynb")


def describe_failure(job: Job, exc: Exception) -> tuple[str, str]:
    """A one-line summary of a failed run (the error, the cell, where its partial notebook is) and the full text."""
    import papermill as pm

    text = str(exc).strip()
    if isinstance(exc, pm.PapermillExecutionError):
        value = exc.evalue.strip().splitlines()[-1] if exc.evalue.strip() else ""
        return f"{exc.ename}: {value} in cell [{exc.exec_count}]; partial run in {failed_copy(job)}", text
    return f"{type(exc).__name__}: {text.splitlines()[-1] if text else ''}", text


def run_jobs(jobs: Sequence[Job], parallel: int = 1,
             env: Mapping[str, str] | None = None) -> list[tuple[Job, tuple[str, str] | None]]:
    """Run jobs `parallel` at a time; returns (job, None or the failure's (summary, full text)) for each, in order."""
    def one(job: Job) -> tuple[Job, tuple[str, str] | None]:
        began = time.perf_counter()
        try:
            execute(job, env)
            failure = None
        except Exception as exc:  # report every failure at the end instead of stopping the batch
            failure = describe_failure(job, exc)
        print(f"  finished {job.output} in {time.perf_counter() - began:.0f} s: "
              f"{'ok' if failure is None else 'FAILED'}", flush=True)  # a batch stopped early says how far it got
        return job, failure

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(one, jobs))


def collect(rows: Iterable[tuple[str, Mapping[str, Any], Path]]) -> list[dict[str, Any]]:
    """(notebook, params, metrics.json path) -> one flat record per run: params, numeric metrics and claims."""
    records = []
    for notebook, params, path in rows:
        record: dict[str, Any] = {"notebook": notebook, **params}
        data = load_metrics(path)
        for key, value in flatten(data.get("metrics", {})).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                # summarise() tells metrics from parameters by the '/': a top-level metric gets a 'metrics/' prefix
                record[key if "/" in key else f"metrics/{key}"] = value
        for claim in data.get("claims", []):
            if isinstance(claim.get("ours"), (int, float)) and not isinstance(claim.get("ours"), bool):
                record[f"claim/{claim['id']}"] = claim["ours"]
            record[f"claim/{claim['id']}/reproduced"] = float(bool(claim["reproduced"]))
        records.append(record)
    return records


def summarise(records: Sequence[Mapping[str, Any]], over: str = "seed") -> list[dict[str, Any]]:
    """Group runs that differ only in `over` and give mean, std and count of every metric."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    param_keys = [k for k in records[0] if "/" not in k] if records else []
    for record in records:
        key = tuple((k, record.get(k)) for k in param_keys if k != over)
        groups.setdefault(key, []).append(record)
    table = []
    for key, members in groups.items():
        row: dict[str, Any] = dict(key)
        row[f"n_{over}s"] = len(members)
        metric_names = sorted({k for m in members for k in m if "/" in k})
        for name in metric_names:
            values = [m[name] for m in members if name in m]
            row[name] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
        table.append(row)
    return table


def write_tables(table: Sequence[Mapping[str, Any]], out: Path) -> tuple[Path, Path]:
    """Write the summary as `summary.csv` (mean and std columns) and `summary.md` (mean ± std)."""
    out.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in table:
        columns += [c for c in row if c not in columns]
    csv_path, md_path = out / "summary.csv", out / "summary.md"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        header = []
        for c in columns:
            header += [f"{c} mean", f"{c} std"] if any(isinstance(r.get(c), tuple) for r in table) else [c]
        writer.writerow(header)
        for row in table:
            line = []
            for c in columns:
                value = row.get(c, "")
                if any(isinstance(r.get(c), tuple) for r in table):
                    line += list(value) if isinstance(value, tuple) else ["", ""]
                else:
                    line.append(value)
            writer.writerow(line)
    # Markdown: one row per metric, one column per group of runs (readable however many metrics there are).
    labels = [", ".join(f"{k}={v}" if k != "notebook" else str(v)
                        for k, v in row.items() if not isinstance(v, tuple)) for row in table]
    metrics = [c for c in columns if any(isinstance(r.get(c), tuple) for r in table)]
    lines = ["| metric | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name in metrics:
        cells = [f"{row[name][0]:.4g} ± {row[name][1]:.2g}" if isinstance(row.get(name), tuple) else ""
                 for row in table]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


