"""The committed notebooks of the toc: the anatomy every chapter must have, and clean, committed outputs."""
import json
import re

import nbformat
import pytest

from helpers import book
from helpers.config import STANDARD_PARAMETERS
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
    """Progress and logs stay in one output per stream: no code cell shows more than 5 output boxes."""
    nb = nbformat.read(path, as_version=4)
    crowded = [(i, len(c.outputs)) for i, c in enumerate(nb.cells) if c.cell_type == "code" and len(c.outputs) > 5]
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
