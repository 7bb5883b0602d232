"""Reconstruction quality of the inversion, and proximity of the counterfactual.

Inversion (Eq. 2) should find z* with G(z*) close to x both in pixels (MSE, SSIM on the [-1, 1]
scale) and in the classifier's eyes (|p_C(G(z*)) - p_C(x)|). Proximity (DESIGN.md) is the mean
|G(z1, 0) - G(z1, z2)|: how much the counterfactual repaints the reconstruction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

DATA_RANGE = 1.0  # SSIM runs on images mapped from [-1, 1] to [0, 1] (see per_image_ssim)
MAX_WIN = 11  # pytorch_msssim's default Gaussian window


@dataclass(frozen=True)
class Reconstruction:
    """How well G(z*) reproduces the input images."""

    mse: float  # mean over images of the per-image MSE, [-1, 1] scale (nan when there are no images)
    ssim: float  # mean over images of the per-image SSIM (on [0, 1], Gaussian window <= 11 px)
    p_gap: float  # mean |p_C(G(z*)) - p_C(x)|: does the classifier see the reconstruction as it sees x
    count: int  # images averaged


@dataclass(frozen=True)
class Proximity:
    """How much the counterfactual changes the reconstruction."""

    value: float  # mean over images and pixels of |G(z1, 0) - G(z1, z2)|, [-1, 1] scale
    count: int  # images averaged


def ssim_window(height: int, width: int) -> int:
    """The largest odd Gaussian window <= 11 that fits the image (so small images never skip smoothing)."""
    side = min(MAX_WIN, height, width)
    return side if side % 2 == 1 else side - 1


def per_image_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM of each pair of [-1, 1] images x, y [N, C, H, W]: [N] float32.

    The images are mapped to [0, 1] first: SSIM's luminance term assumes non-negative
    intensities (on signed data x vs -x scores near 1, a negative luminance times a negative
    structure term). With data_range 1 on [0, 1] the stabilising constants are the same as with
    data_range 2 on [-1, 1], so only the luminance term changes, and to the standard definition.
    """
    from pytorch_msssim import ssim

    assert x.ndim == 4 and x.shape == y.shape, (x.shape, y.shape)  # [N, C, H, W]
    if x.shape[0] == 0:
        return torch.zeros(0)
    win = ssim_window(x.shape[-2], x.shape[-1])
    x01, y01 = (x.float() + 1) / 2, (y.float() + 1) / 2
    return ssim(x01, y01, data_range=DATA_RANGE, size_average=False, win_size=win).float()


def per_image_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each pair of images x, y [N, C, H, W]: [N]."""
    assert x.ndim == 4 and x.shape == y.shape, (x.shape, y.shape)  # [N, C, H, W]
    return (x.float() - y.float()).square().flatten(1).mean(dim=1)


def _mean(values: torch.Tensor) -> float:
    return float(values.to(torch.float64).mean()) if values.numel() else math.nan


@torch.no_grad()
def reconstruction_quality(
    images: torch.Tensor,
    reconstructions: torch.Tensor,
    *,
    p_input: torch.Tensor,
    p_reconstruction: torch.Tensor,
) -> Reconstruction:
    """MSE, SSIM and probability gap between x (`images` [N, C, H, W]) and G(z*) (`reconstructions`)."""
    assert images.ndim == 4, images.shape  # [N, C, H, W]
    assert reconstructions.shape == images.shape, (images.shape, reconstructions.shape)  # [N, C, H, W]
    assert p_input.shape == p_reconstruction.shape == (images.shape[0],), (p_input.shape, p_reconstruction.shape)  # [N]
    return Reconstruction(
        mse=_mean(per_image_mse(images, reconstructions)),
        ssim=_mean(per_image_ssim(images, reconstructions)),
        p_gap=_mean((p_reconstruction.float() - p_input.float()).abs()),
        count=int(images.shape[0]),
    )


@torch.no_grad()
def proximity(reconstructions: torch.Tensor, counterfactuals: torch.Tensor) -> Proximity:
    """Mean |G(z1, 0) - G(z1, z2)| over `reconstructions` and `counterfactuals` [N, C, H, W]."""
    assert reconstructions.shape == counterfactuals.shape and reconstructions.ndim == 4, (
        reconstructions.shape, counterfactuals.shape)  # [N, C, H, W]
    per_image = (counterfactuals.float() - reconstructions.float()).abs().flatten(1).mean(dim=1)
    return Proximity(value=_mean(per_image), count=int(reconstructions.shape[0]))


__all__ = [
    "Proximity", "Reconstruction", "per_image_mse", "per_image_ssim", "proximity", "reconstruction_quality",
    "ssim_window",
]
