"""Directions in a GAN's W space: regressed from measured semantics (paper 004, Sec. 3.3-3.5), label-free baselines
(SeFa, GANSpace), localised components (Eq. 5) and their Ward clustering (Fig. 6).

- `regress_direction` is Eq. 2-3: the least-squares v with dY ~ dW v over N > d pairs of latent differences, solved by
  `torch.linalg.lstsq` (an orthogonal factorisation), never by forming (dW^T dW)^-1. Many semantics (or every pixel of
  a canonical map: the Jacobian of Sec. 3.5) are solved at once as the columns of dY; `projected_standard_error`
  is the noise level of its solution.
- `extrapolate` is Eq. 4: w' = w - (w^T v) v + s sigma_w v.
- `sefa_directions` (Shen & Zhou, CVPR 2021) and `ganspace_directions` (Harkonen et al., NeurIPS 2020) need no labels:
  the right singular vectors of the style affines' stacked weights, and the principal axes of sampled w.
- `sparse_directions` is Eq. 5: J ~ U V^T with sparse pixel components U (S x P), unit latent directions V (d x P) and
  a penalty on their pairwise cosines; the paper's Adam and an inertial alternating proximal solver.
- `ward_clusters` groups directions by Ward's linkage on the absolute cosine distance (v and -v are one direction);
  `region_shares` and `cluster_purity` measure components and clusters against a map of face regions.
- `interfacegan_boundary` is InterFaceGAN's editing direction (Shen et al., used by paper 003): the unit normal of a
  linear SVM separating the codes an attribute predictor scores highest from those it scores lowest (InterFaceGAN's
  `train_boundary`); `conditional_boundary` removes other attributes' normals from it (InterFaceGAN's conditional
  editing).
"""
from __future__ import annotations

import time
from typing import Iterable

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from torch import Tensor, nn

SPARSE_SOLVERS = ("adam", "proximal")


# ----------------------------------------------------------------------------------------------------------------
# Regressed directions (Eq. 2-4)


def regress_direction(dW: Tensor, dY: Tensor) -> Tensor:
    """Eq. 2-3: v = argmin_v ||dY - dW v||^2 for dW [N, d] and dY [N] or [N, K] (N > d) -> v [d] or [d, K].

    Solved in float64 by `torch.linalg.lstsq` (QR / SVD), the same minimiser as Eq. 3's closed form without its
    explicit inverse. Returned in dW's dtype, not normalised (its length is the semantic's change per unit of w).
    """
    if dW.dim() != 2:
        raise ValueError(f"dW must be [N, d] latent differences, got shape {tuple(dW.shape)}")
    n, d = dW.shape
    if dY.shape[0] != n or dY.dim() not in (1, 2):
        raise ValueError(f"dY must be [N={n}] or [N={n}, K] semantic differences, got shape {tuple(dY.shape)}")
    if n <= d:
        raise ValueError(f"Eq. 3 needs more pairs than latent dimensions: N={n} pairs for d={d}")
    rhs = dY.double()[:, None] if dY.dim() == 1 else dY.double()
    solution = torch.linalg.lstsq(dW.double(), rhs, driver="gelsd" if dW.device.type == "cpu" else None).solution
    v = solution[:, 0] if dY.dim() == 1 else solution
    return v.to(dW.dtype)


def projected_standard_error(dW: Tensor, dY: Tensor) -> Tensor:
    """Standard error of Eq. 3's v^T u for a random unit u, per column of dY [N] or [N, K] -> [] or [K].

    With residual variance s^2 = ||dY - dW v||^2 / (N - d), Cov(v) = s^2 (dW^T dW)^-1, and a random unit u sees on
    average s^2 tr((dW^T dW)^-1) / d: the noise level of one pixel of a regressed Jacobian along a unit direction.
    """
    n, d = dW.shape
    v = regress_direction(dW, dY)
    residual = dY.double() - dW.double() @ v.double()
    variance = residual.pow(2).sum(0) / (n - d)
    trace = torch.linalg.inv(dW.double().t() @ dW.double()).diagonal().sum()
    return (variance * trace / d).sqrt().to(dW.dtype)


def pair_differences(w: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The paper's N pairs (w1, w0) from 2N samples: (w[1::2] - w[0::2], y[1::2] - y[0::2])."""
    if w.shape[0] != y.shape[0] or w.shape[0] < 2:
        raise ValueError(f"w [{w.shape[0]}, d] and y [{y.shape[0]}, ...] must hold the same >= 2 samples")
    n = w.shape[0] // 2 * 2
    return w[1:n:2] - w[0:n:2], y[1:n:2] - y[0:n:2]


def unit(v: Tensor, dim: int = 0) -> Tensor:
    """v / ||v|| along `dim`."""
    return v / v.norm(dim=dim, keepdim=True).clamp_min(1e-12)


def projection_correlations(w: Tensor, V: Tensor, y: Tensor) -> Tensor:
    """Table 2: corr(w·v_i / ||v_i||, y_j) over the samples of w [n, d] and y [n, M], for the columns v_i of V [d, K]
    -> [K, M]; 0 for a zero direction or a constant semantic."""
    if w.dim() != 2 or V.dim() != 2 or y.dim() != 2 or w.shape[0] != y.shape[0] or w.shape[1] != V.shape[0]:
        raise ValueError(f"need w [n, d], V [d, K] and y [n, M]; got {tuple(w.shape)}, {tuple(V.shape)}, "
                         f"{tuple(y.shape)}")
    if w.shape[0] < 2:
        raise ValueError(f"a correlation needs at least 2 samples, got {w.shape[0]}")
    projection, y = (w.double() @ unit(V.double())), y.double()
    centred = [t - t.mean(0) for t in (projection, y)]
    norms = [c.norm(dim=0) for c in centred]
    corr = (centred[0].T @ centred[1]) / (norms[0][:, None] * norms[1][None, :]).clamp_min(1e-300)
    corr[V.norm(dim=0) == 0] = 0
    corr[:, y.std(0) <= 1e-6] = 0
    return corr.to(w.dtype)


def extrapolate(w: Tensor, v: Tensor, s: Tensor | float, sigma: float, mean: float = 0.0) -> Tensor:
    """Eq. 4: w' = w - (w^T v) v + (mean + s sigma) v for unit v: the projection on v set to `mean` + s sigma.

    w [B, d], v [d] (normalised here), s a number or [B]; sigma = std of w^T v (`projection_std`). The paper's form
    is mean = 0; `mean` = the average projection makes s = 0 the typical face when W is not centred at the origin.
    """
    v = unit(v)
    s = torch.as_tensor(s, dtype=w.dtype, device=w.device)
    target = mean + s * sigma
    return w - (w @ v)[:, None] * v + (target[:, None] if target.dim() else target) * v


def projection_std(w: Tensor, v: Tensor) -> float:
    """sigma_w of Eq. 4: the standard deviation of w^T v over samples w [N, d] (v normalised)."""
    return float((w @ unit(v)).std())


def moving_direction(previous: Tensor | None, estimate: Tensor, momentum: float) -> Tensor:
    """Sec. 3.4's historical moving average of a direction: unit(momentum * previous + (1 - momentum) * estimate)."""
    estimate = unit(estimate)
    if previous is None:
        return estimate
    if float(previous @ estimate) < 0:  # a regression's sign is the semantic's; keep the average on one side
        estimate = -estimate
    return unit(momentum * previous + (1 - momentum) * estimate)


# ----------------------------------------------------------------------------------------------------------------
# Label-free baselines


def style_affine_weights(synthesis: nn.Module, exclude: Iterable[nn.Module] = ()) -> list[Tensor]:
    """The weight [channels, w_dim] of every style affine (`.affine` of each modulated conv) under `synthesis`, on
    the CPU, except those inside the modules `exclude` (SeFa leaves out the to-RGB layers)."""
    skipped = {id(m) for owner in exclude for m in owner.modules()}
    weights = []
    for module in synthesis.modules():
        affine = getattr(module, "affine", None)
        if affine is not None and id(module) not in skipped:
            weights.append((affine.weight * affine.scale).detach().float().cpu())
    if not weights:
        raise ValueError("no style affines found: expected modules with an `.affine` linear layer")
    return weights


def sefa_directions(weights: list[Tensor], k: int | None = None) -> tuple[Tensor, Tensor]:
    """SeFa: the top-k eigenvectors of A^T A, A the stacked affine weights with each output channel's row normalised
    (as genforce/sefa) -> (directions [k, w_dim] unit rows, singular values [k])."""
    a = torch.cat([w / w.norm(dim=1, keepdim=True).clamp_min(1e-12) for w in weights], 0).double()
    _, s, vh = torch.linalg.svd(a, full_matrices=False)
    k = vh.shape[0] if k is None else int(k)
    return vh[:k].float(), s[:k].float()


def ganspace_directions(w: Tensor, k: int | None = None) -> tuple[Tensor, Tensor]:
    """GANSpace: the principal axes of sampled w [N, d] -> (directions [k, d] unit rows, standard deviations [k])."""
    if w.dim() != 2 or w.shape[0] < 2:
        raise ValueError(f"w must be [N >= 2, d] samples, got shape {tuple(w.shape)}")
    centred = (w - w.mean(0)).double()
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    k = vh.shape[0] if k is None else int(k)
    return vh[:k].float(), (s[:k] / (w.shape[0] - 1) ** 0.5).float()


# ----------------------------------------------------------------------------------------------------------------
# Localised representation learning (Eq. 5)


def sparse_objective(J: Tensor, U: Tensor, V: Tensor, alpha: float, beta: float) -> Tensor:
    """Eq. 5: ||J - U V^T||_F^2 + alpha ||U||_1 + beta sum_{i != j} (v_i^T v_j)^2 for J [S, d], U [S, P], V [d, P]."""
    gram = V.t() @ V
    off = gram - torch.diag(torch.diagonal(gram))
    return (J - U @ V.t()).pow(2).sum() + alpha * U.abs().sum() + beta * off.pow(2).sum()


def _soft_threshold(x: Tensor, t: float) -> Tensor:
    return torch.sign(x) * (x.abs() - t).clamp_min(0)


def _initial_factors(J: Tensor, n_components: int, seed: int) -> tuple[Tensor, Tensor]:
    """Both solvers' start: random unit V (seeded) and U = J V."""
    g = torch.Generator().manual_seed(seed)
    V = unit(torch.randn(J.shape[1], n_components, generator=g, dtype=J.dtype).to(J.device))
    return J @ V, V


def _adam(J: Tensor, U: Tensor, V: Tensor, alpha: float, beta: float, steps: int, lr: float, record,
          record_every: int) -> tuple[Tensor, Tensor]:
    """The paper's solver: Adam on U and on V's unnormalised form (V = columns normalised), (sub)gradients of Eq. 5."""
    u, v_raw = U.clone().requires_grad_(), V.clone().requires_grad_()
    optimizer = torch.optim.Adam([u, v_raw], lr=lr)
    for step in range(steps):
        loss = sparse_objective(J, u, unit(v_raw), alpha, beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % record_every == 0 or step + 1 == steps:
            with torch.no_grad():
                record(u, unit(v_raw))
    return u.detach(), unit(v_raw.detach())


def _proximal(J: Tensor, U: Tensor, V: Tensor, alpha: float, beta: float, steps: int, record,
              record_every: int, restart_every: int = 10) -> tuple[Tensor, Tensor]:
    """Inertial alternating proximal gradient (iPALM, Pock & Sabach 2016): from extrapolated points
    x + k / (k + 3) (x - x_prev), a proximal-gradient step on U with step 1 / L_U, L_U = 2 ||V^T V||_2 (the soft
    threshold is the exact prox of alpha ||U||_1), then a gradient step on V with step 1 / L_V,
    L_V = 2 ||U^T U||_2 + 16 beta ||V^T V||_2 (a local bound of the cosine penalty's curvature), the columns
    renormalised (projection onto the constraint of Eq. 5). The inertia restarts (k = 0) whenever the objective,
    checked every `restart_every` steps, went up."""
    U_prev, V_prev, k, last = U, V, 0, float("inf")
    for step in range(steps):
        inertia = k / (k + 3)
        U_y, V_y = U + inertia * (U - U_prev), V + inertia * (V - V_prev)
        gram = V.t() @ V
        lip_u = 2 * torch.linalg.matrix_norm(gram, ord=2).item()
        U_next = _soft_threshold(U_y - (2 / lip_u) * (U_y @ gram - J @ V), alpha / lip_u)
        utu = U_next.t() @ U_next
        gram = V_y.t() @ V_y
        off = gram - torch.diag(torch.diagonal(gram))
        grad_v = 2 * (V_y @ utu - J.t() @ U_next) + 4 * beta * V_y @ off
        lip_v = (2 * torch.linalg.matrix_norm(utu, ord=2).item()
                 + 16 * beta * torch.linalg.matrix_norm(gram, ord=2).item())
        U_prev, V_prev, U, V = U, V, U_next, unit(V_y - grad_v / lip_v)
        k += 1
        if (step + 1) % restart_every == 0:
            value = float(sparse_objective(J, U, V, alpha, beta))
            if value > last:
                U_prev, V_prev, k = U, V, 0
            last = value
        if (step + 1) % record_every == 0 or step + 1 == steps:
            record(U, V)
    return U, V


def sparse_directions(J: Tensor, n_components: int, alpha: float, beta: float, solver: str = "proximal",
                      steps: int = 500, lr: float = 1e-4, seed: int = 0, trace: list | None = None,
                      record_every: int = 10) -> tuple[Tensor, Tensor]:
    """Eq. 5 for a Jacobian J [S, d] -> (U [S, P] pixel components, V [d, P] unit latent directions).

    solver "adam" is the paper's (Adam, lr 1e-4); "proximal" alternates an exact soft-threshold step on U with a
    projected gradient step on V, both from inertial (extrapolated) points. Both start from the same seeded point. `trace`, if given, receives
    (seconds, objective) every `record_every` steps (the objective's time is not counted).
    """
    if solver not in SPARSE_SOLVERS:
        raise ValueError(f"solver={solver!r}: allowed values are {', '.join(map(repr, SPARSE_SOLVERS))}")
    if J.dim() != 2 or n_components < 1 or steps < 1:
        raise ValueError(f"need J [S, d], n_components >= 1 and steps >= 1; got J {tuple(J.shape)}, "
                         f"n_components={n_components}, steps={steps}")
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha={alpha}, beta={beta}: must be >= 0")
    U, V = _initial_factors(J, n_components, seed)
    paused = 0.0
    start = time.perf_counter()

    def record(u: Tensor, v: Tensor) -> None:
        nonlocal paused
        if trace is not None:
            t0 = time.perf_counter()
            value = float(sparse_objective(J, u, v, alpha, beta))
            trace.append((t0 - start - paused, value))
            paused += time.perf_counter() - t0

    if trace is not None:
        trace.append((0.0, float(sparse_objective(J, U, V, alpha, beta))))
        start = time.perf_counter()
    if solver == "adam":
        return _adam(J, U, V, alpha, beta, steps, lr, record, record_every)
    return _proximal(J, U, V, alpha, beta, steps, record, record_every)


def kept_components(U: Tensor, threshold: float) -> Tensor:
    """The paper's discard rule: indices p with ||u_p|| >= threshold (0.01 in paper 004, at its scale)."""
    return torch.nonzero(U.norm(dim=0) >= threshold).flatten()


# ----------------------------------------------------------------------------------------------------------------
# Ward clustering (Fig. 6)


def abs_cosine_distance(V: Tensor) -> np.ndarray:
    """Condensed distances 1 - |cos(v_i, v_j)| between the columns of V [d, P] (v and -v coincide)."""
    v = unit(V.double(), dim=0)
    distance = (1 - (v.t() @ v).abs()).clamp_min(0).numpy()
    index = np.triu_indices(distance.shape[0], k=1)
    return distance[index]


def ward_linkage(V: Tensor) -> np.ndarray:
    """scipy's Ward linkage matrix of the columns of V [d, P] on the absolute cosine distance (for a dendrogram)."""
    if V.dim() != 2 or V.shape[1] < 2:
        raise ValueError(f"V must be [d, P >= 2] directions as columns, got shape {tuple(V.shape)}")
    return linkage(abs_cosine_distance(V), method="ward")


def ward_clusters(V: Tensor, n_clusters: int) -> np.ndarray:
    """Fig. 6: Ward clusters of the columns of V [d, P] on the absolute cosine distance -> labels [P] in 0..n-1."""
    if not 1 <= n_clusters <= V.shape[1]:
        raise ValueError(f"n_clusters={n_clusters}: must be in 1..{V.shape[1]} (the number of directions)")
    return fcluster(ward_linkage(V), t=n_clusters, criterion="maxclust") - 1


def region_shares(U: Tensor, region: Tensor, n_regions: int) -> Tensor:
    """Each component's share of |u_p| in each region: U [C*R*R, K] (C channel maps per component, pixel-major within
    a channel), region [R, R] labels in 0..n_regions-1 -> [K, n_regions], rows summing to 1 (0 for a zero component)."""
    if region.dim() != 2 or U.dim() != 2 or U.shape[0] % region.numel():
        raise ValueError(f"need U [C * R * R, K] and region [R, R]; got U {tuple(U.shape)}, region "
                         f"{tuple(region.shape)}")
    if region.numel() and not 0 <= int(region.min()) <= int(region.max()) < n_regions:
        raise ValueError(f"region labels must lie in 0..{n_regions - 1}, got {int(region.min())}..{int(region.max())}")
    mass = U.abs().reshape(-1, region.numel(), U.shape[1]).sum(0)  # [R*R, K]: |u_p| summed over channels
    per_region = torch.zeros(n_regions, U.shape[1], dtype=mass.dtype).index_add_(0, region.flatten().long(), mass)
    return (per_region / per_region.sum(0, keepdim=True).clamp_min(1e-12)).T


def local_fraction(shares: Tensor, at_least: float = 0.6) -> float:
    """The fraction of components (rows of `region_shares`) with at least `at_least` of their mass in one region; 0
    without components."""
    return (shares.max(1).values >= at_least).float().mean().item() if len(shares) else 0.0


def cluster_purity(clusters: np.ndarray, labels: Tensor, n_labels: int) -> tuple[list[int], list[float]]:
    """Per cluster (0..max): its majority label and purity (the majority's share of its members)."""
    majority, purity = [], []
    for c in range(int(clusters.max()) + 1):
        counts = torch.bincount(labels[torch.as_tensor(clusters == c)].long(), minlength=n_labels)
        majority.append(int(counts.argmax()))
        purity.append((counts.max() / counts.sum().clamp_min(1)).item())
    return majority, purity


# ----------------------------------------------------------------------------------------------------------------
# InterFaceGAN (paper 003's editing)


def interfacegan_boundary(codes: Tensor, scores: Tensor, chosen_ratio: float = 0.02, C: float = 1.0) -> Tensor:
    """InterFaceGAN's direction (its `train_boundary`): rank codes [N, D] (W+ codes flattened) by an attribute
    predictor's real-valued scores [N], label the top `chosen_ratio` of them 1 and the bottom `chosen_ratio` 0, and
    return the unit normal n [D] of a linear SVM between the two (`helpers.metrics.fit_linear_svms`, liblinear's
    L2-loss SVM), pointing towards high scores. As InterFaceGAN: 2 % at each end, no standardisation, the intercept
    dropped (an edit is w + s n). InterFaceGAN holds 30 % of the chosen codes out to report the SVM's accuracy; here
    all of them fit it. The extremes matter: an SVM on all codes, whose classes overlap, leans on the directions in
    which the codes vary least, nearly orthogonal to the difference of the class means."""
    from .metrics import fit_linear_svms

    x = codes.detach().reshape(len(codes), -1)
    if scores.dim() != 1 or len(scores) != len(x):
        raise ValueError(f"scores must be [N] for codes [N, ...], got {tuple(scores.shape)} and {tuple(codes.shape)}")
    if not scores.is_floating_point():
        raise ValueError(f"scores must be real-valued predictor scores (InterFaceGAN ranks codes by them), got "
                         f"{scores.dtype}: 0/1 labels cannot be ranked")
    chosen = int(len(x) * chosen_ratio)
    if not 0 < chosen_ratio <= 0.5 or chosen < 1:
        raise ValueError(f"chosen_ratio={chosen_ratio}: must be in (0, 0.5] and keep at least one code of the "
                         f"{len(x)} at each end")
    order = torch.argsort(scores.detach().cpu(), descending=True, stable=True)
    picked = torch.cat([order[:chosen], order[-chosen:]])
    labels = torch.cat([torch.ones(chosen), torch.zeros(chosen)])
    weights, _ = fit_linear_svms(x[picked], labels[:, None], C)
    return unit(weights[:, 0]).float()


def conditional_boundary(primal: Tensor, *conditions: Tensor) -> Tensor:
    """InterFaceGAN's conditional editing: the unit part of `primal` [D] orthogonal to every condition normal [D]
    (n - C^T (C C^T)^-1 C n, solved by least squares), so an edit along it leaves those attributes' scores alone."""
    if not conditions:
        return unit(primal)
    C = torch.stack([c.double() for c in conditions])
    coefficients = torch.linalg.lstsq(C.T, primal.double()[:, None]).solution
    residual = primal.double() - (C.T @ coefficients)[:, 0]
    if residual.norm() < 1e-8 * primal.double().norm():
        raise ValueError("the primal direction lies in the span of the conditions: nothing is left to edit along")
    return unit(residual).to(primal.dtype)


__all__ = [
    "SPARSE_SOLVERS", "interfacegan_boundary", "conditional_boundary", "regress_direction", "pair_differences", "unit", "extrapolate", "projection_std",
    "moving_direction", "style_affine_weights", "sefa_directions", "ganspace_directions", "sparse_objective",
    "sparse_directions", "kept_components", "abs_cosine_distance", "ward_linkage", "ward_clusters",
]
