"""Metrics of the book, each with its paper's equation number where it has one."""
from __future__ import annotations

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
