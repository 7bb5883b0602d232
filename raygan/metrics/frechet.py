"""Frechet distance in the frozen classifier's feature space: the realism metric needing no downloads.

FID (Heusel et al. 2017) compares Gaussians fitted to Inception features; Inception weights
cannot be downloaded here, and the classifier being explained is the observer that matters,
so we fit the Gaussians to its penultimate features (`FrozenClassifier.features`):
d^2 = |mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2)).
tr((S_r S_g)^(1/2)) = tr((A S_g A)^(1/2)) with A = S_r^(1/2): both square roots are of
symmetric PSD matrices, taken by eigen-decomposition in float64 (torch.linalg, no scipy).
Values depend on the classifier and on the sample sizes (the estimate is biased upwards for
small samples), so compare them only at equal sizes with the same classifier.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FrechetDistance:
    """Frechet distance between two feature sets."""

    value: float  # squared Frechet distance d^2 between the fitted Gaussians (0 = same mean and covariance)
    n_real: int  # feature vectors in the first (real) set
    n_generated: int  # feature vectors in the second (generated) set
    dim: int  # feature dimension


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues -> 0)."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def _stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [F] and unbiased covariance [F, F] of `features` [N, F] (zero covariance for one sample)."""
    mean = features.mean(0)
    if features.shape[0] < 2:
        return mean, torch.zeros(features.shape[1], features.shape[1], dtype=features.dtype, device=features.device)
    return mean, torch.atleast_2d(torch.cov(features.T))


def frechet_distance(real: torch.Tensor, generated: torch.Tensor) -> FrechetDistance:
    """Squared Frechet distance between Gaussians fitted to `real` [N, F] and `generated` [M, F] features."""
    assert real.ndim == 2 and generated.ndim == 2 and real.shape[1] == generated.shape[1], (
        real.shape, generated.shape)  # [N, F], [M, F]
    n, m, dim = real.shape[0], generated.shape[0], real.shape[1]
    if n == 0 or m == 0:
        return FrechetDistance(value=math.nan, n_real=n, n_generated=m, dim=dim)
    mu_r, cov_r = _stats(real.detach().to(torch.float64))
    mu_g, cov_g = _stats(generated.detach().to(torch.float64))
    root_r = _sqrt_psd(cov_r)
    middle = root_r @ cov_g @ root_r
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu_r - mu_g).square().sum() + cov_r.trace() + cov_g.trace() - 2 * cross
    return FrechetDistance(value=max(float(value), 0.0), n_real=n, n_generated=m, dim=dim)


@torch.no_grad()
def batched_features(
    features: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, *, batch_size: int = 256
) -> torch.Tensor:
    """`features(images)` [N, F] computed `batch_size` images at a time (e.g. FrozenClassifier.features)."""
    assert images.ndim == 4, images.shape  # [N, C, H, W]
    chunks = [features(images[i : i + batch_size]).float().cpu() for i in range(0, images.shape[0], batch_size)]
    return torch.cat(chunks) if chunks else torch.zeros(0, 0)


def classifier_frechet(
    features: Callable[[torch.Tensor], torch.Tensor],
    real_images: torch.Tensor,
    generated_images: torch.Tensor,
    *,
    batch_size: int = 256,
) -> FrechetDistance:
    """Frechet distance between real and generated images [N, C, H, W] in the space of `features`."""
    real = batched_features(features, real_images, batch_size=batch_size)
    generated = batched_features(features, generated_images, batch_size=batch_size)
    if real.shape[0] == 0 or generated.shape[0] == 0:
        dim = max(real.shape[1] if real.ndim == 2 else 0, generated.shape[1] if generated.ndim == 2 else 0)
        return FrechetDistance(value=math.nan, n_real=real.shape[0], n_generated=generated.shape[0], dim=dim)
    return frechet_distance(real, generated)


__all__ = ["FrechetDistance", "batched_features", "classifier_frechet", "frechet_distance"]
