"""Shared setup of the unit tests: caches and outputs in tmp folders (helpers is installed with pip install -e .)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_book_env(tmp_path, monkeypatch):
    """No test writes to the user's checkpoint cache; BOOK_HEADLESS, BOOK_PROFILE and BOOK_GIT_COMMIT are restored after
    each test (book.execute() sets the environment of the kernels it starts in this process)."""
    monkeypatch.setenv("BOOK_CACHE_DIR", str(tmp_path / "_cache"))
    monkeypatch.delenv("BOOK_HEADLESS", raising=False)  # restored afterwards: book.execute() sets it to "1"
    monkeypatch.delenv("BOOK_GIT_COMMIT", raising=False)  # run_book.py sets it for its kernels
    monkeypatch.setenv("BOOK_PROFILE", "cpu")
    monkeypatch.setenv("BOOK_OUT_DIR", str(tmp_path / "_runs"))
