"""Monotone share: how often p_C rises steadily along the traversal G(z1, alpha * z2).

The paper expects p(positive) to increase monotonically from the counterfactual (alpha = 0) to
the reconstruction (alpha = 1). A traversal counts as monotone when it never drops by more than
`tol` between consecutive frames (DESIGN.md, results contract: "non-decreasing within 1e-3").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from raygan.metrics.stats import finite_count, nanmean, spearman_rows

DEFAULT_TOL = 1e-3  # largest drop between consecutive frames still called non-decreasing


@dataclass(frozen=True)
class Monotone:
    """Monotonicity of a set of traversals."""

    share: float  # share of traversals flagged monotone; nan when there are none
    mean_spearman: float  # mean Spearman rho of p against alpha over traversals where it is defined (nan if none)
    count: int  # traversals counted in `share`
    spearman_count: int  # traversals with a defined rho (p not constant), counted in `mean_spearman`


def monotone_flags(probs: torch.Tensor, *, tol: float = DEFAULT_TOL) -> torch.Tensor:
    """[N] bool: True where p never drops by more than `tol` from one frame to the next."""
    assert probs.ndim == 2, probs.shape  # [N, F]
    if probs.shape[1] < 2:
        return torch.ones(probs.shape[0], dtype=torch.bool, device=probs.device)
    return (probs.diff(dim=1) >= -tol).all(dim=1)


def monotone_share(
    probs: torch.Tensor | None = None,
    alphas: torch.Tensor | None = None,
    *,
    flags: torch.Tensor | None = None,
    spearman: torch.Tensor | None = None,
    tol: float = DEFAULT_TOL,
) -> Monotone:
    """Share of monotone traversals and mean Spearman rho.

    Either pass the curves (`probs` [N, F] p_C per frame, `alphas` [F] or [N, F]) or the per-image
    results already computed by the traversal (`flags` [N] bool, `spearman` [N], nan = undefined).
    """
    if probs is not None:
        assert flags is None and spearman is None, "pass either probs/alphas or flags/spearman"
        assert alphas is not None, "alphas are needed with probs"
        assert probs.ndim == 2, probs.shape  # [N, F]
        flags = monotone_flags(probs, tol=tol)
        spearman = spearman_rows(alphas.to(probs.dtype), probs) if probs.shape[0] else torch.zeros(0)
    assert flags is not None and flags.ndim == 1, "pass probs [N, F] or flags [N]"
    if spearman is None:
        spearman = torch.full(flags.shape, math.nan)
    assert spearman.shape == flags.shape, (spearman.shape, flags.shape)  # [N]
    count = int(flags.numel())
    share = float(flags.to(torch.float64).mean()) if count else math.nan
    return Monotone(share=share, mean_spearman=nanmean(spearman), count=count, spearman_count=finite_count(spearman))


__all__ = ["DEFAULT_TOL", "Monotone", "monotone_flags", "monotone_share"]
