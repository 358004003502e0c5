import time

import numpy as np
import pytest
import torch

from helpers import directions, metrics
from helpers.models import stylegan


def test_regress_direction_recovers_a_linear_semantic_and_many_at_once():
    g = torch.Generator().manual_seed(0)
    d, n = 16, 200
    w = torch.randn(2 * n, d, generator=g)
    v_true = torch.randn(d, 3, generator=g)
    y = w @ v_true + 0.01 * torch.randn(2 * n, 3, generator=g)
    dW, dY = directions.pair_differences(w, y)
    assert dW.shape == (n, d) and dY.shape == (n, 3)
    v = directions.regress_direction(dW, dY)
    assert v.shape == (d, 3)
    assert torch.allclose(v, v_true, atol=0.01)
    v0 = directions.regress_direction(dW, dY[:, 0])
    assert v0.shape == (d,) and torch.allclose(v0, v[:, 0], atol=1e-5)
    # the same minimiser as Eq. 3's closed form
    closed = torch.linalg.inv(dW.double().t() @ dW.double()) @ dW.double().t() @ dY.double()
    assert torch.allclose(v.double(), closed, atol=1e-4)


def test_regress_direction_rejects_too_few_pairs_and_bad_shapes():
    with pytest.raises(ValueError, match="more pairs than latent dimensions"):
        directions.regress_direction(torch.randn(8, 8), torch.randn(8))
    with pytest.raises(ValueError, match="dY must be"):
        directions.regress_direction(torch.randn(20, 4), torch.randn(19))
    with pytest.raises(ValueError, match="dW must be"):
        directions.regress_direction(torch.randn(20), torch.randn(20))


def test_projected_standard_error_matches_the_spread_of_repeated_regressions():
    g = torch.Generator().manual_seed(3)
    d, n, sigma = 6, 120, 0.5
    dW = torch.randn(n, d, generator=g, dtype=torch.float64)
    v_true = torch.randn(d, dtype=torch.float64, generator=g)
    u = directions.unit(torch.randn(d, 400, dtype=torch.float64, generator=g))  # random unit directions
    errors, predicted = [], []
    for _ in range(300):
        dY = dW @ v_true + sigma * torch.randn(n, dtype=torch.float64, generator=g)
        errors.append((directions.regress_direction(dW, dY) - v_true) @ u)
        predicted.append(directions.projected_standard_error(dW, dY))
    empirical = torch.stack(errors).std()
    expected = sigma * (torch.linalg.inv(dW.t() @ dW).diagonal().sum() / d).sqrt()
    assert torch.stack(predicted).mean() == pytest.approx(expected.item(), rel=0.05)
    assert empirical == pytest.approx(expected.item(), rel=0.1)
    many = directions.projected_standard_error(dW, torch.stack([dW @ v_true, 2 * dW @ v_true + torch.randn(
        n, dtype=torch.float64, generator=g)], 1))
    assert many.shape == (2,) and many[0] < 1e-6 < many[1]


def test_projection_correlations_known_answers():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(500, 6, generator=g)
    V = torch.zeros(6, 3)
    V[0, 0], V[1, 1] = 2.0, -1.0  # the second direction points against its semantic
    y = torch.stack([3 * w[:, 0] + 1, w[:, 1], torch.full((500,), 0.5)], 1)
    corr = directions.projection_correlations(w, V, y)
    assert corr.shape == (3, 3) and corr.dtype == torch.float32
    assert corr[0, 0].item() == pytest.approx(1.0, abs=1e-6) and corr[1, 1].item() == pytest.approx(-1.0, abs=1e-6)
    assert abs(corr[0, 1].item()) < 0.15  # independent axes
    assert torch.all(corr[2] == 0) and torch.all(corr[:, 2] == 0)  # a zero direction, a constant semantic
    loop = torch.corrcoef(torch.stack([w @ directions.unit(V[:, 0]), y[:, 1]]))[0, 1]
    assert corr[0, 1].item() == pytest.approx(loop.item(), abs=1e-5)
    with pytest.raises(ValueError, match="need w"):
        directions.projection_correlations(w, V[:5], y)


def test_extrapolate_sets_the_projection_to_s_sigma():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(5, 6, generator=g)
    v = torch.randn(6, generator=g)
    u = v / v.norm()
    s = torch.tensor([-2.0, -1.0, 0.0, 1.0, 10.0])
    out = directions.extrapolate(w, v, s, sigma=0.5)
    assert torch.allclose(out @ u, 0.5 * s, atol=1e-6)
    # the orthogonal part is untouched
    assert torch.allclose(out - (out @ u)[:, None] * u, w - (w @ u)[:, None] * u, atol=1e-6)
    shifted = directions.extrapolate(w, v, 0.0, sigma=0.5, mean=3.0)
    assert torch.allclose(shifted @ u, torch.full((5,), 3.0), atol=1e-6)
    assert directions.projection_std(torch.stack([u, -u]) * 2, u) == pytest.approx(2 * 2 ** 0.5)


def test_moving_direction_is_a_unit_average_on_one_side():
    a = torch.tensor([1.0, 0.0])
    b = torch.tensor([0.0, 1.0])
    assert torch.allclose(directions.moving_direction(None, 2 * a, 0.995), a)
    avg = directions.moving_direction(a, b, 0.5)
    assert torch.allclose(avg, torch.tensor([1.0, 1.0]) / 2 ** 0.5)
    assert torch.allclose(directions.moving_direction(a, -a, 0.9), a)  # a flipped estimate is the same direction


def test_sefa_takes_the_style_affines_but_not_torgb_and_finds_the_dominant_direction():
    G = stylegan.Generator(stylegan.scaled_config(16, 8, 4))
    torgbs = [block.torgb for block in G.synthesis.blocks]
    weights = directions.style_affine_weights(G.synthesis, exclude=torgbs)
    convs = sum(block.num_conv for block in G.synthesis.blocks)
    assert len(weights) == convs and all(w.shape[1] == G.cfg.w_dim for w in weights)
    assert len(directions.style_affine_weights(G.synthesis)) == convs + len(torgbs)
    # known answer: rows all along one direction plus small noise -> that direction first
    g = torch.Generator().manual_seed(0)
    e = torch.zeros(8)
    e[3] = 1.0
    rows = [torch.randn(5, 1, generator=g).sign() * e + 0.05 * torch.randn(5, 8, generator=g) for _ in range(3)]
    dirs, singular = directions.sefa_directions(rows, k=2)
    assert dirs.shape == (2, 8) and singular[0] > singular[1]
    assert abs(float(dirs[0] @ e)) > 0.99


def test_ganspace_finds_the_axis_of_largest_variance():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4000, 4, generator=g) * torch.tensor([0.1, 3.0, 1.0, 0.5]) + 7.0
    dirs, std = directions.ganspace_directions(w, k=2)
    assert abs(float(dirs[0, 1])) > 0.999 and abs(float(dirs[1, 2])) > 0.99
    assert std[0] == pytest.approx(3.0, rel=0.05) and std[1] == pytest.approx(1.0, rel=0.05)


def _sparse_problem(seed=0, pixels=300, d=12, p=4):
    """J = U V^T with disjoint pixel supports and orthonormal V (a known optimum at alpha = beta = 0)."""
    g = torch.Generator().manual_seed(seed)
    U = torch.zeros(pixels, p, dtype=torch.float64)
    for i in range(p):
        U[i * 50:(i + 1) * 50, i] = torch.randn(50, generator=g, dtype=torch.float64) + 2.0
    V, _ = torch.linalg.qr(torch.randn(d, p, generator=g, dtype=torch.float64))
    return U @ V.t(), U, V


def test_sparse_objective_known_value():
    J = torch.eye(2, dtype=torch.float64)
    U = torch.eye(2, dtype=torch.float64)
    V = torch.tensor([[1.0, 0.6], [0.0, 0.8]], dtype=torch.float64)
    # residual: J - U V^T = [[0, 0], [-0.6, 0.2]] -> 0.4; ||U||_1 = 2; off-diagonal cosines 0.6 twice -> 0.72
    assert float(directions.sparse_objective(J, U, V, alpha=0.5, beta=2.0)) == pytest.approx(0.4 + 1.0 + 1.44)


@pytest.mark.parametrize("solver", directions.SPARSE_SOLVERS)
def test_sparse_solvers_lower_the_objective_and_keep_unit_directions(solver):
    J, _, _ = _sparse_problem()
    trace = []
    U, V = directions.sparse_directions(J, 4, alpha=0.1, beta=1.0, solver=solver, steps=200,
                                        lr=1e-2, trace=trace, record_every=20)
    assert U.shape == (300, 4) and V.shape == (12, 4)
    assert torch.allclose(V.norm(dim=0), torch.ones(4, dtype=V.dtype), atol=1e-6)
    assert trace[-1][1] < 0.5 * trace[0][1]
    assert all(t1 >= t0 for (t0, _), (t1, _) in zip(trace, trace[1:]))


def test_proximal_solver_reaches_adams_objective_in_a_tenth_of_its_steps():
    J, _, _ = _sparse_problem(seed=2)
    J = J + 0.05 * torch.randn(J.shape, generator=torch.Generator().manual_seed(3), dtype=J.dtype)
    adam, proximal = [], []
    directions.sparse_directions(J, 6, alpha=0.2, beta=1.0, solver="adam", steps=3000, lr=1e-2, trace=adam,
                                 record_every=3000)
    directions.sparse_directions(J, 6, alpha=0.2, beta=1.0, solver="proximal", steps=300, trace=proximal,
                                 record_every=300)
    assert proximal[0][1] == adam[0][1]  # the same start
    assert proximal[-1][1] <= adam[-1][1] * (1 + 1e-3)


def test_proximal_solver_recovers_disjoint_components():
    J, U_true, V_true = _sparse_problem(seed=3)
    U, V = directions.sparse_directions(J, 4, alpha=0.01, beta=1.0, solver="proximal", steps=2000, seed=1)
    assert float((J - U @ V.t()).norm() / J.norm()) < 0.02
    match = (V.t() @ V_true).abs()  # each learned direction matches one true direction
    assert torch.all(match.max(dim=1).values > 0.99)
    assert sorted(match.argmax(dim=1).tolist()) == [0, 1, 2, 3]
    # each component's support is one block of 50 pixels
    for p in range(4):
        block = int(match[p].argmax())
        inside = U[block * 50:(block + 1) * 50, p].norm()
        assert inside / U[:, p].norm() > 0.99


def test_sparse_directions_validates_its_arguments():
    with pytest.raises(ValueError, match="solver"):
        directions.sparse_directions(torch.randn(5, 3), 2, 1.0, 1.0, solver="lbfgs")
    with pytest.raises(ValueError, match="alpha"):
        directions.sparse_directions(torch.randn(5, 3), 2, -1.0, 1.0)


def test_kept_components_applies_the_norm_threshold():
    U = torch.tensor([[0.0, 0.5, 0.001], [0.0, 0.0, 0.001]])
    assert directions.kept_components(U, 0.01).tolist() == [1]


def test_ward_clusters_group_signed_copies_and_separate_orthogonal_groups():
    g = torch.Generator().manual_seed(0)
    axes = torch.eye(6)[:, :3]
    columns = []
    truth = []
    for k in range(3):
        for sign in (1, -1, 1, -1):
            columns.append(sign * axes[:, k] + 0.05 * torch.randn(6, generator=g))
            truth.append(k)
    V = torch.stack(columns, 1)
    labels = directions.ward_clusters(V, 3)
    assert labels.shape == (12,) and set(labels.tolist()) == {0, 1, 2}
    for k in range(3):  # each true group is one cluster
        assert len(set(labels[np.array(truth) == k].tolist())) == 1
    d = directions.abs_cosine_distance(V)
    assert d.shape == (66,) and d.min() >= 0 and d.max() <= 1
    with pytest.raises(ValueError, match="n_clusters"):
        directions.ward_clusters(V, 13)


def test_region_shares_known_answers():
    region = torch.tensor([[0, 0], [1, 2]])  # 2 x 2 pixels: two of region 0, one each of regions 1 and 2
    # two channel maps per component: component 0 lies in region 0 (both channels), component 1 splits 3 : 1
    # between regions 1 and 2 (sign ignored), component 2 is zero
    U = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0],
                      [2, 0, 0], [0, 0, 0], [0, -2, 0], [0, 1, 0]])
    shares = directions.region_shares(U, region, 3)
    assert torch.allclose(shares, torch.tensor([[1.0, 0, 0], [0, 0.75, 0.25], [0, 0, 0]]))
    assert directions.local_fraction(shares) == pytest.approx(2 / 3)  # components 0 and 1; the zero one is not
    assert directions.local_fraction(shares, at_least=0.8) == pytest.approx(1 / 3)
    assert directions.local_fraction(shares[:0]) == 0.0
    with pytest.raises(ValueError, match="region labels"):
        directions.region_shares(U, region, 2)
    with pytest.raises(ValueError, match="U"):
        directions.region_shares(U[:7], region, 3)


def test_cluster_purity_known_answers():
    clusters = np.array([0, 0, 0, 1, 1, 2])
    labels = torch.tensor([2, 2, 1, 0, 0, 1])
    majority, purity = directions.cluster_purity(clusters, labels, 3)
    assert majority == [2, 0, 1]
    assert purity == pytest.approx([2 / 3, 1.0, 1.0])


def test_interfacegan_boundary_is_the_unit_normal_between_the_extremes_of_the_scores():
    generator = torch.Generator().manual_seed(0)
    codes = torch.randn(2000, 4, generator=generator)
    scores = codes[:, 2] - codes[:, 0] + 0.3 * torch.randn(2000, generator=generator)
    n = directions.interfacegan_boundary(codes, scores)
    assert n.norm().item() == pytest.approx(1.0, abs=1e-6)
    expected = torch.tensor([-1.0, 0.0, 1.0, 0.0]) / 2 ** 0.5
    assert torch.dot(n, expected).item() > 0.95  # towards high scores
    assert torch.dot(directions.interfacegan_boundary(codes, -scores), expected).item() < -0.95


def test_interfacegan_boundary_from_the_extremes_follows_the_attribute_where_all_codes_do_not():
    # an attribute that moves the codes along e0 by 1, and a direction e1 in which they hardly vary (std 0.01) but
    # that carries a little of the label: a max-margin SVM on all (overlapping) codes leans on e1, the extremes do not
    generator = torch.Generator().manual_seed(0)
    n_codes = 4000
    score = torch.randn(n_codes, generator=generator)
    label = (score > 0).float()
    codes = torch.randn(n_codes, 2, generator=generator)
    codes[:, 0] += score
    codes[:, 1] = 0.01 * (torch.randn(n_codes, generator=generator) + 0.5 * (2 * label - 1))
    all_codes = directions.unit(metrics.fit_linear_svms(codes, label[:, None])[0][:, 0])
    extremes = directions.interfacegan_boundary(codes, score)
    assert abs(all_codes[0].item()) < 0.5 < extremes[0].item()


def test_interfacegan_boundary_rejects_labels_and_bad_ratios():
    codes = torch.randn(100, 3)
    with pytest.raises(ValueError, match="real-valued"):
        directions.interfacegan_boundary(codes, (codes[:, 0] > 0).long())
    with pytest.raises(ValueError, match="chosen_ratio"):
        directions.interfacegan_boundary(codes, codes[:, 0], chosen_ratio=0.001)
    with pytest.raises(ValueError, match="scores must be"):
        directions.interfacegan_boundary(codes, codes[:10, 0])


def test_conditional_boundary_is_orthogonal_to_the_conditions():
    primal = torch.tensor([1.0, 1.0, 1.0])
    c1, c2 = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 1.0]) / 2 ** 0.5
    torch.testing.assert_close(directions.conditional_boundary(primal, c1), torch.tensor([0.0, 1.0, 1.0]) / 2 ** 0.5)
    both = directions.conditional_boundary(torch.tensor([1.0, 1.0, 0.0]), c1, c2)
    assert abs(torch.dot(both, c1)) < 1e-6 and abs(torch.dot(both, c2)) < 1e-6 and both.norm() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="span of the conditions"):
        directions.conditional_boundary(c1, c1)
