"""How well binary attributes can be read from latent codes: DCI (Eastwood & Williams) and linear / non-linear
separability (paper 003's Table 1)."""
from __future__ import annotations

import math

import torch


def _normalised_entropy(p: torch.Tensor, base: int) -> torch.Tensor:
    """Entropy of each row of p (rows sum to 1) in log base `base`."""
    terms = torch.where(p > 0, p * torch.log(p.clamp_min(1e-300)), torch.zeros_like(p))
    return -terms.sum(-1) / math.log(base)


def dci_from_importances(importance: torch.Tensor) -> tuple[float, float]:
    """Disentanglement and completeness (Eastwood & Williams, ICLR 2018) of an importance matrix R [codes, factors].

    D = sum_i rho_i (1 - H_K(R_i. / sum_k R_ik)), rho_i = code i's share of all importance; C = mean over factors of
    1 - H_D(R_.j / sum_i R_ij), entropies in base K (factors) and D (codes). A factor no code explains has C_j = 0.
    """
    R = importance.double().abs()
    n_codes, n_factors = R.shape
    if n_codes < 2 or n_factors < 2:
        raise ValueError(f"DCI needs at least 2 codes and 2 factors, got an importance matrix {tuple(R.shape)}")
    total = R.sum()
    if total == 0:
        return 0.0, 0.0
    code_sums, factor_sums = R.sum(1), R.sum(0)
    rows = R / code_sums.clamp_min(1e-300)[:, None]
    disentanglement = ((1 - _normalised_entropy(rows, n_factors)) * code_sums / total).sum()
    columns = (R / factor_sums.clamp_min(1e-300)).T
    completeness = torch.where(factor_sums > 0, 1 - _normalised_entropy(columns, n_codes), torch.zeros_like(factor_sums))
    return float(disentanglement), float(completeness.mean())


def dci(codes: torch.Tensor, factors: torch.Tensor, alpha: float = 0.05, train_share: float = 0.8,
        seed: int = 0) -> dict[str, float]:
    """DCI with one Lasso(alpha) per factor, as paper 003's Table 1 (Eastwood & Williams' framework).

    Codes [N, D] and factors [N, K] are standardised with the training part's statistics (a seeded `train_share`
    split); importance R_ij = |Lasso coefficient of code i for factor j|. Informativeness is the mean test error over
    factors: the classification error of a two-valued factor (prediction thresholded at the midpoint of its values),
    the mean squared error of other factors on their standardised scale. Lower I is better.
    """
    from sklearn.linear_model import Lasso  # imported here: only this metric needs it

    x, y = codes.detach().double().cpu(), factors.detach().double().cpu()
    if x.dim() != 2 or y.dim() != 2 or len(x) != len(y):
        raise ValueError(f"codes [N, D] and factors [N, K] of one N, got {tuple(x.shape)} and {tuple(y.shape)}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_train = int(round(train_share * len(x)))
    if not 2 <= n_train <= len(x) - 1:
        raise ValueError(f"train_share={train_share} of {len(x)} samples leaves no training or no test samples")
    train, test = order[:n_train], order[n_train:]
    x_mean, x_std = x[train].mean(0), x[train].std(0).clamp_min(1e-12)
    y_mean, y_std = y[train].mean(0), y[train].std(0).clamp_min(1e-12)
    xs, ys = (x - x_mean) / x_std, (y - y_mean) / y_std
    importance, errors = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64), []
    for j in range(y.shape[1]):
        model = Lasso(alpha=alpha).fit(xs[train].numpy(), ys[train, j].numpy())
        importance[:, j] = torch.as_tensor(model.coef_).abs()
        predicted = torch.as_tensor(model.predict(xs[test].numpy())) * y_std[j] + y_mean[j]
        values = torch.unique(y[:, j])
        if len(values) == 2:
            midpoint = values.mean()
            errors.append(float(((predicted > midpoint) != (y[test, j] > midpoint)).double().mean()))
        else:
            errors.append(float((((predicted - y[test, j]) / y_std[j]) ** 2).mean()))
    disentanglement, completeness = dci_from_importances(importance)
    return {"disentanglement": disentanglement, "completeness": completeness,
            "informativeness": sum(errors) / len(errors)}


def fit_linear_svms(x: torch.Tensor, labels: torch.Tensor, C: float = 1.0, tolerance: float = 1e-9,
                    max_iter: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """K linear SVMs: weights [D, K] and biases [K] minimising liblinear's primal L2-loss SVM (scikit-learn's
    LinearSVC(dual=False) with its default intercept_scaling 1, i.e. the bias regularised as an extra feature):
    0.5 (|w_k|^2 + b_k^2) + C sum_n max(0, 1 - y_nk (x_n . w_k + b_k))^2 with y in {-1, +1}, in float64, each run to
    convergence (gradient norm <= `tolerance` x its norm at 0) by the finite Newton method of Keerthi & DeCoste (JMLR
    2005): the objective is piecewise quadratic, so a Newton step on the current margin violators followed by an exact
    line search ends in a few steps. The Hessian I + 2C X_A^T X_A starts from X^T X (all points violate at w = 0),
    shared by the K SVMs, and follows the violators by rank updates."""
    x = x.detach().double().cpu()
    y = 2 * labels.detach().double().cpu() - 1
    if x.dim() != 2 or y.dim() != 2 or len(x) != len(y):
        raise ValueError(f"x [N, D] and labels [N, K] of one N, got {tuple(x.shape)} and {tuple(labels.shape)}")
    if not (C > 0 and math.isfinite(C)):
        raise ValueError(f"C={C!r}: must be a finite number > 0")
    augmented = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    gram = augmented.T @ augmented  # X_A^T X_A with every point a violator
    solution = torch.stack([_finite_newton_svm(augmented, y[:, k], gram, C, tolerance, max_iter, k)
                            for k in range(y.shape[1])], 1)
    return solution[:-1], solution[-1]


def _finite_newton_svm(x: torch.Tensor, y: torch.Tensor, gram: torch.Tensor, C: float, tolerance: float,
                       max_iter: int, index: int) -> torch.Tensor:
    """One L2-loss SVM [D] by finite Newton steps; `gram` = X^T X of all rows (the violators at w = 0)."""
    w = torch.zeros(x.shape[1], dtype=torch.float64)
    eye = torch.eye(x.shape[1], dtype=torch.float64)
    active = torch.ones(len(x), dtype=torch.bool)
    gram_active = gram.clone()
    margin = torch.zeros(len(x), dtype=torch.float64)  # y_n x_n . w
    first = None
    for _ in range(max_iter + 1):
        now = margin < 1
        changed = now ^ active
        if 2 * int(changed.sum()) < int(now.sum()):  # follow the violators by a rank update
            sign = torch.where(now[changed], 1.0, -1.0).double()
            gram_active += x[changed].T @ (sign[:, None] * x[changed])
        elif changed.any():
            gram_active = x[now].T @ x[now]
        active = now
        slack = (1 - margin) * active
        gradient = w - 2 * C * x.T @ (y * slack)
        norm = float(gradient.norm())
        first = norm if first is None else first
        if norm <= tolerance * max(first, 1e-300):
            return w
        step = -torch.linalg.solve(eye + 2 * C * gram_active, gradient)
        along = y * (x @ step)  # the margins' change per unit of step
        t = _exact_line_search(float(w @ step), float(step @ step), 1 - margin, along, C)
        w = w + t * step
        margin = margin + t * along
    raise RuntimeError(f"fit_linear_svms: SVM {index} did not converge in {max_iter} Newton steps "
                       f"(gradient norm {norm:.3g}, {norm / first:.3g} of its start)")


def _exact_line_search(w_dot_d: float, d_dot_d: float, slack: torch.Tensor, along: torch.Tensor, C: float) -> float:
    """The minimiser t >= 0 of phi(t) = 0.5 |w + t d|^2 + C sum (slack - t along)_+^2, from its derivative
    phi'(t) = w.d + t d.d - 2C sum along (slack - t along)_+, non-decreasing and piecewise linear: Newton steps on
    phi' inside a bracket that shrinks (bisection when a step leaves it). Exact once t's linear piece is found."""
    def derivative(t: float) -> tuple[float, float]:
        s = slack - t * along
        on = s > 0
        return (w_dot_d + t * d_dot_d - 2 * C * float((along * s)[on].sum()),
                d_dot_d + 2 * C * float(along[on].square().sum()))

    start = abs(derivative(0.0)[0])  # > 0 along a descent direction
    low, high = 0.0, 1.0
    while derivative(high)[0] < 0:
        low, high = high, 2 * high
    t = high if derivative(high)[0] == 0 else low
    for _ in range(200):
        value, slope = derivative(t)
        if abs(value) <= 1e-13 * start or high - low <= 1e-15 * max(1.0, high):
            return t
        low, high = (t, high) if value < 0 else (low, t)
        guess = t - value / slope
        t = guess if low < guess < high else (low + high) / 2
    return t


def linear_separability(codes: torch.Tensor, labels: torch.Tensor, train_share: float = 0.8, C: float = 1.0,
                        seed: int = 0) -> dict[str, list[float]]:
    """Paper 003's Table 1 separation: a fresh linear SVM per binary attribute (`fit_linear_svms`) trained on a seeded
    `train_share` of the codes (standardised with that part's statistics) and scored on the rest.

    Returns per attribute "accuracy", "balanced_accuracy" (mean of the two classes' recalls: an attribute present
    in 3 % of faces has 0.97 accuracy by always answering "absent") and "majority" (that trivial accuracy).
    """
    xs, y, train, test = _seeded_split(codes, labels, train_share, seed)
    weights, bias = fit_linear_svms(xs[train], y[train], C)
    return _classification_scores((xs[test] @ weights + bias > 0).long(), y[test])


def _seeded_split(codes: torch.Tensor, labels: torch.Tensor, train_share: float, seed: int):
    """Codes (float64, standardised with the training part's statistics), 0/1 labels, train and test indices."""
    x, y = codes.detach().double().cpu(), labels.detach().cpu().long()
    if x.dim() != 2 or y.dim() != 2 or len(x) != len(y):
        raise ValueError(f"codes [N, D] and labels [N, K] of one N, got {tuple(x.shape)} and {tuple(y.shape)}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_train = int(round(train_share * len(x)))
    train, test = order[:n_train], order[n_train:]
    if not 2 <= n_train <= len(x) - 1:
        raise ValueError(f"train_share={train_share} of {len(x)} codes leaves no training or no test codes")
    single_class = [k for k in range(y.shape[1]) if len(torch.unique(y[train, k])) < 2]
    if single_class:
        raise ValueError(f"labels[:, {single_class}] have one class in the training part: no classifier can be trained")
    mean, std = x[train].mean(0), x[train].std(0).clamp_min(1e-12)
    return (x - mean) / std, y, train, test


def _classification_scores(predicted: torch.Tensor, truth: torch.Tensor) -> dict[str, list[float]]:
    """Per attribute: accuracy, balanced accuracy (mean of the classes' recalls) and the majority-class accuracy."""
    correct = (predicted == truth).double()
    recalls = [torch.stack([correct[truth[:, k] == c, k].mean() for c in (0, 1) if (truth[:, k] == c).any()]).mean()
               for k in range(truth.shape[1])]
    positive = truth.double().mean(0)
    return {"accuracy": correct.mean(0).tolist(), "balanced_accuracy": [float(r) for r in recalls],
            "majority": torch.maximum(positive, 1 - positive).tolist()}


def nonlinear_separability(codes: torch.Tensor, labels: torch.Tensor, train_share: float = 0.8, hidden: int = 512,
                           steps: int = 2000, batch_size: int = 256, lr: float = 1e-3, seed: int = 0
                           ) -> dict[str, list[float]]:
    """The non-linear counterpart of `linear_separability` on the same seeded split: one MLP (two hidden LeakyReLU
    layers of `hidden`, an output per attribute, binary cross-entropy, Adam with weight decay 1e-4). A bijection T
    cannot give a linear SVM on T(w) much more than what a flexible classifier of w finds: a ceiling for Table 1."""
    xs, y, train, test = _seeded_split(codes, labels, train_share, seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(xs.shape[1], hidden), torch.nn.LeakyReLU(0.2),
                                  torch.nn.Linear(hidden, hidden), torch.nn.LeakyReLU(0.2),
                                  torch.nn.Linear(hidden, y.shape[1]))
    x_train, y_train = xs[train].float(), y[train].float()
    optimiser = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randint(len(x_train), (batch_size,), generator=generator)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x_train[batch]), y_train[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return _classification_scores((net(xs[test].float()) > 0).long(), y[test])
