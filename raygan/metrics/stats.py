"""Small statistics the metrics share: tie-aware ranks, row-wise Spearman rho, nan-ignoring means.

Plain torch (no scipy), so the metrics run wherever torch runs (DESIGN.md rule 4).
"""

from __future__ import annotations

import math

import torch


def rank_rows(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (1-based, ties share their mean rank) of each row of `x` [N, P], float64."""
    assert x.ndim == 2, x.shape  # [N, P]
    n = x.shape[0]
    x = x.detach().to(torch.float64)
    sorted_x, order = torch.sort(x, dim=1, stable=True)
    ranks = torch.empty_like(sorted_x)
    for i in range(n):
        # Runs of equal values get the mean of the positions they span.
        _, counts = torch.unique_consecutive(sorted_x[i], return_counts=True)
        ends = counts.cumsum(0).to(torch.float64)
        mean_rank = ends - (counts.to(torch.float64) - 1) / 2
        ranks[i, order[i]] = mean_rank.repeat_interleave(counts)
    return ranks


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rho between matching rows of `a` and `b` ([N, P] each, or [P] broadcast): [N] float64.

    Pearson correlation of the tie-aware ranks; nan for a row where either side is constant
    (the correlation is undefined there, and a metric must not pretend otherwise).
    """
    if a.ndim == 1:
        a = a.unsqueeze(0).expand_as(b)
    if b.ndim == 1:
        b = b.unsqueeze(0).expand_as(a)
    assert a.shape == b.shape and a.ndim == 2, (a.shape, b.shape)  # [N, P]
    ra, rb = rank_rows(a), rank_rows(b)
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    denom = (ra.square().sum(1) * rb.square().sum(1)).sqrt()
    rho = (ra * rb).sum(1) / denom
    return torch.where(denom > 0, rho, torch.full_like(rho, math.nan))


def nanmean(x: torch.Tensor) -> float:
    """Mean of the finite entries of `x`; nan when there are none."""
    x = x.detach().flatten().to(torch.float64)
    finite = x[torch.isfinite(x)]
    return float(finite.mean()) if finite.numel() else math.nan


def finite_count(x: torch.Tensor) -> int:
    """How many entries of `x` are finite (the sample size behind `nanmean`)."""
    return int(torch.isfinite(x.detach()).sum())


__all__ = ["finite_count", "nanmean", "rank_rows", "spearman_rows"]
