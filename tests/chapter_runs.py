"""Run a chapter headless at the smoke profile through papermill, as a reader's batch run would, and read its metrics."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.data_scripts.layouts import REPO


def run_smoke(chapter: str, tmp_path: Path, **parameters: str) -> dict:
    """Execute notebooks/<chapter>.ipynb with `parameters` into tmp_path; returns its metrics.json."""
    notebook = REPO / "notebooks" / f"{chapter}.ipynb"
    out_dir = tmp_path / "run"
    env = {**os.environ, "BOOK_HEADLESS": "1", "BOOK_PROFILE": "smoke"}
    flags = [arg for name, value in {**parameters, "out_dir": str(out_dir)}.items() for arg in ("-p", name, value)]
    subprocess.run([sys.executable, "-m", "papermill", str(notebook), str(tmp_path / "out.ipynb"),
                    "--cwd", str(notebook.parent), *flags], check=True, capture_output=True, env=env)
    return json.loads((out_dir / "metrics.json").read_text())
