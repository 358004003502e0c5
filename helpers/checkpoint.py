"""Checkpoints: atomic writes, loading with `weights_only=True`, and a cache keyed by a model's full configuration.

A checkpoint is a dict of tensors and JSON-able data only: {"format", "name", "config", "config_hash", "step", "done",
"state": {...}}. The cache file of a configuration is `<cache_dir>/<name>-<hash>.pt`; the same configuration loads
instead of training, and a file whose stored configuration differs from the requested one is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch

FORMAT = "helpers-checkpoint-v1"


def config_hash(config: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit hash of a JSON-able configuration (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=_refuse)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _refuse(value: Any) -> Any:
    raise TypeError(f"configuration values must be JSON-able (str, int, float, bool, None, list, dict); "
                    f"got {type(value).__name__}: {value!r}")


def default_cache_dir() -> Path:
    """$BOOK_CACHE_DIR, else ~/.cache/face-latents-book/checkpoints."""
    env = os.environ.get("BOOK_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "face-latents-book" / "checkpoints"


def cache_path(name: str, config: Mapping[str, Any], cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the checkpoint of (name, config) lives in the cache."""
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"checkpoint name {name!r}: use letters, digits, '-' and '_' only")
    return Path(cache_dir or default_cache_dir()) / f"{name}-{config_hash(config)}.pt"


def save_atomic(obj: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write with torch.save to a temporary file in the same folder, fsync, then rename over `path`.

    A crash at any moment leaves either the previous file or the new one, never a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(dict(obj), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def make_checkpoint(name: str, config: Mapping[str, Any], step: int, done: bool,
                    state: Mapping[str, Any]) -> dict[str, Any]:
    """Assemble a checkpoint dict (state: state dicts, tensors and JSON-able data)."""
    return {"format": FORMAT, "name": name, "config": json.loads(json.dumps(config)),
            "config_hash": config_hash(config), "step": int(step), "done": bool(done), "state": dict(state)}


def load_checkpoint(path: str | os.PathLike, config: Mapping[str, Any] | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True; if `config` is given, refuse a checkpoint made with another configuration."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:
        raise ValueError(f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); it is probably "
                         f"truncated or damaged (an interrupted copy, a full disk). Delete the file, or pass "
                         f"retrain=True to train this model again and overwrite it.") from error
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a checkpoint of this book (expected format {FORMAT!r})")
    if config is not None and ckpt["config_hash"] != config_hash(config):
        raise ValueError(f"{path} was trained with another configuration; differences: "
                         f"{describe_differences(ckpt['config'], config)}. Pass retrain=True to train this one.")
    return ckpt


def describe_differences(stored: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str = "",
                         names: tuple[str, str] = ("checkpoint", "requested")) -> str:
    """Human-readable list of keys whose values differ between two nested configurations."""
    items = []
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key, "<missing>"), wanted.get(key, "<missing>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            inner = describe_differences(a, b, prefix=f"{prefix}{key}.", names=names)
            if inner:
                items.append(inner)
        elif a != b:
            items.append(f"{prefix}{key}: {names[0]} {a!r} vs {names[1]} {b!r}")
    return "; ".join(items)
