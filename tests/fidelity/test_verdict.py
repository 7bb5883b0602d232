"""The verdict rule and its ground truth."""

from __future__ import annotations

import math

import pytest

from raygan.fidelity.verdict import Case, choose_ratio, odds_ratio, truth, verdict


def test_truth_thresholds() -> None:
    assert truth(0.31) == "relies" and truth(0.3) == "relies"
    assert truth(0.05) == "does not" and truth(-0.1) == "does not"
    assert truth(0.2) == "unscored" and truth(math.nan) == "unscored"


def test_verdict_by_odds_ratio() -> None:
    assert odds_ratio(0.05, 0.005) == pytest.approx((0.05 / 0.95) / (0.005 / 0.995))
    assert verdict(0.05, 0.005, ratio=5.0) == "relies"  # ten times the area of a small cue
    assert verdict(0.02, 0.005, ratio=5.0) == "does not"
    # A large region: 5 x its area is out of reach, its odds are not.
    assert verdict(0.8, 0.36, ratio=5.0) == "relies" and verdict(0.45, 0.36, ratio=5.0) == "does not"
    assert verdict(math.nan, 0.01, ratio=5.0) == "unscored"


def test_choose_ratio_maximises_development_hits() -> None:
    cases = [Case(mass=0.06, chance=0.005, reliance=0.8), Case(mass=0.03, chance=0.005, reliance=0.0),
             Case(mass=0.2, chance=0.005, reliance=0.5), Case(mass=0.5, chance=0.005, reliance=0.15)]
    ratio = choose_ratio(cases, grid=(2.0, 5.0, 7.0, 10.0, 20.0))
    assert ratio in (7.0, 10.0)  # 0.03 (odds ratio ~6.2) must say "does not", 0.06 (~12.7) "relies"
    assert all(verdict(c.mass, c.chance, ratio=ratio) == truth(c.reliance) for c in cases[:3])
