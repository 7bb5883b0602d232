"""Ground-truth metrics of the fidelity benchmark: reliance, twin agreement, cue removal."""

from __future__ import annotations

import math

import pytest
import torch

from raygan.metrics.cue_removal import cue_removal, removes_cue
from raygan.metrics.reliance import reliance
from raygan.metrics.twin_agreement import twin_agreement


def test_reliance_is_the_mean_drop_over_carriers() -> None:
    p_with = torch.tensor([0.9, 0.8, 0.7, 0.2])
    p_without = torch.tensor([0.3, 0.8, 0.4, 0.9])
    carriers = torch.tensor([True, True, True, False])  # the last one does not carry the cue: not counted
    r = reliance(p_with, p_without, carriers)
    assert r.count == 3
    assert r.value == pytest.approx((0.6 + 0.0 + 0.3) / 3)
    assert r.flipped == pytest.approx(2 / 3)  # 0.9 -> 0.3 and 0.7 -> 0.4 cross 0.5, 0.8 -> 0.8 does not
    assert r.p_with == pytest.approx(0.8) and r.p_without == pytest.approx(0.5)
    assert math.isnan(reliance(p_with, p_without, torch.zeros(4, dtype=torch.bool)).value)


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    """An image with a bright 2x2 patch (the cue) and its twin without it."""
    twin = torch.full((1, 1, 8, 8), -0.5)
    image = twin.clone()
    image[..., 1:3, 5:7] = 1.0
    return image, twin


def test_twin_agreement_ranks_the_cue_first() -> None:
    image, twin = _pair()
    on_cue = (image - twin).abs()  # the map that is exactly the intervention's effect
    elsewhere = torch.zeros_like(on_cue)
    elsewhere[..., 5:7, 1:3] = 1.0
    assert twin_agreement(on_cue, image, twin).value == pytest.approx(1.0)
    assert twin_agreement(elsewhere, image, twin).value < 0
    assert twin_agreement(on_cue, twin, twin).count == 0  # no cue: undefined, not counted


def test_cue_removal_against_the_twin() -> None:
    image, twin = _pair()
    removed = twin.clone()  # a counterfactual that takes the patch away
    kept = image.clone()  # one that keeps it (and would have to change something else to flip)
    assert bool(removes_cue(removed, image, twin)[0]) and not bool(removes_cue(kept, image, twin)[0])
    cfs = torch.cat([removed, kept, removed])
    images, twins = torch.cat([image, image, twin]), torch.cat([twin, twin, twin])  # the third has no cue
    result = cue_removal(cfs, images, twins, p_input=torch.tensor([0.9, 0.9, 0.9]),
                         p_counterfactual=torch.tensor([0.1, 0.2, 0.1]))
    assert (result.eligible, result.removed) == (2, 1) and result.value == pytest.approx(0.5)
    none = cue_removal(cfs, images, twins, p_input=torch.tensor([0.9, 0.9, 0.9]),
                       p_counterfactual=torch.tensor([0.8, 0.8, 0.8]))  # nothing flips: nothing to judge
    assert none.eligible == 0 and math.isnan(none.value)
