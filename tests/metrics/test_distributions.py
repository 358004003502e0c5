"""helpers.metrics.distributions: Fréchet distance and path length, known answers."""
import pytest
import torch

from helpers import metrics


def test_feature_statistics_are_the_float64_mean_and_unbiased_covariance():
    features = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 4.0]])
    mean, cov = metrics.feature_statistics(features)
    assert mean.dtype == cov.dtype == torch.float64
    assert mean.tolist() == [3.0, 4.0]
    assert cov.tolist() == [[4.0, 2.0], [2.0, 4.0]]  # sums of products of deviations / (N - 1)
    with pytest.raises(ValueError, match="N >= 2"):
        metrics.feature_statistics(torch.ones(1, 2))


def test_frechet_distance_of_identical_statistics_is_zero():
    features = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    mean, cov = metrics.feature_statistics(features)
    assert abs(metrics.frechet_distance(mean, cov, mean, cov)) < 1e-8


def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form():
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, -1.0, 2.0])
    s1, s2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([4.0, 1.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * (s1 * s2).sqrt()).sum()  # 5 + (1 + 1 + 0) = 7
    distance = metrics.frechet_distance(mu1, torch.diag(s1), mu2, torch.diag(s2))
    assert distance == pytest.approx(float(expected)) == pytest.approx(7.0)


def test_frechet_distance_of_rank_deficient_covariances_and_bad_shapes():
    a = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))  # 3 samples in 8 dims: rank 2
    b = torch.randn(3, 8, generator=torch.Generator().manual_seed(2))
    (m1, c1), (m2, c2) = metrics.feature_statistics(a), metrics.feature_statistics(b)
    w, v = torch.linalg.eigh(c1)  # tr (C1 C2)^(1/2) = tr (C1^(1/2) C2 C1^(1/2))^(1/2), symmetric and real
    root1 = (v * w.clamp(min=0).sqrt()) @ v.T
    trace_root = torch.linalg.eigvalsh(root1 @ c2 @ root1).clamp(min=0).sqrt().sum()
    expected = ((m1 - m2) ** 2).sum() + c1.trace() + c2.trace() - 2 * trace_root
    assert metrics.frechet_distance(m1, c1, m2, c2) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="covariances"):
        metrics.frechet_distance(torch.zeros(2), torch.eye(2), torch.zeros(3), torch.eye(3))


def test_feature_frechet_distance_of_shifted_samples_is_the_squared_shift():
    x = torch.randn(5000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert metrics.feature_frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert metrics.feature_frechet_distance(x, x + torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64)) == \
        pytest.approx(25.0, rel=1e-6)


def test_path_length_w_end_of_a_linear_generator():
    # w = z (1-D), image = c * w: the distance of the pair is c^2 (w1 - w0)^2 exactly, E = 2 c^2 before the trim
    c = 3.0
    g = torch.Generator().manual_seed(0)
    ppl = metrics.path_length_w_end(lambda z: z, lambda w: c * w, lambda x: x, z_dim=1, n=20000, generator=g)
    g = torch.Generator().manual_seed(0)
    d = torch.cat([(lambda z: c ** 2 * (z[:b] - z[b:]).square().sum(1))(torch.randn(2 * b, 1, generator=g))
                   for b in [64] * 312 + [32]])  # the same draws, batch by batch
    low, high = torch.quantile(d, 0.01), torch.quantile(d, 0.99)
    assert ppl == pytest.approx(d[(d >= low) & (d <= high)].mean().item(), rel=1e-3)
    assert 0.8 * 2 * c ** 2 < ppl < 2 * c ** 2  # the top 1 % dropped lowers the mean
    with pytest.raises(ValueError, match="eps"):
        metrics.path_length_w_end(lambda z: z, lambda w: w, lambda x: x, z_dim=1, n=10, eps=0.0)


# ---------------------------------------------------------------------------------------------------- DCI (paper 003)
