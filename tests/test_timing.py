import pytest

from helpers.timing import interleaved_ms


def test_every_function_runs_warmup_plus_rounds_times_repeats_interleaved():
    order = []
    result = interleaved_ms({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, rounds=2, repeats=3,
                            warmup=1)
    assert set(result) == {"a", "b"} and all(v >= 0 for v in result.values())
    assert order == ["a", "b"] + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3


def test_bad_rounds_are_refused():
    with pytest.raises(ValueError, match="rounds=0"):
        interleaved_ms({"a": lambda: None}, rounds=0)


def test_a_cuda_device_is_synchronised_around_every_timed_block(monkeypatch):
    import torch

    from helpers import timing

    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))
    interleaved_ms({"a": lambda: events.append("a")}, rounds=2, repeats=2, warmup=1, device="cuda")
    assert events == ["a"] + ["sync", "a", "a", "sync"] * 2
    events.clear()
    interleaved_ms({"a": lambda: events.append("a")}, rounds=1, repeats=1, warmup=0, device="cpu")
    assert events == ["a"]
    assert timing.synchronizer(None)() is None
