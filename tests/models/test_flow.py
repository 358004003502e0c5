import pytest
import torch

from helpers.models import flow as F
from helpers.models.attribute_classifiers import LinearClassifiers


def randomised(flow: F.RealNVP, seed: int = 0) -> F.RealNVP:
    """The flow with every parameter random (a zero-initialised flow is the identity and would test nothing)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return flow


@pytest.mark.parametrize("linear", [False, True])
def test_inverse_undoes_forward_to_float_precision(linear):
    flow = randomised(F.RealNVP(12, n_couplings=4, hidden=16, linear=linear)).double()
    flow.mean.copy_(torch.linspace(-1, 1, 12, dtype=torch.float64))
    flow.std.copy_(torch.linspace(0.5, 2, 12, dtype=torch.float64))
    w = torch.randn(32, 12, dtype=torch.float64)
    w_star = flow(w)
    assert (w_star - w).abs().max() > 0.1  # it does transform
    torch.testing.assert_close(flow.inverse(w_star), w, atol=1e-12, rtol=0)
    torch.testing.assert_close(flow(flow.inverse(w)), w, atol=1e-12, rtol=0)


def test_log_det_matches_autograd_jacobian():
    flow = randomised(F.RealNVP(6, n_couplings=3, hidden=8)).double()
    flow.std.copy_(torch.tensor([0.5, 1, 2, 1, 3, 0.7], dtype=torch.float64))
    w = torch.randn(3, 6, dtype=torch.float64)
    _, log_det = flow.forward_and_log_det(w)
    for b in range(3):
        jac = torch.autograd.functional.jacobian(lambda x: flow(x[None])[0], w[b])
        torch.testing.assert_close(log_det[b], torch.linalg.slogdet(jac).logabsdet)


def test_a_new_flow_is_the_identity_and_the_linear_ablation_is_linear():
    w = torch.randn(5, 10)
    torch.testing.assert_close(F.RealNVP(10, 4, 8)(w), w)
    linear = randomised(F.RealNVP(10, 4, 8, linear=True)).double()
    a, b = torch.randn(2, 10, dtype=torch.float64).unbind()
    zero = torch.zeros(1, 10, dtype=torch.float64)
    # affine: T(a + b) - T(0) = (T(a) - T(0)) + (T(b) - T(0))
    torch.testing.assert_close(linear((a + b)[None]) - linear(zero),
                               linear(a[None]) - linear(zero) + linear(b[None]) - linear(zero))


def test_masks_alternate_halves():
    masks = F.coupling_masks(9, 4, seed=3)
    assert [int(m.sum()) for m in masks] == [4, 5, 4, 5]
    assert torch.equal(masks[0] + masks[1], torch.ones(9)) and not torch.equal(masks[0], masks[2])


def classifiers_on_axes(dim: int) -> LinearClassifiers:
    """Two classifiers: attribute 0 is w_0 > 0, attribute 1 is 2 w_1 > 1 (hyperplane w_1 = 0.5)."""
    c = LinearClassifiers(dim, 2)
    with torch.no_grad():
        c.linear.weight.zero_(), c.linear.bias.zero_()
        c.linear.weight[0, 0], c.linear.weight[1, 1], c.linear.bias[1] = 1.0, 2.0, -1.0
    return c


def test_signed_distances_and_hinged_margin_loss_known_answers():
    c = classifiers_on_axes(3)
    w = torch.tensor([[2.0, 1.5, 0.0], [-0.5, 0.0, 0.0]])
    y = torch.tensor([[1, 1], [1, 0]])
    r = F.signed_distances(c, w, y)
    torch.testing.assert_close(r, torch.tensor([[2.0, 1.0], [-0.5, 0.5]]))
    margins = torch.tensor([1.0, 1.0])
    # hinge max(0, 1 - r): sample 0 -> 0 + 0; sample 1 -> 1.5 + 0.5; mean over the batch = 1.0
    torch.testing.assert_close(F.margin_loss(c, w, y, margins), torch.tensor(1.0))


def test_attribute_loss_sums_attributes_and_averages_samples():
    c = classifiers_on_axes(2)
    w, y = torch.zeros(4, 2), torch.zeros(4, 2, dtype=torch.long)
    expected = torch.nn.functional.softplus(torch.tensor(0.0)) + torch.nn.functional.softplus(torch.tensor(-1.0))
    torch.testing.assert_close(F.attribute_loss(c, w, y), expected)


def test_preservation_loss_is_zero_when_the_edit_leaves_other_attributes_alone():
    c = classifiers_on_axes(3)
    flow = F.RealNVP(3, 2, 4)  # identity
    w = torch.randn(6, 3)
    y = torch.randint(0, 2, (6, 2))
    # editing attribute 0 moves along w_0 only, which classifier 1 ignores
    assert F.preservation_loss(flow, c, w, flow(w), y, j=0, step_size=2.0).item() == pytest.approx(0.0, abs=1e-7)
    # a classifier that reads w_0 as well sees the edit
    with torch.no_grad():
        c.linear.weight[1, 0] = 1.0
    assert F.preservation_loss(flow, c, w, flow(w), y, j=0, step_size=2.0).item() > 0.01


def test_the_flow_loss_makes_a_non_linear_attribute_more_separable_by_the_frozen_classifier():
    torch.manual_seed(0)
    n, dim = 512, 8
    w = torch.randn(n, dim)
    y = torch.stack([(w[:, 0] * w[:, 1] > 0), (w[:, 2] > 0)], 1).long()  # attribute 0 is not linear in w
    c = classifiers_on_axes(dim)
    with torch.no_grad():
        c.linear.weight.zero_(), c.linear.bias.zero_()
        c.linear.weight[0, 0], c.linear.weight[1, 2] = 1.0, 3.0
    cfg = F.FlowConfig(dim=dim, n_couplings=4, hidden=32, lr=3e-3)
    spec = F.flow_spec(cfg, c, w, y, steps=300, batch_size=64, seed=0)
    flow = spec.build()["flow"]
    before = F.attribute_loss(c, flow(w), y).item()
    nets, opt = {"flow": flow}, spec.optimizers({"flow": flow})["flow"]
    phase = spec.phases[0]
    for step in range(300):
        idx = torch.randint(n, (64,))
        total, _ = phase.loss(nets, {"code": w[idx], "attributes": y[idx]}, step)
        opt.zero_grad(), total.backward(), opt.step()
    after = F.attribute_loss(c, flow(w), y).item()
    assert after < 0.8 * before


def test_config_and_data_errors_name_the_problem():
    with pytest.raises(ValueError, match="n_couplings"):
        F.FlowConfig(dim=8, n_couplings=0)
    with pytest.raises(ValueError, match="FlowConfig.dim"):
        F.flow_spec(F.FlowConfig(dim=8), classifiers_on_axes(4), torch.randn(10, 4), torch.zeros(10, 2), 1, 2, 0)
