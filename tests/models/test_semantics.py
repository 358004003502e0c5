import pytest
import torch

from helpers import config
from helpers.data.synthfaces import SynthFaces
from helpers.models import semantics
from helpers.train import train


def test_semantic_names_are_papers_fourteen():
    assert len(semantics.SEMANTIC_NAMES) == 14
    assert semantics.SEMANTIC_NAMES[:2] == ("yaw", "pitch")


def test_semantics_from_parts_converts_angles_to_degrees():
    view = torch.tensor([[torch.pi / 4, -torch.pi / 6, 0.0, 0.01, 0.02, 0.03]])
    y = semantics.semantics_from_parts(view, torch.full((1, 3), 0.2), torch.full((1, 3), 0.5), torch.tensor([[0.1, -0.2]]))
    assert torch.allclose(y[0, :3], torch.tensor([45.0, -30.0, 0.0]))
    assert torch.allclose(y[0, 3:6], view[0, 3:6]) and torch.allclose(y[0, 12:], torch.tensor([0.1, -0.2]))


def test_regressor_undoes_its_standardisation_and_learns(tmp_path):
    faces = SynthFaces(resolution=16, length=64, seed=0)
    batch = faces.batch(range(64))
    split = {"image": batch["image"], "view": batch["view"], "light": batch["light"]}
    row = config.Family(16, 4, 30, 16, precision="fp32", channels_last=False)
    spec = semantics.book_spec(row, split, seed=0)
    trained = train(spec, cache_dir=tmp_path, progress=False)
    net = trained.nets["semantics"]
    truth = semantics.true_semantics(batch["view"], batch["light"])
    assert torch.allclose(net.mean, truth.mean(0)) and torch.allclose(net.std, truth.std(0).clamp_min(1e-6))
    with torch.no_grad():
        out = net(batch["image"][:4])
        assert torch.allclose(out, net.standardised(batch["image"][:4]) * net.std + net.mean)
    assert trained.history["mse"][-1] < trained.history["mse"][0]


def test_book_spec_refuses_splits_without_exact_labels():
    with pytest.raises(ValueError, match="view and light"):
        semantics.book_spec(config.Family(16, 4, 1, 4), {"image": torch.rand(2, 3, 16, 16)}, seed=0)
