"""Bootstrap intervals for per-image scores measured on several seeds: resample seeds, then images.

A benchmark's images come in groups (one group per seed: its own phantoms, classifier and GAN),
and the seeds vary more than the images within one. So the interval resamples seeds with
replacement, then images within each drawn seed, and recomputes the statistic: the mean over the
drawn seeds of each seed's mean (or of a ratio of means, e.g. mass over chance). A paired
difference applies the same draws to both methods, image by image, so what is shared (the image,
its classifier, its GAN) cancels. "A beats B" = the 95% interval of the paired difference lies
above 0 (DESIGN.md, benchmark practice).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Groups = Sequence[Sequence[float]]  # one sequence of per-image values per seed (nan = not applicable)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval."""

    value: float  # the statistic on the data as measured
    low: float  # 2.5% quantile of the bootstrap distribution (nan when undefined)
    high: float  # 97.5% quantile
    n: int  # values counted (finite, over every group)
    groups: int  # groups (seeds) with at least one finite value

    def as_list(self) -> list[float | None]:
        """[low, high] with nan as None (for JSON)."""
        return [None if math.isnan(v) else v for v in (self.low, self.high)]


def _clean(groups: Groups) -> list[np.ndarray]:
    return [np.asarray(g, dtype=np.float64) for g in groups]


def _statistic(num: list[np.ndarray], den: list[np.ndarray] | None) -> float:
    """Mean over groups of the group mean of num (over den's group mean for a ratio); nan-ignoring."""
    per_group = []
    for i, a in enumerate(num):
        keep = np.isfinite(a) if den is None else np.isfinite(a) & np.isfinite(den[i])
        if not keep.any():
            continue
        value = a[keep].mean() if den is None else a[keep].mean() / max(den[i][keep].mean(), 1e-12)
        per_group.append(value)
    return float(np.mean(per_group)) if per_group else math.nan


def bootstrap(
    values: Groups,
    *,
    chance: Groups | None = None,
    minus: Groups | None = None,
    draws: int = 2000,
    seed: int = 0,
) -> Interval:
    """Mean of `values` (over `chance`: a ratio of means; minus `minus`: a paired difference), 95% interval.

    `values`, `chance` and `minus` have the same groups and, per group, one value per image, in
    the same order (paired). A nan entry is left out of that image's statistic.
    """
    a = _clean(values)
    c = _clean(chance) if chance is not None else None
    b = _clean(minus) if minus is not None else None
    assert c is None or [len(x) for x in c] == [len(x) for x in a], "chance must pair with values"
    assert b is None or [len(x) for x in b] == [len(x) for x in a], "minus must pair with values"

    def stat(idx: list[tuple[int, np.ndarray]]) -> float:
        num = [a[g][i] for g, i in idx]
        den = [c[g][i] for g, i in idx] if c is not None else None
        if b is None:
            return _statistic(num, den)
        other = [b[g][i] for g, i in idx]
        paired = [np.where(np.isfinite(x) & np.isfinite(y), x - y, np.nan) for x, y in zip(num, other)]
        return _statistic(paired, None)

    full = [(g, np.arange(len(a[g]))) for g in range(len(a))]
    point = stat(full)
    finite = [np.isfinite(x) if b is None else np.isfinite(x) & np.isfinite(b[g]) for g, x in enumerate(a)]
    n = int(sum(f.sum() for f in finite))
    groups = int(sum(bool(f.any()) for f in finite))
    if n == 0 or math.isnan(point):
        return Interval(point, math.nan, math.nan, n, groups)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(draws):
        drawn = rng.integers(0, len(a), size=len(a))
        idx = [(int(g), rng.integers(0, len(a[g]), size=len(a[g]))) for g in drawn if len(a[g])]
        value = stat(idx)
        if not math.isnan(value):
            samples.append(value)
    if not samples:
        return Interval(point, math.nan, math.nan, n, groups)
    low, high = np.quantile(samples, [0.025, 0.975])
    return Interval(point, float(low), float(high), n, groups)


__all__ = ["Groups", "Interval", "bootstrap"]
