"""Does the counterfactual remove the cue? Judged against the image's own twin without it.

On the cue's footprint F (where x and its twin without the cue differ), the counterfactual
G(z1, 0) removes the cue when it is closer to the twin than to x there:
mean_F |cf - twin| < mean_F |cf - x|. Counted over the images whose counterfactual flips the
classifier (p(x) > 0.5 and p(cf) < 0.5) and that carry the cue: of the flips, how many took the
cue away rather than changing something else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CueRemoval:
    """Share of flipping counterfactuals that remove the cue where it sits."""

    value: float  # removed / eligible; nan when no image is eligible
    eligible: int  # carriers whose counterfactual flips the classifier
    removed: int  # of those, counterfactuals closer to the twin than to x on the cue's footprint


@torch.no_grad()
def removes_cue(counterfactuals: torch.Tensor, images: torch.Tensor, twins: torch.Tensor) -> torch.Tensor:
    """[N] bool: on each image's cue footprint, |cf - twin| < |cf - x| on average (False without a footprint)."""
    assert counterfactuals.shape == images.shape == twins.shape and images.ndim == 4, (
        counterfactuals.shape, images.shape, twins.shape)  # [N, C, H, W]
    cf, x, t = counterfactuals.float(), images.float(), twins.float()
    footprint = (x - t).abs().amax(dim=1, keepdim=True) > 1e-6  # [N, 1, H, W]
    area = footprint.flatten(1).sum(1)  # [N]
    to_twin = ((cf - t).abs().mean(dim=1, keepdim=True) * footprint).flatten(1).sum(1)
    to_x = ((cf - x).abs().mean(dim=1, keepdim=True) * footprint).flatten(1).sum(1)
    return (area > 0) & (to_twin < to_x)


@torch.no_grad()
def cue_removal(
    counterfactuals: torch.Tensor,
    images: torch.Tensor,
    twins: torch.Tensor,
    *,
    p_input: torch.Tensor,
    p_counterfactual: torch.Tensor,
    threshold: float = 0.5,
) -> CueRemoval:
    """Of the cue-carrying images whose counterfactual flips the call, the share that removes the cue."""
    assert p_input.shape == p_counterfactual.shape == (images.shape[0],), (p_input.shape, p_counterfactual.shape)
    carries = (images.float() - twins.float()).abs().flatten(1).amax(1) > 1e-6  # [N]
    flips = (p_input > threshold) & (p_counterfactual < threshold)
    eligible = carries & flips.to(carries.device)
    removed = removes_cue(counterfactuals, images, twins) & eligible
    n = int(eligible.sum())
    return CueRemoval(value=int(removed.sum()) / n if n else math.nan, eligible=n, removed=int(removed.sum()))


__all__ = ["CueRemoval", "cue_removal", "removes_cue"]
