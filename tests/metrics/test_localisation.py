import math

import pytest
import torch

from raygan.metrics.localisation import average_precision, localisation


def _masks(n: int = 4, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    for i in range(n):
        r, c = torch.randint(0, size - 5, (2,), generator=g).tolist()
        masks[i, 0, r : r + 5, c : c + 4] = True
    return masks


def test_map_equal_to_mask_is_perfect():
    masks = _masks()
    result = localisation(masks.float(), masks)
    assert result.pointing_game == 1.0 and result.auprc == pytest.approx(1.0)
    assert result.count == 4 and result.chance == pytest.approx(20 / 256)


def test_uniform_and_random_maps_score_the_mask_fraction():
    masks = _masks(n=32, size=32)
    fraction = 20 / 1024
    uniform = localisation(torch.ones(32, 1, 32, 32), masks)
    assert uniform.auprc == pytest.approx(fraction) and uniform.pointing_game == pytest.approx(fraction)
    rand = localisation(torch.rand(32, 1, 32, 32, generator=torch.Generator().manual_seed(1)), masks)
    assert rand.auprc == pytest.approx(fraction, abs=0.02)


def test_images_without_lesion_are_not_counted():
    masks = _masks(n=2)
    masks[1] = False
    result = localisation(masks.float(), masks)
    assert result.count == 1
    empty = localisation(torch.rand(2, 1, 16, 16), torch.zeros(2, 1, 16, 16, dtype=torch.bool))
    assert empty.count == 0 and math.isnan(empty.auprc) and math.isnan(empty.pointing_game)


def test_average_precision_known_value():
    # Ranking: pos, neg, pos -> precision 1 at recall 0.5, 2/3 at recall 1: AP = 0.5 + 1/3.
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1])
    targets = torch.tensor([True, False, True, False])
    assert average_precision(scores, targets) == pytest.approx(0.5 + 1 / 3)
