"""The committed notebooks of the toc: the anatomy every chapter must have, and clean, committed outputs."""
import json
import re

import nbformat
import pytest

from helpers import book
from helpers.config import STANDARD_PARAMETERS
from helpers.runs import load_metrics
from tests.data_scripts.layouts import load_script

NOTEBOOKS = book.toc_notebooks("_toc.yml")


def test_the_toc_lists_notebooks():
    assert NOTEBOOKS, "no notebook in _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_declares_the_standard_parameters(path):
    declared = book.declared_parameters(path)
    assert set(STANDARD_PARAMETERS) <= set(declared), f"{path} misses {set(STANDARD_PARAMETERS) - set(declared)}"
    assert "BOOK_PROFILE" in declared["profile"], "the default profile must come from BOOK_PROFILE"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_validation_follows_the_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    position = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    following = code[position + 1].source
    assert "check_injected_parameters()" in following and "config.validate(" in following


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_are_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every code cell is executed in the committed notebook"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = json.dumps(nb)
    assert "application/vnd.jupyter.widget" not in text and "widgets" not in nb.metadata
    assert "papermill" not in nb.metadata
    assert not re.search(r"/(work|tmp|root|home)/[A-Za-z0-9_.-]+/", text), "an absolute machine path in the outputs"
    assert "show_claims" in text and "run.save()" in text, "a chapter ends with its claims and metrics.json"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_cell_leaves_a_pile_of_outputs(path):
    """Progress and logs stay in one output per stream: no code cell shows more than 5 output boxes (glued values,
    which myst-nb stores as outputs of their own and never shows, do not count)."""
    nb = nbformat.read(path, as_version=4)
    shown = {i: [o for o in c.outputs if "scrapbook" not in o.get("metadata", {})]
             for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    crowded = [(i, len(outputs)) for i, outputs in shown.items() if len(outputs) > 5]
    assert not crowded, f"cells (index, outputs) with more than 5 outputs: {crowded}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_load_nothing_from_the_network(path):
    """The book reads offline: no output pulls a script, style sheet or font from a CDN (players included)."""
    nb = nbformat.read(path, as_version=4)
    html = [o.data["text/html"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "text/html" in o.get("data", {})]
    remote_loads = load_script("check_offline").remote_loads  # the rule `make html` checks the built pages with
    for text in html:
        assert not remote_loads(text), "an output loads from the network"


GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`]+)`")


def glued_names(nb: nbformat.NotebookNode) -> set[str]:
    """The names a notebook's outputs glue (myst-nb's own reader of them)."""
    from myst_nb.ext.glue import extract_glue_data_cell

    return {key for cell in nb.cells if cell.cell_type == "code" for key, _ in extract_glue_data_cell(cell)}


def cited_names(nb: nbformat.NotebookNode) -> set[str]:
    """The names the Markdown cites as {glue:text}`name:format` (or any other glue role)."""
    return {target.split(":", 1)[0] for cell in nb.cells if cell.cell_type == "markdown"
            for target in GLUE_ROLE.findall(cell.source)}


def typed_results(nb: nbformat.NotebookNode) -> list[str]:
    """Decimal numbers typed into the prose that no run produced: not glued, not a constant of the chapter's code,
    not in a sentence quoting the paper, not a section or equation number. The header (cell 0) states measured times
    and memory; the exercises ask questions; both are left out."""
    constants = set(re.findall(r"\d+\.\d+", " ".join(c.source for c in nb.cells if c.cell_type == "code")))
    found = []
    for cell in nb.cells[1:]:
        if cell.cell_type != "markdown":
            continue
        text = cell.source.split("## Exercises")[0]
        text = re.sub(r"\$[^$]*\$|`[^`]*`|\{glue(?::\w+)?\}`[^`]*`", " ", text)  # math, code, glued values
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z*(\-])", text):
            if "paper" in sentence.lower():
                continue
            for match in re.finditer(r"(?<![\w.])(\d+\.\d+)(?!\w|\.\d)", sentence):
                before = sentence[:match.start()]
                if match.group(1) in constants or re.search(r"(Sec\.|Eq\.|Fig\.|Table|Algorithm)\s*$", before):
                    continue
                found.append(f"{match.group(1)} in {' '.join(sentence.split())[:100]!r}")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_glued_value_the_prose_cites_is_in_the_outputs(path):
    nb = nbformat.read(path, as_version=4)
    missing = cited_names(nb) - glued_names(nb)
    assert not missing, f"{path}: the Markdown cites {sorted(missing)}, which no output glues (re-execute it)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_value_the_prose_cites_is_saved_in_the_runs_metrics(path):
    """The notes say their numbers are in metrics.json under prose/: the chapter saves after its glue cell."""
    cited = cited_names(nbformat.read(path, as_version=4))
    saved = load_metrics(path.parent.parent / "runs" / path.stem / "metrics.json")["metrics"]
    missing = cited - set(saved.get("prose", {}))
    assert not missing, f"{path}: runs/{path.stem}/metrics.json lacks prose/{sorted(missing)} (save after the glue cell)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_prose_quotes_results_from_the_run_not_typed(path):
    typed = typed_results(nbformat.read(path, as_version=4))
    assert not typed, f"{path}: numbers typed into the prose; glue them from the run (runs.Run.glue):\n" + \
        "\n".join(typed)


def display_math_inside_a_paragraph(nb) -> list[str]:
    """Lines opening a $$ display block straight after a line of text: MyST then renders the rest of that paragraph as
    garbled inline math, and the glued values in it as raw {glue:text} roles."""
    found = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.split("\n")
        for before, line in zip(lines, lines[1:]):
            if line.lstrip().startswith("$$") and before.strip() and not before.rstrip().endswith("$$"):
                found.append(f"{before.strip()[-60:]!r} / {line.strip()[:40]!r}")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_display_math_stands_in_its_own_paragraph(path):
    found = display_math_inside_a_paragraph(nbformat.read(path, as_version=4))
    assert not found, f"{path}: put a blank line before these $$ blocks:\n" + "\n".join(found)


def test_display_math_inside_a_paragraph_is_found():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("text, with\n$$ x = 1 $$\nmore"),
                nbformat.v4.new_markdown_cell("text:\n\n$$ y = 2 $$\n\nmore")]
    assert len(display_math_inside_a_paragraph(nb)) == 1


def test_typed_results_finds_a_typed_number_and_spares_the_others():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Header, 3.9 GB"),
                nbformat.v4.new_code_cell("run.claim('x', paper=0.729)\nlr = 0.002"),
                nbformat.v4.new_markdown_cell("Our F1 is 0.639, below the claim. A 2.5D map. The mIoU is 0.71. "
                                              "The paper has 0.812 here. "
                                              "We train with lr 0.002 as in Sec. 3.2 and Eq. 2.1. The F1 is "
                                              "{glue:text}`f1:.3f` and $x = 0.5$ and `y = 1.25`.\n\n## Exercises\n"
                                              "Try 0.25.")]
    assert typed_results(nb) == ["0.639 in 'Our F1 is 0.639, below the claim.'", "0.71 in 'The mIoU is 0.71.'"]
