"""Class consistency (the paper's protocol) on constructed G and C whose answer is known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from raygan.config import GanConfig
from raygan.metrics.class_consistency import class_consistency
from raygan.models.frozen import ClassifierSpec, FrozenClassifier

CONFIG = GanConfig(image_size=8, z1_dim=3, z2_dim=2, arch="dcgan")


class _ClassPainter(nn.Module):
    """G that paints +1 images for z2 != 0 and -1 images for z2 = 0 (optionally the other way round)."""

    def __init__(self, *, invert_positive: bool = False) -> None:
        super().__init__()
        self.config = CONFIG
        self.scale = nn.Parameter(torch.ones(()))  # gives the module a device
        self.invert_positive = invert_positive

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        positive = (z2.abs().sum(dim=1) > 0).float()  # [N]
        if self.invert_positive:
            positive = torch.ones_like(positive)  # every sample looks positive
        return (positive * 2 - 1).view(-1, 1, 1, 1).expand(-1, 1, 8, 8) * self.scale


class _MeanThreshold(nn.Module):
    """C: logit of "positive" = mean pixel (so mean > 0 means positive)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-m, m], dim=1) * 10


def _classifier() -> FrozenClassifier:
    return FrozenClassifier(_MeanThreshold(), ClassifierSpec(format="factory", weights="-", factory="x:y", size=8))


def test_perfect_generator_scores_one() -> None:
    g = _ClassPainter().train()
    result = class_consistency(g, _classifier(), n_z1=10, repeats=3, batch_size=7, seed=0)
    assert result.accuracy == 1.0 and result.std == 0.0
    assert result.negative_accuracy == 1.0 and result.positive_accuracy == 1.0
    assert result.samples == 3 * 10 * 4  # 1 negative + 3 positives per z1
    assert g.training, "G's training mode is restored"
    assert result.value == result.accuracy


def test_generator_ignoring_the_class_scores_three_quarters() -> None:
    # Every sample looks positive: the 3 positives per z1 agree, the negative does not.
    result = class_consistency(_ClassPainter(invert_positive=True), _classifier(), n_z1=5, repeats=2, seed=1)
    assert result.accuracy == pytest.approx(0.75)
    assert result.negative_accuracy == 0.0 and result.positive_accuracy == 1.0


def test_same_seed_same_draw_and_std_over_repeats() -> None:
    torch.manual_seed(0)

    class _Noisy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = CONFIG
            self.w = nn.Parameter(torch.randn(3))

        def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
            return (z1 @ self.w).view(-1, 1, 1, 1).expand(-1, 1, 8, 8)  # class decided by z1 alone

    g = _Noisy()
    a = class_consistency(g, _classifier(), n_z1=16, repeats=4, seed=3)
    b = class_consistency(g, _classifier(), n_z1=16, repeats=4, seed=3)
    assert a == b
    assert a.std > 0 and 0 < a.accuracy < 1


def test_rejects_empty_draws() -> None:
    with pytest.raises(ValueError):
        class_consistency(_ClassPainter(), _classifier(), n_z1=0)
