"""Dataset-level verdicts: "the classifier relies on this cue", from a map, and the ground truth.

Ground truth, by intervention (issue 10): the measured reliance on the cue is >= RELIES (0.3:
removing the cue costs the positive call 0.3 of probability on average) -> "relies"; <= IGNORES
(0.05) -> "does not"; in between the cell is not scored.

The rule, the same for every method (raygan's maps, Grad-CAM, IG): a map says "relies"
when the odds of its mean share m on the cue, over the images carrying it, are at least `ratio` times
the odds of the cue's mean area share (what a uniform map would put there): m / (1 - m) >=
ratio * a / (1 - a). The share is the *net* share of the method's own signed attribution where it
has one (the swap map's window drops, IG's and the traversal attribution's contributions; sum on
the cue over the sum of magnitudes), and the mass where it has none (Grad-CAM is ReLU'd by
definition, the difference map is a magnitude). Reliance is a signed mean, p(x) - p(twin) averaged
over the carriers, so a cue that raises some calls and lowers others is not relied on; a map cut to
its positive part counts only the first half and calls it a shortcut (fidelity-notes, 2026-12-07). For a small cue (a marker covers 0.5% of the image) this is mass >= ratio x
area; the odds keep the rule meaningful for large regions too (a border band covering a third of
the image, where "5 x the area" could never be reached). `ratio` is fixed on the development seed by
`choose_ratio` (the grid value that gets the most development verdicts right over every method
and cell; ties go to the median of the tied values) and then frozen for the reported seeds and
for the shortcut kind no choice was made on.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["relies", "does not", "unscored"]
RELIES = 0.3  # measured reliance at or above this: the classifier relies on the cue
IGNORES = 0.05  # at or below this: it does not
RATIO_GRID = (1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0)  # candidate odds-ratio thresholds
# The frozen rule, chosen by `raygan fidelity --quick --seeds 0,10` on 2026-12-03 (docs/fidelity-quick.md). It was
# 2.0, chosen on seed 0 alone; the 2026-12-02 report showed that rule wrong for the swap map in every lesion-only
# cell, so development seed 10 was added and the ratio chosen again on both (docs/fidelity-notes.md says so). When the
# rule moved to the net share of signed maps (2026-12-07), the ratio stayed frozen: on that day's development cells
# (seeds 0 and 10; the swap map, IG, Grad-CAM and the difference map) 3.0 gets 20 of 24 verdicts right, 1.5 and
# 2.0 get 21 (the one more is the difference map's).
RATIO = 3.0


def truth(reliance: float) -> Verdict:
    """The ground-truth verdict of a measured reliance."""
    if math.isnan(reliance):
        return "unscored"
    if reliance >= RELIES:
        return "relies"
    if reliance <= IGNORES:
        return "does not"
    return "unscored"


def odds_ratio(mass: float, chance: float) -> float:
    """(m / (1 - m)) / (a / (1 - a)): how much more of the map sits on the region than a uniform map's."""
    if math.isnan(mass) or math.isnan(chance) or not 0 < chance < 1:
        return math.nan
    if mass >= 1:
        return math.inf
    return (mass / (1 - mass)) / (chance / (1 - chance))


def verdict(mass: float, chance: float, *, ratio: float) -> Verdict:
    """A map's verdict from its mean mass on the cue and the cue's mean area share."""
    enrichment = odds_ratio(mass, chance)
    if math.isnan(enrichment):
        return "unscored"
    return "relies" if enrichment >= ratio else "does not"


@dataclass(frozen=True)
class Case:
    """One (cell, method) on the development seed: what the map says and what is true."""

    mass: float  # mean share on the cue the verdict reads (net share of a signed map, else mass), over the carriers
    chance: float  # mean area share of the cue over the same images
    reliance: float  # the classifier's measured reliance on the cue


def choose_ratio(cases: Sequence[Case], *, grid: Sequence[float] = RATIO_GRID) -> float:
    """The grid ratio whose verdicts agree with the truth most often on `cases` (scored ones only)."""
    scored = [c for c in cases if truth(c.reliance) != "unscored"]
    if not scored:
        return statistics.median(grid)
    hits = {r: sum(verdict(c.mass, c.chance, ratio=r) == truth(c.reliance) for c in scored) for r in grid}
    best = max(hits.values())
    return statistics.median_low([r for r in grid if hits[r] == best])


__all__ = ["IGNORES", "RATIO", "RATIO_GRID", "RELIES", "Case", "Verdict", "choose_ratio", "odds_ratio", "truth",
           "verdict"]
