"""metrics.json for every run: the run header, wall time per phase, every number of the chapter's tables, and claims.

    run = runs.Run(cfg, chapter="00_faces")     # prints the header
    with run.phase("train"): ...               # wall time per phase (in metrics.json only: outputs stay stable)
    run.record("table1/full/miou", 0.71)       # any number the chapter shows (returns nothing: no echo in a cell)
    run.table("table1", {"full": {"mIoU": 0.71}}, reference={"paper": {"mIoU": 0.7031}})  # recorded and shown
    run.glue("full_miou", 0.71)                # recorded, and quoted in the prose as {glue:text}`full_miou:.3f`
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
from typing import Any, Mapping, Sequence

from .config import RunConfig, in_notebook_kernel, print_header, run_header


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

    def record(self, key: str, value: Any) -> None:
        """Store a number (or a nested structure of numbers) under a '/'-separated key."""
        node = self.metrics
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"metrics key {key!r}: {part!r} already holds a value")
        node[leaf] = _jsonable(value)

    def table(self, key: str, rows: Mapping[str, Mapping[str, Any]],
              reference: Mapping[str, Mapping[str, Any]] | None = None, columns: Sequence[str] | None = None,
              first_column: str = "", digits: int = 3, formats: Mapping[str, str] | None = None) -> None:
        """Record a table of this run's numbers under `key` and show it as Markdown in one call.

        `rows` maps a row's label to {column: value}; `reference` rows (the paper's numbers) are shown above them but
        not recorded. Columns are `columns` or the union of the rows' keys in order; a missing value, None or NaN
        shows as "—", floats with `digits` decimals unless `formats` gives the column a format ("{:.2%}").
        """
        if reference and set(reference) & set(rows):
            raise ValueError(f"table {key!r}: rows {sorted(set(reference) & set(rows))} are both reference and ours")
        self.record(key, {label: dict(values) for label, values in rows.items()})
        shown = {**(reference or {}), **rows}
        if columns is None:
            columns = list(dict.fromkeys(c for values in shown.values() for c in values))
        formats = formats or {}
        body = [[label, *(_fmt(values.get(c), digits, form=formats.get(c)) for c in columns)]
                for label, values in shown.items()]
        _show_markdown(markdown_table([first_column, *columns], body))

    def glue(self, name: str, value: Any) -> None:
        """Record a number (or short text) the chapter's prose quotes, and glue it for myst-nb.

        The Markdown then writes {glue:text}`name:.3f` (a format spec of Python's mini-language) instead of typing
        the number, so the prose always shows this run's value. Recorded under "prose/<name>" in metrics.json.
        """
        if not name.isidentifier():
            raise ValueError(f"glue name {name!r}: use letters, digits and underscores (it appears in the Markdown)")
        if isinstance(value, str) and len(value) > 200:
            raise ValueError(f"glue {name!r}: {len(value)} characters; glue numbers or a few words, not prose")
        value = _jsonable(value)
        if not isinstance(value, (int, float, str)):
            raise TypeError(f"glue {name!r}: a number or a string, got {type(value).__name__}")
        self.record(f"prose/{name}", value)
        if in_notebook_kernel():  # the book's builder reads the glued outputs; a script has no notebook to glue into
            from myst_nb import glue

            glue(name, value, display=False)

    def claim(self, id: str, claim: str, paper: Any, ours: Any, criterion: str, reproduced: bool) -> None:
        """Add a headline claim of the paper with this run's number and whether it reproduces."""
        if any(c["id"] == id for c in self.claims):
            raise ValueError(f"claim {id!r} recorded twice")
        item = {"id": id, "claim": claim, "paper": _jsonable(paper), "ours": _jsonable(ours),
                "criterion": criterion, "reproduced": bool(reproduced)}
        self.claims.append(item)

    def claims_markdown(self) -> str:
        """The closing claims table as Markdown."""
        body = [[f"`{c['id']}`", c["claim"], _fmt(c["paper"], 4, significant=True),
                 _fmt(c["ours"], 4, significant=True), c["criterion"], "yes" if c["reproduced"] else "**no**"]
                for c in self.claims]
        return markdown_table(["id", "claim", "paper", "ours", "criterion", "reproduced"], body)

    def show_claims(self) -> None:
        """Display the claims table (Markdown in a notebook, text elsewhere)."""
        _show_markdown(self.claims_markdown())

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


def _fmt(value: Any, digits: int, significant: bool = False, form: str | None = None) -> str:
    """A table cell: a number in `form` or floats with `digits` decimals (or significant digits), None and NaN as a
    dash."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if form is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        return form.format(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}" if significant else f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; a "|" inside a cell (as in |yaw|) is escaped."""
    def line(cells):
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells under a header of {len(header)}: {row!r}")
    return "\n".join([line(header), "|" + "---|" * len(header), *(line(row) for row in rows)])


def _show_markdown(text: str) -> None:
    """Markdown in a notebook, plain text elsewhere."""
    if in_notebook_kernel():
        from IPython.display import Markdown, display

        display(Markdown(text))
    else:
        print(text)


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
