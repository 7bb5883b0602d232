import math

import pytest
import torch

from raygan.metrics.monotone import monotone_flags, monotone_share
from raygan.metrics.stats import rank_rows, spearman_rows


def test_share_and_spearman_on_hand_made_curves():
    alphas = torch.linspace(0, 1, 5)
    probs = torch.tensor([
        [0.1, 0.2, 0.3, 0.4, 0.9],  # rising: monotone, rho 1
        [0.9, 0.7, 0.5, 0.3, 0.1],  # falling: rho -1
        [0.1, 0.3, 0.2995, 0.6, 0.8],  # dip of 5e-4 < tol: monotone; ranks 1,3,2,4,5 -> rho 0.9
        [0.5, 0.5, 0.5, 0.5, 0.5],  # constant: monotone, rho undefined
    ])
    assert monotone_flags(probs).tolist() == [True, False, True, True]
    result = monotone_share(probs, alphas)
    assert result.share == pytest.approx(0.75)
    assert result.count == 4 and result.spearman_count == 3
    assert result.mean_spearman == pytest.approx((1.0 - 1.0 + 0.9) / 3)


def test_flags_already_computed():
    result = monotone_share(flags=torch.tensor([True, False]), spearman=torch.tensor([1.0, math.nan]))
    assert result.share == 0.5 and result.mean_spearman == 1.0 and result.spearman_count == 1
    empty = monotone_share(flags=torch.zeros(0, dtype=torch.bool))
    assert math.isnan(empty.share) and empty.count == 0


def test_ranks_share_ties():
    assert rank_rows(torch.tensor([[3.0, 1.0, 3.0, 2.0]])).tolist() == [[3.5, 1.0, 3.5, 2.0]]
    rho = spearman_rows(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[10.0, 20.0, 15.0]]))
    assert rho.item() == pytest.approx(0.5)
