import pytest
import torch

from helpers.models import attribute_classifiers as ac
from helpers.train import train


def test_hyperplanes_give_the_logits_in_the_codes_units():
    net = ac.LinearClassifiers(6, 3)
    torch.nn.init.normal_(net.linear.weight), torch.nn.init.normal_(net.linear.bias)
    net.mean.copy_(torch.linspace(-2, 2, 6))
    net.std.copy_(torch.linspace(0.5, 3, 6))
    w = torch.randn(10, 6)
    d, b = net.hyperplanes()
    torch.testing.assert_close(w @ d.T + b, net(w))


def test_training_separates_attributes_that_are_linear_in_the_codes(tmp_path):
    generator = torch.Generator().manual_seed(0)
    codes = 5 + 3 * torch.randn(2000, 8, generator=generator)  # off-centre, unit-less scale: the buffers handle it
    attributes = torch.stack([codes[:, 0] > 5, codes[:, 1] - codes[:, 2] > 0], 1).long()
    cfg = ac.ClassifierConfig(dim=8, n_attributes=2, lr=1e-2)
    trained = train(ac.training_spec(cfg, codes, attributes, steps=300, batch_size=128, seed=0), cache_dir=tmp_path,
                    progress=False)
    net = trained.nets["classifier"]
    accuracy = ((net(codes) > 0).long() == attributes).float().mean(0)
    assert accuracy.min() > 0.95, accuracy
    d, _ = net.hyperplanes()  # attribute 0 reads code 0 only: its normal is along the first axis
    assert d[0, 0].abs() > 5 * d[0, 1:].abs().max()


def test_mismatched_codes_and_config_are_refused():
    with pytest.raises(ValueError, match="n_attributes"):
        ac.ClassifierConfig(dim=4, n_attributes=0)
    with pytest.raises(ValueError, match="do not match"):
        ac.training_spec(ac.ClassifierConfig(dim=4, n_attributes=2), torch.randn(10, 5), torch.zeros(10, 2).long(),
                         steps=1, batch_size=2, seed=0)
