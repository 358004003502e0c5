"""Metrics of the book, each with its paper's equation number where it has one."""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import torch


def class_pixel_counts(label_batches: Iterable[torch.Tensor], num_classes: int) -> torch.Tensor:
    """Pixels of each class over all label maps ([N, H, W] batches of ids), as int64 [num_classes]."""
    counts = torch.zeros(num_classes, dtype=torch.long)
    for labels in label_batches:
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"label ids must lie in 0..{num_classes - 1}; got {labels.min()}..{labels.max()}")
        counts += torch.bincount(labels.reshape(-1).long().cpu(), minlength=num_classes)
    return counts


def class_frequencies(counts: torch.Tensor) -> torch.Tensor:
    """Mean area of each class: its share of all pixels, (1 / NHW) sum over images and pixels of the class mask."""
    return counts.double() / counts.sum().clamp(min=1)


def confusion_matrix(predicted: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts [target class, predicted class] over all pixels of label maps of the same shape (int64)."""
    if predicted.shape != target.shape:
        raise ValueError(f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} differ in shape")
    index = target.reshape(-1).long().cpu() * num_classes + predicted.reshape(-1).long().cpu()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """IoU = TP / (TP + FP + FN) of each class from one dataset-level confusion matrix (NaN for absent classes)."""
    tp = confusion.diag().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def f1_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """F1 = 2TP / (2TP + FP + FN) of each class (NaN for absent classes)."""
    tp = confusion.diag().double()
    denominator = confusion.sum(0).double() + confusion.sum(1).double()
    return torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.full_like(tp, float("nan")))


def pixel_accuracy(confusion: torch.Tensor) -> float:
    """Share of pixels whose predicted class is right: trace / sum."""
    return float(confusion.diag().sum() / confusion.sum().clamp(min=1))


def class_support(label_batches: Iterable[torch.Tensor], num_classes: int) -> torch.Tensor:
    """Where each class ever appears in a set of label maps: bool [num_classes, H, W]."""
    support = None
    for labels in label_batches:
        present = torch.nn.functional.one_hot(labels.long(), num_classes).amax(0).permute(2, 0, 1).bool()
        support = present if support is None else support | present
    if support is None:
        raise ValueError("class_support needs at least one batch of label maps")
    return support


def activeness_map(decode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], structure: torch.Tensor,
                   texture: torch.Tensor, slices: Sequence[Sequence[int]], regions: torch.Tensor,
                   noise_std: float = 0.01, n_noise: int = 8, generator: torch.Generator | None = None,
                   max_batch: int | None = None) -> torch.Tensor:
    """Average activeness map of paper 000, Eq. 3: Map_ij = E_x A_ij, as float64 [n_slices, n_regions].

    A_ij (one image x) is the per-pixel variance of decode(S_s masked to slice i + n, S_t) over `n_noise` draws of
    n = noise_std * N(0, 1) added to the channels of slice i only (other channels zero), averaged over RGB and over
    the pixels of region j (`regions` bool [B, n_regions, H, W]); Map_ij averages A_ij over the images where region j
    is present (NaN if it is present in none). `structure` [B, C, ...] and `texture` [B, ...] are the codes of the
    batch; `slices` lists the channel indices of each slice along dim 1 of `structure`. All slices and noise draws go
    through `decode` as one batch of n_slices * n_noise * B items, or in chunks of at most `max_batch` items.
    """
    if n_noise < 2:
        raise ValueError(f"n_noise={n_noise}: a variance needs at least 2 noise draws")
    if regions.dim() != 4 or regions.shape[0] != structure.shape[0]:
        raise ValueError(f"regions must be bool [batch={structure.shape[0]}, n_regions, H, W], got "
                         f"{tuple(regions.shape)}")
    b, c = structure.shape[:2]
    k = len(slices)
    masks = torch.zeros(k, c, dtype=structure.dtype, device=structure.device)
    for i, channels in enumerate(slices):
        masks[i, list(channels)] = 1.0
    view = (k, 1, 1, c) + (1,) * (structure.dim() - 2)
    device = generator.device if generator is not None else structure.device
    noise = torch.randn((k, n_noise, b, *structure.shape[1:]), generator=generator, device=device)
    noise = noise.to(structure.device, structure.dtype) * noise_std
    codes = (masks.view(view) * (structure[None, None] + noise)).flatten(0, 2)  # [k * n_noise * B, C, ...]
    textures = texture.repeat(k * n_noise, *([1] * (texture.dim() - 1)))
    step = max_batch or codes.shape[0]
    images = torch.cat([decode(codes[s:s + step], textures[s:s + step]).float()
                        for s in range(0, codes.shape[0], step)])
    images = images.view(k, n_noise, b, *images.shape[1:])
    variance = images.var(dim=1).mean(dim=2)  # per pixel over the noise draws, mean over RGB: [k, B, H, W]
    weights = regions.to(variance.device, torch.float64)  # [B, n_regions, H, W]
    area = weights.sum(dim=(2, 3))  # [B, n_regions]
    per_image = torch.einsum("kbhw,brhw->kbr", variance.double(), weights) / area.clamp(min=1)  # A_ij per image
    present = (area > 0).double()
    count = present.sum(0)
    return torch.where(count > 0, (per_image * present).sum(1) / count.clamp(min=1), float("nan"))


def activeness_compaction_score(activeness: torch.Tensor) -> float:
    """ACS of paper 000: trace(Map) / sum(Map) of a square activeness map (NaN when the map sums to 0)."""
    if activeness.dim() != 2 or activeness.shape[0] != activeness.shape[1]:
        raise ValueError(f"the ACS needs a square activeness map [n, n] (as many slices as regions), got "
                         f"{tuple(activeness.shape)}")
    total = activeness.double().sum()
    return float(activeness.double().trace() / total) if total != 0 else float("nan")


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [D] and unbiased covariance [D, D] (float64) of features [N, D]: the Gaussian of a Fréchet distance."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be [N >= 2, D], got {tuple(features.shape)}")
    x = features.detach().double().cpu()
    return x.mean(0), torch.cov(x.t(), correction=1).reshape(x.shape[1], x.shape[1])


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor,
                     eps: float = 1e-6) -> float:
    """Fréchet distance of two Gaussians: ||mu1 - mu2||^2 + tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)) (Heusel et al. 2017).

    The matrix square root is scipy.linalg.sqrtm in float64. When it is not finite or has an imaginary part above 1e-3
    (near-singular covariances, e.g. fewer samples than dimensions), it is recomputed with eps * I added to both
    covariances; the remaining tiny imaginary parts (rounding) are dropped by taking the real part.
    """
    import numpy as np  # imported here: scipy is slow to import and only this metric needs it
    from scipy import linalg

    m1, m2 = (m.detach().double().cpu().numpy() for m in (mu1, mu2))
    c1, c2 = (c.detach().double().cpu().numpy() for c in (cov1, cov2))
    if m1.shape != m2.shape or c1.shape != c2.shape or c1.shape != (m1.shape[0], m1.shape[0]):
        raise ValueError(f"need means [D] and covariances [D, D] of one D; got {m1.shape}, {c1.shape}, "
                         f"{m2.shape}, {c2.shape}")
    root = linalg.sqrtm(c1 @ c2)
    if not np.isfinite(root).all() or np.abs(np.imag(root)).max() > 1e-3:
        offset = eps * np.eye(c1.shape[0])
        root = linalg.sqrtm((c1 + offset) @ (c2 + offset))
    diff = m1 - m2
    return float(diff @ diff + np.trace(c1) + np.trace(c2) - 2 * np.trace(np.real(root)))


def feature_frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, D] (FID's formula; the features are the
    caller's, so name the result after its feature space, e.g. "Fréchet distance in the book's attribute features")."""
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


@torch.no_grad()
def path_length_w_end(mapping: Callable[[torch.Tensor], torch.Tensor],
                      synthesize: Callable[[torch.Tensor], torch.Tensor],
                      features: Callable[[torch.Tensor], torch.Tensor], z_dim: int, n: int, eps: float = 1e-4,
                      batch: int = 64, generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu") -> float:
    """Perceptual path length as StyleGAN2 defines it (ppl2_wend of stylegan2-ada's metrics: W space, path endpoints,
    no crop): E ||f(G(w0)) - f(G(lerp(w0, w1, eps)))||^2 / eps^2 over n pairs of w = mapping(z), the values outside the
    1st-99th percentiles dropped. StyleGAN2's f is VGG16-LPIPS; here it is the caller's `features` (name the result
    after that space). `synthesize(w [B, w_dim])` must be deterministic (the pair shares its noise: const noise)."""
    if n < 2 or eps <= 0:
        raise ValueError(f"n={n}, eps={eps}: need n >= 2 and eps > 0")
    distances = []
    for start in range(0, n, batch):
        b = min(batch, n - start)
        z = torch.randn(2 * b, z_dim, generator=generator, device="cpu" if generator is None else generator.device)
        w0, w1 = mapping(z.to(device).float()).chunk(2)
        w_eps = torch.lerp(w0, w1, eps)
        f = features(synthesize(torch.cat([w0, w_eps])).float()).double()
        f0, f1 = f.chunk(2)
        distances.append((f0 - f1).square().sum(1).cpu() / eps ** 2)
    d = torch.cat(distances)
    low, high = torch.quantile(d, 0.01), torch.quantile(d, 0.99)
    return float(d[(d >= low) & (d <= high)].mean())


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


def fit_linear_svms(x: torch.Tensor, labels: torch.Tensor, C: float = 1.0, max_iter: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """K linear SVMs at once: weights [D, K] and biases [K] minimising liblinear's primal L2-loss SVM (scikit-learn's
    LinearSVC(dual=False) with its default intercept_scaling 1, i.e. the bias regularised as an extra feature):
    0.5 (|w_k|^2 + b_k^2) + C sum_n max(0, 1 - y_nk (x_n . w_k + b_k))^2 with y in {-1, +1}, by full-batch L-BFGS in
    float64 (one matrix product per evaluation for all K attributes: 29 SVMs on 12,000 codes in seconds on 2 cores)."""
    x = x.detach().double().cpu()
    y = 2 * labels.detach().double().cpu() - 1
    if x.dim() != 2 or y.dim() != 2 or len(x) != len(y):
        raise ValueError(f"x [N, D] and labels [N, K] of one N, got {tuple(x.shape)} and {tuple(labels.shape)}")
    augmented = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    params = torch.zeros(augmented.shape[1], y.shape[1], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([params], lr=1, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")

    def objective():
        optimiser.zero_grad()
        slack = torch.relu(1 - y * (augmented @ params))
        value = 0.5 * params.square().sum() + C * slack.square().sum()
        value.backward()
        return value

    optimiser.step(objective)
    solution = params.detach()
    return solution[:-1], solution[-1]


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
