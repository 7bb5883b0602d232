"""Localisation against ground-truth lesion masks (phantoms): pointing game and AUPRC.

For each image with a non-empty mask:
- pointing game: does the map's maximum fall inside the mask? Ties are shared: an image scores
  the share of its maximal pixels that lie inside the mask, which is the hit probability under a
  random choice among them (so a constant map scores the mask fraction, not a free 1).
- AUPRC: pixels ranked by map value as detectors of mask pixels; average precision
  sum_k (R_k - R_{k-1}) P_k over the distinct map values (tied pixels enter together), the
  step-wise area under the precision-recall curve. A random or constant map scores about the
  mask fraction, reported as `chance`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Localisation:
    """How well attribution maps point at the ground-truth lesions."""

    pointing_game: float  # mean over images of the share of maximal map pixels inside the mask (nan if none counted)
    auprc: float  # mean over images of the average precision of map-ranked pixels vs mask pixels
    chance: float  # mean mask fraction: the AUPRC (and pointing game) a random map scores
    count: int  # images with a non-empty mask (the others carry no lesion to find)


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Average precision of `scores` [P] ranking the True pixels of `targets` [P] first; nan without positives."""
    assert scores.ndim == 1 and scores.shape == targets.shape, (scores.shape, targets.shape)  # [P]
    positives = int(targets.sum())
    if positives == 0:
        return math.nan
    order = torch.argsort(scores.to(torch.float64), descending=True, stable=True)
    sorted_scores = scores.to(torch.float64)[order]
    hits = targets[order].to(torch.float64).cumsum(0)
    # One precision/recall point per distinct score: the end of each run of ties.
    _, counts = torch.unique_consecutive(sorted_scores, return_counts=True)
    ends = counts.cumsum(0) - 1
    tp = hits[ends]
    precision = tp / (ends + 1).to(torch.float64)
    recall_step = torch.diff(tp, prepend=tp.new_zeros(1)) / positives
    return float((recall_step * precision).sum())


def pointing_hit(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of the maximal entries of `scores` [P] that are True in `targets` [P]."""
    assert scores.ndim == 1 and scores.shape == targets.shape, (scores.shape, targets.shape)  # [P]
    top = scores == scores.max()
    return float((top & targets).sum()) / float(top.sum())


@torch.no_grad()
def localisation(maps: torch.Tensor, masks: torch.Tensor) -> Localisation:
    """Pointing game and AUPRC of `maps` [N, 1, H, W] against lesion `masks` [N, 1, H, W] bool."""
    assert maps.ndim == 4 and maps.shape[1] == 1, maps.shape  # [N, 1, H, W]
    assert masks.shape == maps.shape, (masks.shape, maps.shape)  # [N, 1, H, W]
    masks = masks.bool()
    pointing, auprc, fraction = [], [], []
    for m, t in zip(maps.detach().flatten(1).float().cpu(), masks.flatten(1).cpu()):
        if not t.any():
            continue
        pointing.append(pointing_hit(m, t))
        auprc.append(average_precision(m, t))
        fraction.append(float(t.float().mean()))
    count = len(pointing)

    def mean(values: list[float]) -> float:
        return sum(values) / count if count else math.nan

    return Localisation(pointing_game=mean(pointing), auprc=mean(auprc), chance=mean(fraction), count=count)


__all__ = ["Localisation", "average_precision", "localisation", "pointing_hit"]
