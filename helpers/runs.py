"""metrics.json for every run: the run header, wall time per phase, every number of the chapter's tables, and claims.

    run = runs.Run(cfg, chapter="00_faces")     # prints the header
    with run.phase("train"): ...               # wall time per phase (in metrics.json only: outputs stay stable)
    run.record("table1/full/miou", 0.71)       # any number a table shows
    run.claim("recon_miou", "full model mIoU >= 0.70", paper=0.7031, ours=0.71, criterion=">= 0.70", reproduced=True)
    run.save()                                 # writes <out_dir>/metrics.json atomically
"""
from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from .config import RunConfig, print_header, run_header


def _jsonable(value: Any) -> Any:
    """Numbers and containers as plain JSON (tensors and numpy scalars become Python numbers)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(f"cannot store {type(value).__name__} in metrics.json: {value!r}")


class Run:
    """Collects one notebook run's numbers and writes them to `<out_dir>/metrics.json`."""

    def __init__(self, cfg: RunConfig, chapter: str, show_header: bool = True):
        self.cfg, self.chapter = cfg, chapter
        self.header = run_header(cfg)
        self.phases: dict[str, float] = {}
        self.metrics: dict[str, Any] = {}
        self.claims: list[dict[str, Any]] = []
        self._started = time.perf_counter()
        if show_header:
            print_header(cfg)

    @contextlib.contextmanager
    def phase(self, name: str):
        """Time a phase of the run (seconds are added up when a phase repeats)."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - began

    def record(self, key: str, value: Any) -> Any:
        """Store a number (or a nested structure of numbers) under a '/'-separated key; returns the value."""
        node = self.metrics
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"metrics key {key!r}: {part!r} already holds a value")
        node[leaf] = _jsonable(value)
        return value

    def claim(self, id: str, claim: str, paper: Any, ours: Any, criterion: str, reproduced: bool) -> dict:
        """Add a headline claim of the paper with this run's number and whether it reproduces."""
        if any(c["id"] == id for c in self.claims):
            raise ValueError(f"claim {id!r} recorded twice")
        item = {"id": id, "claim": claim, "paper": _jsonable(paper), "ours": _jsonable(ours),
                "criterion": criterion, "reproduced": bool(reproduced)}
        self.claims.append(item)
        return item

    def claims_markdown(self) -> str:
        """The closing claims table as Markdown (a "|" inside a cell, as in |yaw|, is escaped)."""
        rows = ["| id | claim | paper | ours | criterion | reproduced |", "|---|---|---|---|---|---|"]
        for c in self.claims:
            cells = (c["claim"], _fmt(c["paper"]), _fmt(c["ours"]), c["criterion"])
            rows.append(f"| `{c['id']}` | " + " | ".join(str(x).replace("|", "\\|") for x in cells)
                        + f" | {'yes' if c['reproduced'] else '**no**'} |")
        return "\n".join(rows)

    def show_claims(self) -> None:
        """Display the claims table (Markdown in a notebook, text elsewhere)."""
        try:
            from IPython.display import Markdown, display
            display(Markdown(self.claims_markdown()))
        except ImportError:
            print(self.claims_markdown())

    def as_dict(self) -> dict[str, Any]:
        """Everything metrics.json holds."""
        return {
            "chapter": self.chapter,
            "header": self.header,
            "parameters": self.cfg.as_dict(),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "wall_seconds": {**{k: round(v, 3) for k, v in self.phases.items()},
                             "total": round(time.perf_counter() - self._started, 3)},
            "metrics": self.metrics,
            "claims": self.claims,
        }

    def save(self) -> Path:
        """Write metrics.json into out_dir (atomically) and return its path."""
        out = Path(self.cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "metrics.json"
        tmp = out / f".metrics.json.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        os.replace(tmp, path)
        return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def load_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """Read a metrics.json written by `Run.save`."""
    return json.loads(Path(path).read_text())


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metrics -> {'a/b/c': number}; lists of numbers are kept whole."""
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, prefix=name + "/"))
        else:
            flat[name] = value
    return flat
