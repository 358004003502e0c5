"""helpers.metrics.separability: DCI and linear / non-linear separability, known answers."""
import pytest
import torch

from helpers import metrics


def test_dci_of_a_code_whose_dimensions_are_the_factors_is_perfect():
    generator = torch.Generator().manual_seed(0)
    factors = torch.randint(0, 2, (2000, 4), generator=generator).double()
    codes = torch.cat([factors + 0.05 * torch.randn(2000, 4, generator=generator)], 1)
    scores = metrics.dci(codes, factors, alpha=0.05)
    assert scores["disentanglement"] > 0.99 and scores["completeness"] > 0.99
    assert scores["informativeness"] == pytest.approx(0.0, abs=1e-3)


def test_dci_of_a_rotated_code_is_neither_disentangled_nor_complete():
    generator = torch.Generator().manual_seed(1)
    factors = torch.randint(0, 2, (2000, 2), generator=generator).double()
    rotation = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64) / 2 ** 0.5  # each code mixes both factors
    scores = metrics.dci(factors @ rotation, factors, alpha=0.01)
    assert scores["disentanglement"] < 0.05 and scores["completeness"] < 0.05
    assert scores["informativeness"] == pytest.approx(0.0, abs=1e-3)  # the information is all there


def test_dci_from_importances_known_values():
    # one code per factor, plus a code that explains nothing: D = 1 (it carries no weight), C = 1
    assert metrics.dci_from_importances(torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])) == (1.0, 1.0)
    # one code explains both factors equally: D = 0; each factor sits in one of 2 codes: C = 1
    d, c = metrics.dci_from_importances(torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert d == pytest.approx(0.0) and c == pytest.approx(1.0)
    # a factor spread evenly over 4 codes: C of that factor 0; the other factor in one code: C 1 -> mean 0.5
    d, c = metrics.dci_from_importances(torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]))
    assert c == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least 2 codes and 2 factors"):
        metrics.dci_from_importances(torch.ones(3, 1))


def test_dci_names_mismatched_inputs():
    with pytest.raises(ValueError, match="one N"):
        metrics.dci(torch.zeros(10, 3), torch.zeros(9, 2))


def test_linear_separability_of_separable_and_random_labels():
    generator = torch.Generator().manual_seed(2)
    codes = torch.randn(1000, 5, generator=generator)
    labels = torch.stack([(codes[:, 0] > 0), torch.randint(0, 2, (1000,), generator=generator).bool()], 1)
    scores = metrics.linear_separability(codes, labels)
    assert scores["accuracy"][0] > 0.97 and scores["balanced_accuracy"][0] > 0.97
    assert 0.4 < scores["accuracy"][1] < 0.6
    rare = (codes[:, 1] > 1.9).long()[:, None]  # about 3 % positive and unrelated to the SVM's difficulty
    assert metrics.linear_separability(codes, rare)["majority"][0] > 0.9
    with pytest.raises(ValueError, match="one class"):
        metrics.linear_separability(codes, torch.zeros(1000, 1))


def test_nonlinear_separability_finds_what_no_hyperplane_can():
    generator = torch.Generator().manual_seed(4)
    codes = torch.randn(2000, 4, generator=generator)
    labels = torch.stack([codes[:, 0] * codes[:, 1] > 0, codes[:, 2] > 0], 1)  # XOR of two signs; one half-space
    linear = metrics.linear_separability(codes, labels)
    mlp = metrics.nonlinear_separability(codes, labels, hidden=64, steps=1500)
    assert linear["accuracy"][0] < 0.6 and mlp["accuracy"][0] > 0.9
    assert mlp["accuracy"][1] > 0.95 and mlp["majority"] == linear["majority"]  # the same seeded test part
    assert mlp == metrics.nonlinear_separability(codes, labels, hidden=64, steps=1500)  # deterministic


def test_fit_linear_svms_matches_liblinear():
    from sklearn.svm import LinearSVC

    generator = torch.Generator().manual_seed(3)
    x = torch.randn(400, 6, generator=generator, dtype=torch.float64)
    labels = torch.stack([(x[:, 0] + 0.5 * x[:, 1] + 0.3 * torch.randn(400, generator=generator, dtype=torch.float64) > 0.2),
                          (x[:, 3] < 0)], 1).long()
    weights, bias = metrics.fit_linear_svms(x, labels, C=0.5)
    for k in range(2):
        reference = LinearSVC(C=0.5, dual=False, tol=1e-10, max_iter=10000).fit(x.numpy(), labels[:, k].numpy())
        torch.testing.assert_close(weights[:, k], torch.as_tensor(reference.coef_[0]), atol=1e-6, rtol=1e-6)
        assert bias[k].item() == pytest.approx(float(reference.intercept_[0]), abs=1e-6)


def test_fit_linear_svms_reaches_the_optimum_of_each_svm():
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(600, 12, generator=generator, dtype=torch.float64) @ torch.randn(12, 12, generator=generator,
                                                                                       dtype=torch.float64)
    noise = torch.randn(600, 3, generator=generator, dtype=torch.float64)
    labels = torch.stack([x[:, 0] + noise[:, 0] > 0, x[:, 1] - x[:, 2] + 2 * noise[:, 1] > 1,
                          noise[:, 2] > 1.5], 1).long()  # separable-ish, noisy, and rare and unrelated
    weights, bias = metrics.fit_linear_svms(x, labels, C=2.0)
    augmented = torch.cat([x, torch.ones(600, 1, dtype=torch.float64)], 1)
    params = torch.cat([weights, bias[None]]).requires_grad_(True)
    y = 2 * labels.double() - 1
    objective = 0.5 * params.square().sum() + 2.0 * torch.relu(1 - y * (augmented @ params)).square().sum()
    objective.backward()
    assert params.grad.norm(dim=0).max() < 1e-6  # the KKT point of every SVM (the objective is strictly convex)
    again = metrics.fit_linear_svms(x, labels, C=2.0)
    assert torch.equal(again[0], weights) and torch.equal(again[1], bias)


def test_fit_linear_svms_says_when_it_stops_short_and_refuses_a_bad_C():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = (x[:, :1] > 0).long()
    with pytest.raises(RuntimeError, match="did not converge in 0 Newton steps"):
        metrics.fit_linear_svms(x, labels, max_iter=0)
    with pytest.raises(ValueError, match="C=0"):
        metrics.fit_linear_svms(x, labels, C=0)
