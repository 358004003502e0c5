"""helpers.config: profiles, validate() and its messages, devices, run header, injected-parameter checks."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from helpers import config
from helpers.config import PROFILES, int_at_least, number_in, one_of, validate

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")


def problems_of(**kwargs) -> list[str]:
    """The bullet lines of validate()'s ValueError."""
    with pytest.raises(ValueError) as info:
        validate(**kwargs)
    text = str(info.value)
    assert text.startswith("bad notebook parameters:")
    return [line[4:] for line in text.splitlines()[1:]]


# ------------------------------------------------------------------------------------------------ bad values
def test_unknown_profile_names_value_and_the_four_profiles():
    (msg,) = problems_of(profile="fast")
    assert "profile='fast'" in msg
    for name in ("'smoke'", "'cpu'", "'gpu'", "'paper'"):
        assert name in msg
    assert set(PROFILES) == {"smoke", "cpu", "gpu", "paper"}


@pytest.mark.parametrize("profile", [["cpu"], {"cpu": 1}, None, 1])
def test_profile_of_another_type(profile):
    (msg,) = problems_of(profile=profile)  # a ValueError, also for unhashable values (papermill -y)
    assert msg.startswith(f"profile={profile!r}: allowed values are 'smoke', 'cpu', 'gpu', 'paper'")


def test_unknown_dataset():
    (msg,) = problems_of(dataset="ffhq")
    assert "dataset='ffhq'" in msg
    for name in config.DATASETS:
        assert repr(name) in msg


def test_chapter_can_narrow_datasets():
    (msg,) = problems_of(dataset="helen", data_root=".", datasets=("synthfaces", "celebamask_hq"))
    assert "dataset='helen'" in msg and "'celebamask_hq'" in msg and "'image_folder'" not in msg


@pytest.mark.parametrize("steps", [0, -5, 2.5, True, "10"])
def test_bad_steps(steps):
    (msg,) = problems_of(steps=steps)
    assert msg.startswith(f"steps={steps!r}:") and "integer > 0" in msg


@pytest.mark.parametrize("seed", [-1, True, False, 1.0, "0", None])
def test_bad_seed_including_bools(seed):
    (msg,) = problems_of(seed=seed)
    assert msg == f"seed={seed!r}: must be an integer >= 0"


def test_data_root_that_does_not_exist(tmp_path):
    missing = tmp_path / "nowhere"
    (msg,) = problems_of(dataset="helen", data_root=str(missing))
    assert f"data_root={str(missing)!r}" in msg and "no such directory" in msg


def test_data_root_that_is_a_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    (msg,) = problems_of(dataset="helen", data_root=f)
    assert "no such directory" in msg


def test_data_root_of_wrong_type():
    (msg,) = problems_of(dataset="helen", data_root=3)
    assert msg.startswith("data_root=3:")


def test_celebamask_hq_needs_data_root():
    (msg,) = problems_of(dataset="celebamask_hq")
    assert msg.startswith("data_root=None:") and "celebamask_hq" in msg and "prepare_celebamask_hq.py" in msg


@NO_CUDA
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_refused_without_cuda(device):
    (msg,) = problems_of(device=device)
    assert f"device={device!r}" in msg and "no CUDA" in msg


@pytest.mark.parametrize("device", ["tpu", "cuda:x", 0, "CPU"])
def test_unknown_device(device):
    (msg,) = problems_of(device=device)
    assert msg.startswith(f"device={device!r}: allowed values are")
    assert "'auto'" in msg and "'cpu'" in msg


@pytest.mark.parametrize("retrain", [1, 0, "yes", None])
def test_retrain_must_be_bool(retrain):
    (msg,) = problems_of(retrain=retrain)
    assert msg == f"retrain={retrain!r}: must be True or False"


@pytest.mark.parametrize("out_dir", ["", None, 5])
def test_bad_out_dir(out_dir):
    (msg,) = problems_of(out_dir=out_dir)
    assert msg.startswith(f"out_dir={out_dir!r}:")


def test_unknown_parameter_name_lists_the_declared_ones():
    (msg,) = problems_of(epochz=3, rules={"beta": number_in(0, 1)})
    assert "unknown parameter 'epochz'" in msg
    for name in config.STANDARD_PARAMETERS + ("beta",):
        assert name in msg


def test_chapter_rules():
    rules = {"mode": one_of("full", "no_kl"), "width": int_at_least(8), "beta": number_in(0.0, 1.0)}
    cfg = validate(profile="smoke", mode="no_kl", width=8, beta=1, rules=rules)
    assert cfg.extra == {"mode": "no_kl", "width": 8, "beta": 1}
    msgs = problems_of(profile="smoke", mode="half", width=4, beta=1.5, rules=rules)
    assert msgs == ["mode='half': must be one of 'full', 'no_kl'",
                    "width=4: must be an integer >= 8",
                    "beta=1.5: must be a number in [0.0, 1.0]"]
    # bools are not integers or numbers for these rules
    assert problems_of(width=True, rules=rules) == ["width=True: must be an integer >= 8"]
    assert problems_of(beta=False, rules=rules) == ["beta=False: must be a number in [0.0, 1.0]"]
    # a chapter parameter left out keeps the notebook's default: nothing to check
    assert validate(rules=rules).extra == {}


def test_several_bad_parameters_give_one_error_naming_each(tmp_path):
    with pytest.raises(ValueError) as info:
        validate(profile="fast", dataset="ffhq", seed=-1, steps=0, device="tpu", retrain="no", typo=1)
    text = str(info.value)
    for fragment in ("profile='fast'", "dataset='ffhq'", "seed=-1", "steps=0", "device='tpu'", "retrain='no'",
                     "unknown parameter 'typo'"):
        assert fragment in text, fragment
    assert len(text.splitlines()) == 1 + 7


# ------------------------------------------------------------------------------------------------ good values
@NO_CUDA
def test_good_defaults_resolve_auto_device_to_cpu(tmp_path):
    cfg = validate(profile="smoke", out_dir=tmp_path / "out")
    assert cfg.device == torch.device("cpu")
    assert cfg.profile is PROFILES["smoke"]
    assert cfg.dataset == "synthfaces" and cfg.data_root is None and cfg.seed == 0 and cfg.retrain is False
    assert cfg.out_dir == tmp_path / "out"
    d = cfg.as_dict()
    assert d["profile"] == "smoke" and d["device"] == "cpu" and d["steps"] is None and d["data_root"] is None


def test_real_dataset_with_existing_root(tmp_path):
    cfg = validate(dataset="celebamask_hq", data_root=str(tmp_path), seed=3, device="cpu", retrain=True)
    assert cfg.data_root == tmp_path and cfg.seed == 3 and cfg.retrain is True
    assert cfg.as_dict()["data_root"] == str(tmp_path)


def test_family_with_and_without_steps_override():
    plain = validate(profile="smoke", device="cpu")
    assert plain.family("sis") == PROFILES["smoke"].families["sis"]
    short = validate(profile="cpu", device="cpu", steps=7)
    fam = short.family("sis")
    assert fam.steps == 7
    row = PROFILES["cpu"].families["sis"]
    assert (fam.resolution, fam.width, fam.batch_size) == (row.resolution, row.width, row.batch_size)
    assert row.steps != 7  # the profile itself is unchanged
    with pytest.raises(ValueError, match="unknown model family 'nope'"):
        short.family("nope")


def test_profiles_share_family_names_and_smoke_is_smallest():
    names = {p: set(prof.families) for p, prof in PROFILES.items()}
    assert names["smoke"] == names["cpu"] == names["gpu"] == names["paper"]
    smoke, cpu = PROFILES["smoke"], PROFILES["cpu"]
    assert smoke.train_size < cpu.train_size and smoke.test_size < cpu.test_size
    for fam in smoke.families:
        assert smoke.families[fam].steps < cpu.families[fam].steps, fam
        assert smoke.families[fam].resolution <= cpu.families[fam].resolution, fam
    for name, prof in PROFILES.items():
        assert prof.name == name


def test_resolve_device_under_torchrun(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert config.resolve_device("cuda") == torch.device("cuda:1")
    assert config.resolve_device("cpu") == torch.device("cpu")


def test_default_profile_and_out_dir(monkeypatch):
    monkeypatch.delenv("BOOK_PROFILE")
    monkeypatch.delenv("BOOK_OUT_DIR")
    assert config.default_profile() == "cpu"
    assert config.default_out_dir("01_x") == str(Path("../runs/01_x"))
    monkeypatch.setenv("BOOK_PROFILE", "smoke")
    monkeypatch.setenv("BOOK_OUT_DIR", "/tmp/r")
    assert config.default_profile() == "smoke"
    assert config.default_out_dir("01_x") == "/tmp/r/01_x"


# ------------------------------------------------------------------------------------------------ header, git
def test_git_commit_outside_a_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert config.git_commit(tmp_path) is None


def test_git_commit_of_a_repository(tmp_path):
    import subprocess

    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, env=env)
    (tmp_path / "a.txt").write_text("1")
    subprocess.run(["git", "add", "a.txt"], cwd=tmp_path, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "x"], cwd=tmp_path, check=True, env=env)
    clean = config.git_commit(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{12}", clean)
    (tmp_path / "a.txt").write_text("2")
    assert config.git_commit(tmp_path) == clean + "+dirty"


def test_git_commit_of_a_batch_is_the_one_it_started_from(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_GIT_COMMIT", "0123456789ab")  # set by run_book.py before it writes anything back
    assert config.git_commit(tmp_path) == "0123456789ab"


def test_run_header(capsys):
    cfg = validate(profile="smoke", seed=4, device="cpu")
    header = config.run_header(cfg)
    assert {"profile", "dataset", "device", "seed", "torch", "python", "git_commit"} <= set(header)
    assert header["profile"] == "smoke" and header["seed"] == 4 and header["device"] == "cpu"
    assert header["torch"] == torch.__version__
    config.print_header(cfg)
    out = capsys.readouterr().out
    assert "     profile: smoke" in out and "        seed: 4" in out


# ------------------------------------------------------------------------------------------------ headless, parameters
def test_assigned_names():
    src = "# Parameters\nprofile = 'cpu'\nseed = 0\nx, y = 1, 2\na.b = 3\nz += 1\nimport os\n"
    assert config._assigned_names(src) == {"profile", "seed"}
    assert config._assigned_names("profile: str = 'cpu'\nseed: int = 0\nsteps: int\n") == {"profile", "seed", "steps"}
    assert config._assigned_names("def broken(:\n") == set()
    assert config._assigned_names("") == set()


def test_outside_ipython_is_headless_and_not_a_kernel():
    assert config.is_headless() is True
    assert config.in_notebook_kernel() is False
    config.check_injected_parameters()  # no shell: nothing to check, no error


def test_book_headless_env(monkeypatch):
    monkeypatch.setenv("BOOK_HEADLESS", "1")
    assert config.is_headless() is True


class _FakeShell:
    def __init__(self, history):
        self.user_ns = {"In": history}


def test_check_injected_parameters_reads_the_cell_history(monkeypatch):
    import IPython

    params = "profile = 'cpu'\nseed = 0\nout_dir = 'runs'\n"
    good = ["", "import helpers", params, "# Parameters\nseed = 3\n"]
    bad = ["", params, "# Parameters\nseed = 3\nepochz = 3\nprofil = 'x'\n"]
    monkeypatch.setattr(IPython, "get_ipython", lambda: _FakeShell(good))
    config.check_injected_parameters()
    monkeypatch.setattr(IPython, "get_ipython", lambda: _FakeShell(bad))
    with pytest.raises(ValueError) as info:
        config.check_injected_parameters()
    msg = str(info.value)
    assert "unknown parameter(s) 'epochz', 'profil'" in msg
    assert "out_dir, profile, seed" in msg
    # annotated parameters are declared too
    monkeypatch.setattr(IPython, "get_ipython", lambda: _FakeShell(["", "seed: int = 0\n", "# Parameters\nseed = 2\n"]))
    config.check_injected_parameters()
    # no injected cell (the notebook run by hand): nothing to refuse
    monkeypatch.setattr(IPython, "get_ipython", lambda: _FakeShell(["", params, "epochz = 3"]))
    config.check_injected_parameters()


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_latents2segments_families_agree(name):
    """L2S fine-tunes the SAE (same size); the baseline segmenter gets the L2S budget on the same images."""
    fam = PROFILES[name].families
    assert (fam["l2s"].resolution, fam["l2s"].width) == (fam["sae"].resolution, fam["sae"].width)
    assert fam["segmenter"].resolution == fam["sae"].resolution
    assert (fam["segmenter"].steps, fam["segmenter"].batch_size) == (fam["l2s"].steps, fam["l2s"].batch_size)
