import math

import torch

from raygan.metrics.flip_rate import flip_rate


def test_flip_rate_counts_only_positive_calls():
    p_input = torch.tensor([0.9, 0.8, 0.7, 0.2, 0.5])  # three eligible (0.5 is not > 0.5)
    p_cf = torch.tensor([0.1, 0.6, 0.4, 0.0, 0.0])  # two of the eligible flip
    result = flip_rate(p_input, p_cf)
    assert (result.eligible, result.flipped) == (3, 2)
    assert result.value == 2 / 3


def test_flip_rate_nan_without_eligible_images():
    result = flip_rate(torch.tensor([0.1, 0.3]), torch.tensor([0.0, 0.0]))
    assert math.isnan(result.value) and result.eligible == 0
