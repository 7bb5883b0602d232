"""Twin agreement: does a map rank pixels as the true effect of removing a cue does?

Per image, Spearman rho between the map and |x - twin|, where the twin is the same image without
the cue (phantoms): the ground-truth picture of where that cue lives. 1 = the map orders pixels
exactly as the intervention's effect; about 0 = unrelated. Images without the cue (a zero
difference, so rho is undefined) are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from raygan.metrics.stats import finite_count, nanmean, spearman_rows


@dataclass(frozen=True)
class TwinAgreement:
    """Mean per-image rank correlation of a map with the true effect of a cue."""

    value: float  # mean Spearman rho over counted images (nan when none)
    count: int  # images with a defined rho (the cue present, the map not constant)


@torch.no_grad()
def twin_agreement(maps: torch.Tensor, images: torch.Tensor, twins: torch.Tensor) -> TwinAgreement:
    """Spearman rho of `maps` [N, 1, H, W] against |images - twins| ([N, C, H, W] each, channel mean)."""
    assert maps.ndim == 4 and maps.shape[1] == 1, maps.shape  # [N, 1, H, W]
    assert images.shape == twins.shape and images.shape[0] == maps.shape[0], (images.shape, twins.shape)
    assert images.shape[-2:] == maps.shape[-2:], (images.shape, maps.shape)
    effect = (images.float() - twins.float()).abs().mean(dim=1)  # [N, H, W]
    if maps.shape[0] == 0:
        return TwinAgreement(value=float("nan"), count=0)
    rho = spearman_rows(maps.flatten(1).float(), effect.flatten(1))  # [N], nan where either is constant
    return TwinAgreement(value=nanmean(rho), count=finite_count(rho))


__all__ = ["TwinAgreement", "twin_agreement"]
