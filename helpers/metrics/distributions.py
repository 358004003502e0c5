"""Distances between distributions of generated and real faces: Fréchet distance and perceptual path length,
in whatever feature space the caller passes (name results after that space)."""
from __future__ import annotations

from typing import Callable

import torch


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
