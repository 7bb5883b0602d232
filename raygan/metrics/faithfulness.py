"""Deletion and insertion curves (most-relevant-first, Petsiuk et al. 2018): is the map faithful?

Pixels are ranked by the map, most salient first (ties in random order, seeded). Deletion
replaces the top k/K share of pixels of the image by a baseline for k = 0..K and records
p_C(positive); a faithful map makes p fall fast, so the area under the deletion curve is low.
Insertion starts from the baseline and puts the top pixels back; a faithful map makes p rise
fast, so the area under the insertion curve is high. Areas use the trapezoid rule on [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Baseline = Literal["blur", "black"]
Predict = Callable[[torch.Tensor], torch.Tensor]  # images [N, C, H, W] in [-1, 1] -> p(positive) [N]


@dataclass(frozen=True)
class Faithfulness:
    """Deletion and insertion areas for one kind of map over a set of images."""

    deletion_auc: float  # mean area under p(positive) vs share of top pixels removed (lower = more faithful)
    insertion_auc: float  # mean area under p(positive) vs share of top pixels restored (higher = more faithful)
    deletion_curve: tuple[float, ...]  # mean p at k/K of the pixels removed, k = 0..K
    insertion_curve: tuple[float, ...]  # mean p at k/K of the pixels restored, k = 0..K
    count: int  # images averaged


def blur(images: torch.Tensor) -> torch.Tensor:
    """Heavily blurred copy of `images` [N, C, H, W]: the insertion/deletion baseline that keeps
    the global brightness but removes detail (sigma = 4% of the side, ~5 px at 128).

    A separable Gaussian in plain torch (reflect padding): importing torchvision for it would
    cost seconds and torchvision is not promised on a bare GPU machine.
    """
    assert images.ndim == 4, images.shape  # [N, C, H, W]
    n, c, h, w = images.shape
    side = min(h, w)
    sigma = max(1.0, 0.04 * side)
    radius = min(math.ceil(2 * sigma), side - 1)  # reflect padding needs radius < side
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=images.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(images.dtype)
    x = images.reshape(n * c, 1, h, w)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return x.reshape(n, c, h, w)


def baseline_images(images: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    """The image every pixel is replaced by: blurred, or black (-1 on the [-1, 1] scale)."""
    if baseline == "blur":
        return blur(images)
    if baseline == "black":
        return torch.full_like(images, -1.0)
    raise ValueError(f"unknown baseline {baseline!r}; choose 'blur' or 'black'")


def pixel_ranks(maps: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """[N, H*W] long: 0 for each image's most salient pixel, ties broken in a seeded random order."""
    assert maps.ndim == 4 and maps.shape[1] == 1, maps.shape  # [N, 1, H, W]
    flat = maps.detach().flatten(1).float()  # [N, P]
    n, p = flat.shape
    shuffle = torch.randperm(p, generator=torch.Generator().manual_seed(seed)).to(flat.device)
    order = shuffle[torch.argsort(flat[:, shuffle], dim=1, descending=True, stable=True)]  # [N, P]
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(p, device=flat.device).expand(n, p))
    return ranks


def _auc(curves: torch.Tensor) -> torch.Tensor:
    """Trapezoid area of curves [N, K+1] sampled evenly on [0, 1]: [N]."""
    steps = curves.shape[1] - 1
    return (curves.sum(1) - 0.5 * (curves[:, 0] + curves[:, -1])) / steps


@torch.no_grad()
def deletion_insertion(
    predict: Predict,
    images: torch.Tensor,
    maps: torch.Tensor,
    *,
    steps: int = 16,
    baseline: Baseline = "blur",
    batch_size: int = 256,
    seed: int = 0,
) -> Faithfulness:
    """Deletion and insertion areas of `maps` [N, 1, H, W] for `images` [N, C, H, W] under `predict`.

    `predict` returns p(positive) [N] (e.g. `FrozenClassifier.p_positive`); it sees at most
    `batch_size` images per call, the K + 1 variants of several images stacked.
    """
    assert images.ndim == 4 and maps.ndim == 4, (images.shape, maps.shape)  # [N, C, H, W], [N, 1, H, W]
    assert maps.shape[0] == images.shape[0] and maps.shape[1] == 1 and maps.shape[2:] == images.shape[2:], (
        maps.shape, images.shape)
    assert steps >= 1, steps
    n, c, h, w = images.shape
    if n == 0:
        nan_curve = tuple([math.nan] * (steps + 1))
        return Faithfulness(math.nan, math.nan, nan_curve, nan_curve, 0)
    ranks = pixel_ranks(maps, seed=seed).to(images.device)  # [N, P]
    base = baseline_images(images, baseline)  # [N, C, H, W]
    counts = torch.round(torch.arange(steps + 1, device=images.device) * (h * w) / steps).long()  # [K+1]
    per_chunk = max(1, batch_size // (steps + 1))
    deletion, insertion = [], []
    for start in range(0, n, per_chunk):
        x = images[start : start + per_chunk]  # [n, C, H, W]
        b = base[start : start + per_chunk]
        top = (ranks[start : start + per_chunk, None, :] < counts[None, :, None])  # [n, K+1, P]
        top = top.view(-1, steps + 1, 1, h, w)  # broadcast over channels
        xs, bs = x.unsqueeze(1), b.unsqueeze(1)  # [n, 1, C, H, W]
        removed = torch.where(top, bs, xs).reshape(-1, c, h, w)  # [n*(K+1), C, H, W]
        restored = torch.where(top, xs, bs).reshape(-1, c, h, w)
        deletion.append(predict(removed).float().view(-1, steps + 1))
        insertion.append(predict(restored).float().view(-1, steps + 1))
    d, i = torch.cat(deletion).double(), torch.cat(insertion).double()  # [N, K+1]
    return Faithfulness(
        deletion_auc=float(_auc(d).mean()),
        insertion_auc=float(_auc(i).mean()),
        deletion_curve=tuple(float(v) for v in d.mean(0)),
        insertion_curve=tuple(float(v) for v in i.mean(0)),
        count=n,
    )


__all__ = ["Baseline", "Faithfulness", "Predict", "baseline_images", "blur", "deletion_insertion", "pixel_ranks"]
