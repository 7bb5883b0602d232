"""Bootstrap intervals over seeds, then images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from raygan.metrics.bootstrap import bootstrap


def test_interval_covers_the_mean_and_ignores_nan() -> None:
    rng = np.random.default_rng(0)
    groups = [list(rng.normal(1.0, 0.2, 40)) + [math.nan] for _ in range(3)]
    r = bootstrap(groups, draws=500)
    assert r.n == 120 and r.groups == 3
    assert r.low < r.value < r.high
    assert r.value == pytest.approx(np.mean([np.nanmean(g) for g in groups]))
    assert 0.8 < r.low and r.high < 1.2


def test_seed_variation_widens_the_interval() -> None:
    """Two seeds that disagree give a wide interval even with many images each: seeds are resampled."""
    tight = bootstrap([[1.0] * 50, [1.0] * 50], draws=300)
    apart = bootstrap([[0.0] * 50, [2.0] * 50], draws=300)
    assert tight.high - tight.low < 1e-9
    assert apart.low == pytest.approx(0.0) and apart.high == pytest.approx(2.0)


def test_ratio_and_paired_difference() -> None:
    mass = [[0.2, 0.4], [0.3, 0.3]]
    chance = [[0.01, 0.01], [0.02, 0.02]]
    assert bootstrap(mass, chance=chance, draws=50).value == pytest.approx((0.3 / 0.01 + 0.3 / 0.02) / 2)
    a, b = [[0.5, 0.6, math.nan]], [[0.1, 0.2, 0.3]]
    diff = bootstrap(a, minus=b, draws=300, seed=1)
    assert diff.value == pytest.approx(0.4) and diff.n == 2  # the nan pair is left out
    assert diff.low == pytest.approx(0.4) and diff.high == pytest.approx(0.4)
    assert math.isnan(bootstrap([[math.nan]]).value)
