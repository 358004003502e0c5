"""Profiles of the book and the validation of every notebook's parameters.

A profile fixes, per model family, the resolution, width, training steps and batch size, and the dataset sizes.
`validate` checks a notebook's parameters before any work and returns a `RunConfig`; every bad parameter is named
in one `ValueError` together with what is allowed.
"""
from __future__ import annotations

import ast
import dataclasses
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

DATASETS = ("synthfaces", "celebamask_hq", "helen", "image_folder")
STANDARD_PARAMETERS = ("profile", "dataset", "data_root", "seed", "device", "retrain", "out_dir", "steps")


@dataclass(frozen=True)
class Family:
    """Training settings of one model family within a profile.

    The first four are the row's size and budget. The recipe fields default to the paper's training (the model's own
    learning rate, constant, no weight averaging); a profile that deviates says so here, and the chapter shows it.
    """

    resolution: int
    width: int
    steps: int
    batch_size: int
    lr: float | None = None  # None: the model's (paper's) learning rate
    warmup: int = 0  # steps of linear lr warm-up
    decay: str = "constant"  # lr after the warm-up: "constant", "cosine" or "linear" (to 0 at the last step)
    ema: float | None = None  # half-life, in images, of an average of the evaluated network's weights (None: none)
    precision: str = "auto"  # "auto" (bf16 where the device has it), "fp32" or "bf16": measured per model
    channels_last: bool = True  # memory format of images and conv weights: measured per model
    model: Mapping[str, Any] = field(default_factory=dict)  # the profile's deviations from the paper's model config

    def __post_init__(self) -> None:
        if min(self.resolution, self.width, self.batch_size) < 1 or self.steps < 0:
            raise ValueError(f"{self}: resolution, width and batch_size must be >= 1 and steps >= 0")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"lr={self.lr}: must be None or > 0")
        if self.decay not in ("constant", "cosine", "linear") or self.warmup < 0:
            raise ValueError(f"warmup={self.warmup}, decay={self.decay!r}: need warmup >= 0 and decay one of "
                             "'constant', 'cosine', 'linear'")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision={self.precision!r}: allowed values are 'auto', 'fp32', 'bf16'")
        if self.ema is not None and self.ema <= 0:
            raise ValueError(f"ema={self.ema}: must be None or a half-life > 0 (images)")


@dataclass(frozen=True)
class Profile:
    """One row of DESIGN.md's profile table, as data."""

    name: str
    purpose: str
    resolution: int  # default image resolution of the profile (SynthFaces and data chapters)
    train_size: int  # training images (SynthFaces; real datasets use their own split, capped at this)
    test_size: int
    families: Mapping[str, Family] = field(default_factory=dict)

    def family(self, name: str) -> Family:
        """The settings of model family `name`, with a clear error for unknown names."""
        if name not in self.families:
            raise ValueError(f"unknown model family {name!r}; known: {', '.join(sorted(self.families))}")
        return self.families[name]


def _families(**rows: tuple[int, int, int, int] | Family) -> dict[str, Family]:
    return {name: row if isinstance(row, Family) else Family(*row) for name, row in rows.items()}


# Model families: (resolution, width, steps, batch size). `width` is each family's base channel count (or hidden size).
# The rows of families whose chapter is not written yet are first estimates; each chapter tunes its own and states the
# measured time per profile in its header.
#   mask_vae  paper 001 mask VAE            sis        paper 001 mask-to-image generator (SPADE-like)
#   sae       Swapping Autoencoder (000/002) l2s       Latents2Segments fine-tuning (000)
#   segmenter supervised baseline (000)      features  feature network for Frechet distances (002)
#   stylegan  StyleGAN2 generator (004/003)  w_encoder  W+ encoder of the StyleGAN2 (003)
#   unsup3d   3D decomposition (004)          semantics  supervised pose/light regressor (004)
#   flow      RealNVP W+ -> W* (003)         classifier linear attribute classifiers on W+ codes (003; width unused)
PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke", "tests and CI: every cell runs, every file is written (under a minute per notebook)",
        resolution=32, train_size=256, test_size=64,
        families=_families(
            mask_vae=Family(32, 8, 10, 16, lr=3e-3, warmup=2, decay="cosine", precision="fp32"),
            sis=(32, 8, 10, 8),
            sae=Family(32, 2, 20, 8, ema=2000.0, model={"lambda_l1": 3.0}),
            l2s=Family(32, 2, 20, 8, ema=2000.0, model={"l1_weights": "region_equal", "lambda_l1": 3.0}),
            segmenter=(32, 4, 20, 8), features=(32, 8, 20, 32), stylegan=Family(32, 8, 20, 8, ema=500.0),
            w_encoder=(32, 4, 10, 8), unsup3d=(32, 8, 20, 8), semantics=(32, 4, 20, 32),
            flow=Family(32, 32, 20, 8, precision="fp32", channels_last=False),
            classifier=Family(32, 1, 20, 64, precision="fp32", channels_last=False),
        ),
    ),
    # The cpu rows are chosen from learning curves against wall-clock seconds on 2 cores (data_scripts/
    # learning_curves.py, book/training.md), each deviation from the paper's model in `model=` and in the chapter.
    "cpu": Profile(
        "cpu", "readers and laptops: the models visibly work and the claims reproduce in direction on SynthFaces "
               "(up to 20 minutes per notebook)",
        resolution=64, train_size=4096, test_size=512,
        families=_families(
            mask_vae=Family(64, 32, 500, 32, lr=3e-3, warmup=50, decay="cosine", precision="fp32"),
            sis=(64, 16, 800, 16),
            sae=Family(64, 8, 450, 16, ema=2000.0, model={"lambda_l1": 3.0}),
            l2s=Family(64, 8, 900, 4, ema=2000.0, model={"l1_weights": "region_equal", "lambda_l1": 3.0}),
            segmenter=Family(64, 8, 900, 4, precision="fp32", channels_last=False),
            features=Family(64, 16, 400, 64, precision="fp32", channels_last=False),
            stylegan=Family(32, 64, 8000, 16, ema=5000.0, model={"pl_weight": 0.0}),
            w_encoder=Family(32, 16, 5400, 16, lr=4e-3),
            unsup3d=Family(32, 32, 600, 32, precision="fp32", channels_last=False,
                           model={"view_noise_deg": 3.0, "view_noise_px": 0.5}),
            semantics=Family(32, 32, 1000, 64, precision="fp32", channels_last=False),
            flow=Family(32, 256, 1500, 8, precision="fp32", channels_last=False),
            classifier=Family(32, 1, 4000, 256, precision="fp32", channels_last=False),
        ),
    ),
    "gpu": Profile(
        "gpu", "one GPU: the same at the papers' resolutions with more training (minutes per notebook on an H100)",
        resolution=128, train_size=30000, test_size=2000,
        families=_families(
            mask_vae=(128, 64, 20000, 32), sis=(128, 64, 20000, 16), sae=(128, 32, 30000, 16),
            l2s=(128, 32, 15000, 16), segmenter=(128, 32, 15000, 16), features=(128, 32, 5000, 64),
            stylegan=Family(128, 512, 5000, 32, ema=10000.0, model={"channel_base": 16384, "mapping_layers": 8}),
            w_encoder=(128, 64, 5000, 16), unsup3d=Family(64, 64, 30000, 64, model={"lam_perc": 1.0}),
            semantics=(64, 32, 5000, 64),
            flow=Family(128, 512, 20000, 8, precision="fp32", channels_last=False),
            classifier=Family(128, 1, 5000, 256, precision="fp32", channels_last=False),
        ),
    ),
    "paper": Profile(
        "paper", "the papers' settings on real datasets, one or more GPUs under torchrun (hours)",
        resolution=256, train_size=28000, test_size=2000,
        families=_families(
            mask_vae=(256, 128, 200000, 16), sis=(256, 64, 200000, 16), sae=(128, 32, 500000, 16),
            l2s=(128, 32, 100000, 4), segmenter=(128, 64, 100000, 4), features=(128, 64, 20000, 64),
            stylegan=Family(256, 512, 390625, 64, ema=20000.0), w_encoder=(256, 64, 500000, 8),
            unsup3d=Family(64, 64, 60000, 64, model={"lam_perc": 1.0}), semantics=(64, 32, 20000, 64),
            flow=Family(256, 512, 200000, 8, precision="fp32", channels_last=False),
            classifier=Family(256, 1, 20000, 256, precision="fp32", channels_last=False),
        ),
    ),
}


def default_profile() -> str:
    """The profile a notebook runs when none is given: $BOOK_PROFILE, else "cpu"."""
    return os.environ.get("BOOK_PROFILE", "cpu")


def default_out_dir(chapter: str) -> str:
    """Where a chapter writes metrics.json: $BOOK_OUT_DIR/<chapter>, else ../runs/<chapter> (from notebooks/)."""
    return str(Path(os.environ.get("BOOK_OUT_DIR", "../runs")) / chapter)


@dataclass(frozen=True)
class RunConfig:
    """The validated parameters of one notebook run."""

    profile: Profile
    dataset: str
    data_root: Path | None
    seed: int
    device: torch.device
    retrain: bool
    out_dir: Path
    steps: int | None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def family(self, name: str) -> Family:
        """Settings of a model family in this run's profile, with the `steps` override applied."""
        fam = self.profile.family(name)
        return dataclasses.replace(fam, steps=self.steps) if self.steps is not None else fam

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view of the parameters, for metrics.json and checkpoint keys."""
        return {
            "profile": self.profile.name, "dataset": self.dataset,
            "data_root": str(self.data_root) if self.data_root else None, "seed": self.seed,
            "device": str(self.device), "retrain": self.retrain, "out_dir": str(self.out_dir),
            "steps": self.steps, **dict(self.extra),
        }


# A rule for a chapter's own parameter: (check(value) -> bool, description of what is allowed).
Rule = tuple[Callable[[Any], bool], str]


def one_of(*allowed: Any) -> Rule:
    """Rule: the value is one of `allowed`."""
    return (lambda v: v in allowed, "one of " + ", ".join(repr(a) for a in allowed))


def int_at_least(low: int) -> Rule:
    """Rule: an integer >= low (bools are refused)."""
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low, f"an integer >= {low}")


def number_in(low: float, high: float) -> Rule:
    """Rule: a real number in [low, high]."""
    return (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high,
            f"a number in [{low}, {high}]")


def _device_problem(device: Any) -> str | None:
    if not isinstance(device, str):
        return "a string: 'auto', 'cpu', 'cuda' or 'cuda:<index>'"
    if device in ("auto", "cpu"):
        return None
    if device == "cuda" or device.startswith("cuda:"):
        index = device.partition(":")[2]
        if index and not index.isdigit():
            return "'auto', 'cpu', 'cuda' or 'cuda:<index>'"
        if not torch.cuda.is_available():
            return "'auto' or 'cpu' (no CUDA device is available on this machine)"
        if index and int(index) >= torch.cuda.device_count():
            return f"'cuda:0'..'cuda:{torch.cuda.device_count() - 1}', 'cuda', 'cpu' or 'auto'"
        return None
    return "'auto', 'cpu', 'cuda' or 'cuda:<index>'"


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; under torchrun each process takes cuda:LOCAL_RANK."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return torch.device(device)


def validate(
    profile: Any = "cpu",
    dataset: Any = "synthfaces",
    data_root: Any = None,
    seed: Any = 0,
    device: Any = "auto",
    retrain: Any = False,
    out_dir: Any = "runs",
    steps: Any = None,
    *,
    datasets: tuple[str, ...] = DATASETS,
    rules: Mapping[str, Rule] | None = None,
    **extra: Any,
) -> RunConfig:
    """Check every parameter before any work; raise one ValueError naming each bad one and what is allowed.

    `datasets` narrows the datasets a chapter supports; `rules` declares the chapter's own parameters, passed in
    `extra`. Names that are neither standard nor declared are refused.
    """
    rules = dict(rules or {})
    problems: list[str] = []
    for name in extra:
        if name not in rules:
            allowed = ", ".join(STANDARD_PARAMETERS + tuple(rules))
            problems.append(f"unknown parameter {name!r}: this notebook's parameters are {allowed}")
    if not isinstance(profile, str) or profile not in PROFILES:
        problems.append(f"profile={profile!r}: allowed values are {', '.join(repr(p) for p in PROFILES)}")
    if dataset not in datasets:
        problems.append(f"dataset={dataset!r}: allowed values are {', '.join(repr(d) for d in datasets)}")
    root = None
    if data_root is not None:
        if not isinstance(data_root, (str, os.PathLike)):
            problems.append(f"data_root={data_root!r}: must be a path (string) or None")
        else:
            root = Path(data_root).expanduser()
            if not root.is_dir():
                problems.append(f"data_root={str(data_root)!r}: no such directory (point it at a dataset converted "
                                "by data_scripts/prepare_*.py)")
    elif dataset in DATASETS and dataset != "synthfaces":
        problems.append(f"data_root=None: dataset={dataset!r} needs data_root, the folder written by "
                        f"data_scripts/prepare_{dataset}.py")
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        problems.append(f"seed={seed!r}: must be an integer >= 0")
    device_problem = _device_problem(device)
    if device_problem:
        problems.append(f"device={device!r}: allowed values are {device_problem}")
    if not isinstance(retrain, bool):
        problems.append(f"retrain={retrain!r}: must be True or False")
    if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir):
        problems.append(f"out_dir={out_dir!r}: must be a non-empty path")
    if steps is not None and not (isinstance(steps, int) and not isinstance(steps, bool) and steps > 0):
        problems.append(f"steps={steps!r}: must be None (the profile's steps) or an integer > 0")
    for name, (check, allowed) in rules.items():
        if name in extra and not check(extra[name]):
            problems.append(f"{name}={extra[name]!r}: must be {allowed}")
    if problems:
        raise ValueError("bad notebook parameters:\n  - " + "\n  - ".join(problems))
    return RunConfig(PROFILES[profile], dataset, root, seed, resolve_device(device), retrain, Path(out_dir),
                     steps, dict(extra))


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The current commit (short hash, '+dirty' when the tree has changes) of the repository at `path`, if any.

    $BOOK_GIT_COMMIT, when set, is returned instead: `run_book.py` sets it to the commit a batch starts from, so that
    the notebooks and metrics.json files the batch itself writes back do not mark its later notebooks '+dirty'.
    """
    if os.environ.get("BOOK_GIT_COMMIT"):
        return os.environ["BOOK_GIT_COMMIT"]
    cwd = Path(path) if path else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run_header(run: RunConfig) -> dict[str, Any]:
    """Facts that identify a run: profile, device, versions, seed and git commit."""
    device = str(run.device)
    if run.device.type == "cuda":
        device += f" ({torch.cuda.get_device_name(run.device)})"
    return {
        "profile": run.profile.name, "dataset": run.dataset, "device": device, "seed": run.seed,
        "torch": torch.__version__, "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(), "git_commit": git_commit(),
    }


def print_header(run: RunConfig) -> None:
    """Print the run header, one fact a line."""
    for key, value in run_header(run).items():
        print(f"{key:>12}: {value}")


def check_injected_parameters() -> None:
    """Refuse papermill parameters that the notebook's `parameters` cell does not declare.

    papermill only warns on a misspelt `-p` name and injects it after the parameters cell. In a kernel this reads
    the cell history: the injected cell ("# Parameters") and the cell run just before it (the parameters cell).
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    history = list(shell.user_ns.get("In", [])) if shell is not None else []
    for position, source in enumerate(history):
        if position > 0 and source.lstrip().startswith("# Parameters"):
            declared = _assigned_names(history[position - 1])
            injected = _assigned_names(source)
            unknown = sorted(injected - declared)
            if unknown:
                raise ValueError(f"unknown parameter(s) {', '.join(map(repr, unknown))}: this notebook's "
                                 f"parameters are {', '.join(sorted(declared))}")


def _assigned_names(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
    # annotated parameters (`seed: int = 0`), which papermill also reads as parameters
    return names | {node.target.id for node in tree.body
                    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}


def is_headless() -> bool:
    """True unless a person is looking: no live widgets and plain-text progress under papermill, nbval, make book.

    A kernel started by a Jupyter server (JupyterLab, Notebook) carries JPY_SESSION_NAME; papermill, nbclient and
    nbval start theirs without it. BOOK_HEADLESS=1 or 0 overrides the guess (0 e.g. for other front ends).
    """
    forced = os.environ.get("BOOK_HEADLESS")
    if forced in ("0", "1"):
        return forced == "1"
    if not in_notebook_kernel() or "JPY_SESSION_NAME" not in os.environ:
        return True
    from IPython import get_ipython
    return any(str(src).lstrip().startswith("# Parameters") for src in get_ipython().user_ns.get("In", []))


def in_notebook_kernel() -> bool:
    """True inside a Jupyter kernel (interactive or not)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


__all__ = [
    "DATASETS", "Family", "Profile", "PROFILES", "RunConfig", "validate", "resolve_device", "one_of",
    "int_at_least", "number_in", "default_profile", "default_out_dir", "run_header", "print_header",
    "check_injected_parameters", "is_headless", "in_notebook_kernel", "git_commit",
]
