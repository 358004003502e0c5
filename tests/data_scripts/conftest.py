"""Fixtures of the data_scripts tests: tiny datasets in the official layouts, built in tmp_path."""
import pytest

from tests.data_scripts.layouts import make_celebamask_hq, make_helen


@pytest.fixture
def celebamask_root(tmp_path):
    return make_celebamask_hq(tmp_path / "CelebAMask-HQ")


@pytest.fixture
def helen_root(tmp_path):
    return make_helen(tmp_path / "helen")
