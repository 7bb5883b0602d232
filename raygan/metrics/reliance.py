"""Reliance of a classifier on a cue, measured by intervention.

Reliance on cue c = mean of p(x) - p(x without c) over the images that carry c, where "x without
c" is the same image with only c removed: a phantom's twin, or for real data the cue's region
replaced by the same region of images of the other class (`raygan.fidelity.intervention`). It is
measured, never assumed from how the data was made: a classifier trained where a cue carries the
label may still ignore it, and one trained where it is noise may still use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Reliance:
    """How much p(positive) falls when only one cue is taken away."""

    value: float  # mean p(x) - p(x without the cue) over carriers; nan when no image carries it
    flipped: float  # share of carriers called positive (p > 0.5) whose intervened twin is called negative
    p_with: float  # mean p(x) over carriers
    p_without: float  # mean p(x without the cue) over carriers
    count: int  # images carrying the cue


@torch.no_grad()
def reliance(p_with: torch.Tensor, p_without: torch.Tensor, carriers: torch.Tensor) -> Reliance:
    """Reliance from p(x) [N], p(twin) [N] and which images carry the cue [N] bool."""
    assert p_with.ndim == 1 and p_with.shape == p_without.shape == carriers.shape, (
        p_with.shape, p_without.shape, carriers.shape)  # [N]
    carriers = carriers.bool()
    count = int(carriers.sum())
    if count == 0:
        return Reliance(math.nan, math.nan, math.nan, math.nan, 0)
    a, b = p_with[carriers].double(), p_without[carriers].double()
    positive = a > 0.5
    flipped = float((b[positive] < 0.5).double().mean()) if bool(positive.any()) else math.nan
    return Reliance(value=float((a - b).mean()), flipped=flipped, p_with=float(a.mean()), p_without=float(b.mean()),
                    count=count)


__all__ = ["Reliance", "reliance"]
