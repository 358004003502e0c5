"""helpers.checkpoint and the cache of helpers.train: hits, misses, refusals, retrain, atomic saves, weights_only."""
from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from helpers import checkpoint as ckpt
from helpers.train import Phase, TrainSpec, train


class Points(Dataset):
    """32 fixed points of a noisy linear function, as dict items."""

    def __init__(self, n: int = 32):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(n, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


def make_spec(calls: list, lr: float = 0.05, steps: int = 6, checkpoint_every: int = 500) -> TrainSpec:
    def build():
        return {"net": nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.2), nn.Linear(8, 1))}

    def loss(nets, batch, step):
        calls.append(step)
        value = (nets["net"](batch["x"]).squeeze(1) - batch["y"]).pow(2).mean()
        return value, {"mse": value.detach()}

    return TrainSpec(name="toy", config={"lr": lr, "width": 8}, build=build,
                     optimizers=lambda nets: {"opt": torch.optim.Adam(nets["net"].parameters(), lr=lr)},
                     phases=[Phase("fit", loss, "opt")], steps=steps, batch_size=8, seed=1, data=Points(),
                     precision="fp32", channels_last=False, checkpoint_every=checkpoint_every)


def weights(trained) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trained.nets["net"].state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------------------------------------ config_hash
def test_config_hash_ignores_key_order_and_sees_values():
    a = {"lr": 0.1, "model": {"width": 8, "depth": 2}, "tags": [1, 2]}
    b = {"tags": [1, 2], "model": {"depth": 2, "width": 8}, "lr": 0.1}
    assert ckpt.config_hash(a) == ckpt.config_hash(b)
    assert re.fullmatch(r"[0-9a-f]{16}", ckpt.config_hash(a))
    assert ckpt.config_hash(a) != ckpt.config_hash({**a, "lr": 0.2})
    assert ckpt.config_hash(a) != ckpt.config_hash({**a, "tags": [2, 1]})
    assert ckpt.config_hash({"x": 1}) != ckpt.config_hash({"x": "1"})


def test_non_json_config_refused(tmp_path):
    with pytest.raises(TypeError, match="JSON-able.*device"):
        ckpt.config_hash({"device": torch.device("cpu")})
    with pytest.raises(TypeError, match="JSON-able"):
        ckpt.cache_path("toy", {"f": lambda: 0}, tmp_path)
    spec = make_spec([])
    spec.config = {"lr": 0.05, "act": nn.Tanh}
    with pytest.raises(TypeError, match="JSON-able"):
        train(spec, cache_dir=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())


def test_cache_path_names(tmp_path):
    p = ckpt.cache_path("mask_vae-2", {"a": 1}, tmp_path)
    assert p == tmp_path / f"mask_vae-2-{ckpt.config_hash({'a': 1})}.pt"
    for bad in ("../x", "a b", "a/b", ""):
        with pytest.raises(ValueError, match="checkpoint name"):
            ckpt.cache_path(bad, {}, tmp_path)


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("BOOK_CACHE_DIR", str(tmp_path / "c"))
    assert ckpt.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("BOOK_CACHE_DIR")
    assert ckpt.default_cache_dir().parts[-2:] == ("face-latents-book", "checkpoints")


# ------------------------------------------------------------------------------------------------ cache through train()
def test_cache_hit_loads_without_training(tmp_path):
    calls: list[int] = []
    first = train(make_spec(calls), cache_dir=tmp_path, progress=False)
    assert calls == list(range(6)) and first.from_cache is False
    assert first.path.parent == tmp_path and first.path.name.startswith("toy-")
    second = train(make_spec(calls), cache_dir=tmp_path, progress=False)
    assert calls == list(range(6))  # no new loss evaluation
    assert second.from_cache is True and second.path == first.path and second.steps == 6
    assert_same(weights(first), weights(second))
    assert second.history == first.history
    assert not second.nets["net"].training  # handed back in eval mode, like a fresh run
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.path.name]


def test_cache_miss_on_changed_config_trains_a_new_file(tmp_path):
    calls: list[int] = []
    a = train(make_spec(calls, lr=0.05), cache_dir=tmp_path, progress=False)
    b = train(make_spec(calls, lr=0.01), cache_dir=tmp_path, progress=False)
    c = train(make_spec(calls, lr=0.05, steps=4), cache_dir=tmp_path, progress=False)
    assert not b.from_cache and not c.from_cache
    assert calls == list(range(6)) + list(range(6)) + list(range(4))
    assert len({a.path, b.path, c.path}) == 3 and all(p.is_file() for p in (a.path, b.path, c.path))
    assert not torch.equal(weights(a)["0.weight"], weights(b)["0.weight"])


def test_retrain_trains_again_and_gives_the_same_weights(tmp_path):
    calls: list[int] = []
    first = train(make_spec(calls), cache_dir=tmp_path, progress=False)
    again = train(make_spec(calls), cache_dir=tmp_path, progress=False, retrain=True)
    assert calls == list(range(6)) * 2 and again.from_cache is False and again.path == first.path
    assert_same(weights(first), weights(again))  # seeded: retraining reproduces the model


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    first = train(make_spec([], lr=0.05), cache_dir=tmp_path, progress=False)
    saved = ckpt.load_checkpoint(first.path)
    other = json.loads(json.dumps(saved["config"]))
    other["config"]["lr"] = 0.5
    with pytest.raises(ValueError) as info:
        ckpt.load_checkpoint(first.path, other)
    msg = str(info.value)
    assert "another configuration" in msg and "config.lr: checkpoint 0.05 vs requested 0.5" in msg
    assert "retrain=True" in msg
    # a stale file sitting at another configuration's cache path is refused by train() too
    calls: list[int] = []
    spec = make_spec(calls, lr=0.5)
    target = ckpt.cache_path("toy", {**saved["config"], "config": {"lr": 0.5, "width": 8}}, tmp_path)
    target.write_bytes(first.path.read_bytes())
    with pytest.raises(ValueError, match=r"config\.lr: checkpoint 0\.05 vs requested 0\.5"):
        train(spec, cache_dir=tmp_path, progress=False)
    assert calls == []
    # ... unless asked to retrain, which overwrites it
    redone = train(spec, cache_dir=tmp_path, progress=False, retrain=True)
    assert redone.path == target and ckpt.load_checkpoint(target, saved["config"] | {"config": {"lr": 0.5, "width": 8}})


def test_describe_differences_nested_and_missing():
    text = ckpt.describe_differences({"a": 1, "m": {"w": 8, "d": 2}}, {"a": 1, "m": {"w": 16}, "new": True})
    assert text == "m.d: checkpoint 2 vs requested '<missing>'; m.w: checkpoint 8 vs requested 16; " \
                   "new: checkpoint '<missing>' vs requested True"
    assert ckpt.describe_differences({"a": [1, 2]}, {"a": [1, 2]}) == ""


def test_load_refuses_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        ckpt.load_checkpoint(tmp_path / "none.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="not a checkpoint of this book"):
        ckpt.load_checkpoint(foreign)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_unreadable_cache_file_is_named_with_the_remedy(tmp_path, damage):
    first = train(make_spec([]), cache_dir=tmp_path, progress=False)
    data = first.path.read_bytes()
    broken = {"truncated": data[: len(data) // 2], "garbage": b"not a zip archive" * 10, "empty": b""}[damage]
    first.path.write_bytes(broken)
    calls: list[int] = []
    with pytest.raises(ValueError) as info:
        train(make_spec(calls), cache_dir=tmp_path, progress=False)
    msg = str(info.value)
    assert str(first.path) in msg and "cannot be read" in msg and "Delete the file" in msg and "retrain=True" in msg
    assert calls == []
    redone = train(make_spec(calls), cache_dir=tmp_path, progress=False, retrain=True)  # the remedy works
    assert calls == list(range(6)) and ckpt.load_checkpoint(redone.path)["done"]


# ------------------------------------------------------------------------------------------------ file format
def test_checkpoint_loads_with_weights_only(tmp_path):
    trained = train(make_spec([]), cache_dir=tmp_path, progress=False)
    raw = torch.load(trained.path, weights_only=True)
    assert raw["format"] == ckpt.FORMAT and raw["name"] == "toy" and raw["step"] == 6 and raw["done"] is True
    assert raw["config_hash"] == trained.path.stem.split("-")[-1] == ckpt.config_hash(raw["config"])
    assert set(raw["state"]) == {"nets", "optimizers", "history"}
    assert_same(raw["state"]["nets"]["net"], weights(trained))
    assert raw["state"]["optimizers"]["opt"]["state"][0]["step"] == 6  # Adam's step counter
    assert raw["state"]["history"]["step"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    import datetime

    path = tmp_path / "evil.pt"  # any pickled object other than tensors and plain data
    ckpt.save_atomic(ckpt.make_checkpoint("x", {}, 0, True, {"obj": datetime.date(2020, 1, 1)}), path)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        ckpt.load_checkpoint(path)


def test_make_checkpoint_is_json_roundtrip_of_config():
    c = ckpt.make_checkpoint("n", {"t": (1, 2)}, 3, False, {"w": torch.ones(1)})
    assert c["config"] == {"t": [1, 2]} and c["config_hash"] == ckpt.config_hash({"t": [1, 2]})
    assert c["step"] == 3 and c["done"] is False


# ------------------------------------------------------------------------------------------------ atomic writes
def test_save_killed_half_way_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "m.pt"
    old = ckpt.make_checkpoint("m", {"a": 1}, 5, False, {"w": torch.arange(1000.0)})
    ckpt.save_atomic(old, path)
    good_bytes = path.read_bytes()

    def dying_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip file")
        f.flush()
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(ckpt.torch, "save", dying_save)
    new = ckpt.make_checkpoint("m", {"a": 1}, 10, True, {"w": torch.zeros(1000)})
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_atomic(new, path)
    monkeypatch.undo()
    assert path.read_bytes() == good_bytes
    loaded = ckpt.load_checkpoint(path, {"a": 1})
    assert loaded["step"] == 5 and torch.equal(loaded["state"]["w"], torch.arange(1000.0))
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temporary file left behind


def test_save_atomic_replaces_and_creates_folders(tmp_path):
    path = tmp_path / "a" / "b" / "c.pt"
    ckpt.save_atomic(ckpt.make_checkpoint("c", {}, 1, False, {}), path)
    ckpt.save_atomic(ckpt.make_checkpoint("c", {}, 2, True, {}), path)
    assert ckpt.load_checkpoint(path, {})["step"] == 2
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]
