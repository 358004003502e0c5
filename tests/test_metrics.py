"""helpers.metrics: known answers on tiny label maps."""
import math

import pytest
import torch

from helpers import metrics


def test_class_pixel_counts_and_frequencies_on_a_known_map():
    labels = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 2], [0, 0, 0, 0], [0, 0, 0, 0]]])
    counts = metrics.class_pixel_counts([labels], 3)
    assert counts.tolist() == [12, 3, 1]
    assert torch.allclose(metrics.class_frequencies(counts), torch.tensor([12 / 16, 3 / 16, 1 / 16], dtype=torch.float64))


def test_class_pixel_counts_refuses_out_of_range_ids():
    try:
        metrics.class_pixel_counts([torch.tensor([[0, 5]])], 3)
    except ValueError as error:
        assert "0..2" in str(error)
    else:
        raise AssertionError("an id of 5 with 3 classes must be refused")


def test_confusion_iou_f1_accuracy_known_answer():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 0]])
    predicted = torch.tensor([[0, 1, 1, 1], [2, 2, 0, 0]])
    confusion = metrics.confusion_matrix(predicted, target, 4)
    assert confusion[:3, :3].tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    iou = metrics.iou_per_class(confusion)
    assert math.isclose(iou[0], 2 / 4) and math.isclose(iou[1], 2 / 3) and math.isclose(iou[2], 2 / 3)
    assert math.isnan(iou[3])  # class 3 never appears
    f1 = metrics.f1_per_class(confusion)
    assert math.isclose(f1[0], 4 / 6) and math.isclose(f1[1], 4 / 5) and math.isclose(f1[2], 4 / 5)
    assert math.isclose(metrics.pixel_accuracy(confusion), 6 / 8)


def test_class_support_is_the_union_of_occurrences():
    a = torch.tensor([[[0, 1], [0, 0]]])
    b = torch.tensor([[[0, 0], [2, 0]]])
    support = metrics.class_support([a, b], 3)
    assert support[1].tolist() == [[False, True], [False, False]]
    assert support[2].tolist() == [[False, False], [True, False]]
    assert support[0].tolist() == [[True, True], [True, True]]


def _column_decoder(size: int, n: int):
    """A decoder where structure channel i (its mean over positions) paints only column block i of the image."""
    def decode(structure, texture):
        out = torch.zeros(structure.shape[0], 3, size, size)
        for i in range(n):
            out[:, :, :, 2 * i:2 * i + 2] = structure[:, i].mean(dim=(1, 2))[:, None, None, None]
        return out
    return decode


def _column_regions(batch: int, size: int, n: int) -> torch.Tensor:
    regions = torch.zeros(batch, n, size, size, dtype=torch.bool)
    for i in range(n):
        regions[:, i, :, 2 * i:2 * i + 2] = True
    return regions


def test_activeness_of_a_disentangled_decoder_is_diagonal_with_the_known_variance():
    decode, regions = _column_decoder(8, 4), _column_regions(3, 8, 4)
    structure, texture = torch.randn(3, 4, 2, 2), torch.randn(3, 5)
    amap = metrics.activeness_map(decode, structure, texture, [[0], [1], [2], [3]], regions, noise_std=0.1,
                                  n_noise=400, generator=torch.Generator().manual_seed(0))
    assert amap.shape == (4, 4)
    assert torch.count_nonzero(amap - torch.diag(amap.diag())) == 0
    # the mean of 4 positions of N(0, 0.1^2) noise has variance 0.01 / 4
    assert torch.allclose(amap.diag(), torch.full((4,), 0.0025, dtype=torch.float64), rtol=0.15)
    assert metrics.activeness_compaction_score(amap) == 1.0
    # chunked decoding gives the same map for the same noise
    chunked = metrics.activeness_map(decode, structure, texture, [[0], [1], [2], [3]], regions, noise_std=0.1,
                                     n_noise=400, generator=torch.Generator().manual_seed(0), max_batch=7)
    assert torch.allclose(chunked, amap)


def test_activeness_of_a_decoder_ignoring_the_structure_is_zero_and_slices_may_be_wide():
    regions = _column_regions(2, 8, 4)
    amap = metrics.activeness_map(lambda s, t: t[:, :3, None, None].expand(-1, 3, 8, 8), torch.randn(2, 4, 2, 2),
                                  torch.randn(2, 5), [[0], [1, 2], [3]], regions)
    assert amap.shape == (3, 4) and amap.abs().sum() == 0
    assert math.isnan(metrics.activeness_compaction_score(torch.zeros(3, 3)))


def test_activeness_slice_entangled_over_two_regions_and_absent_regions():
    decode = _column_decoder(8, 2)
    regions = _column_regions(2, 8, 3)
    regions[:, 2] = False  # region 2 appears in no image
    regions[:, 1, :, 0:2] = True  # region 1 also covers column block 0 (where channel 0 acts)
    amap = metrics.activeness_map(decode, torch.randn(2, 2, 2, 2), torch.randn(2, 5), [[0], [1]], regions,
                                  n_noise=64, generator=torch.Generator().manual_seed(1))
    assert math.isnan(amap[0, 2]) and math.isnan(amap[1, 2])
    assert torch.allclose(amap[0, 1], amap[0, 0] / 2)  # half of region 1 sees channel 0's variance


def test_activeness_refuses_bad_arguments():
    with pytest.raises(ValueError, match="n_noise"):
        metrics.activeness_map(lambda s, t: s, torch.zeros(1, 2, 2, 2), torch.zeros(1, 3), [[0]],
                               torch.ones(1, 1, 2, 2, dtype=torch.bool), n_noise=1)
    with pytest.raises(ValueError, match="regions"):
        metrics.activeness_map(lambda s, t: s, torch.zeros(1, 2, 2, 2), torch.zeros(1, 3), [[0]],
                               torch.ones(2, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="square"):
        metrics.activeness_compaction_score(torch.ones(2, 3))


def test_acs_known_answer():
    amap = torch.tensor([[3.0, 1.0], [0.0, 1.0]])
    assert metrics.activeness_compaction_score(amap) == pytest.approx(4 / 5)
    assert metrics.activeness_compaction_score(torch.ones(5, 5)) == pytest.approx(0.2)


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
        torch.testing.assert_close(weights[:, k], torch.as_tensor(reference.coef_[0]), atol=1e-4, rtol=1e-4)
        assert bias[k].item() == pytest.approx(float(reference.intercept_[0]), abs=1e-4)
