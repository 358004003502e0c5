import pytest
import torch

from helpers.inference import in_chunks


def test_chunks_give_the_same_result_as_one_call():
    a, b = torch.arange(10.0), torch.arange(10.0) * 2
    calls = []

    def add(x, y):
        calls.append(len(x))
        return x + y

    assert torch.equal(in_chunks(add, a, b, size=4), a + b)
    assert calls == [4, 4, 2]


def test_bad_chunk_size_and_lengths():
    with pytest.raises(ValueError, match="size=0"):
        in_chunks(torch.neg, torch.ones(3), size=0)
    with pytest.raises(ValueError, match="different lengths"):
        in_chunks(torch.add, torch.ones(3), torch.ones(4))
