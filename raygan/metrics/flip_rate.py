"""Flip rate: does removing the class latent (z2 = 0) turn a positive call negative?

DESIGN.md: among images the classifier calls positive (p_input > 0.5), the share whose
counterfactual G(z1, 0) has p < 0.5. A high flip rate means the counterfactual really removes
what the classifier responds to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FlipRate:
    """Share of positive calls whose counterfactual is called negative."""

    value: float  # flipped / eligible; nan when no image is eligible
    eligible: int  # images with p_input > threshold (the denominator)
    flipped: int  # eligible images whose counterfactual has p < threshold


def flip_rate(p_input: torch.Tensor, p_counterfactual: torch.Tensor, *, threshold: float = 0.5) -> FlipRate:
    """Flip rate over images with p_input [N] and counterfactual probabilities p_counterfactual [N]."""
    assert p_input.ndim == 1 and p_input.shape == p_counterfactual.shape, (p_input.shape, p_counterfactual.shape)  # [N]
    eligible = p_input > threshold
    flipped = eligible & (p_counterfactual < threshold)
    n_eligible, n_flipped = int(eligible.sum()), int(flipped.sum())
    return FlipRate(value=n_flipped / n_eligible if n_eligible else math.nan, eligible=n_eligible, flipped=n_flipped)


__all__ = ["FlipRate", "flip_rate"]
