"""From cell results to the fidelity table: per-cell rows, pooled rows with intervals, verdicts, targets.

Rows (docs/fidelity.json, issue 10): one per (world, shortcut_kind, seed, method) and one per
(world, shortcut_kind, method) pooled over the reported seeds ("seed": "all"), with the keys
world, shortcut_kind, seed, method, n, reliance_shortcut, reliance_lesions, shortcut_mass,
shortcut_chance, lesion_auprc, lesion_chance, twin_agreement, cf_removes_shortcut, verdict, ci95.
Masses and AUPRCs are means over the explained phantoms carrying the cue; twin agreement is the
Spearman rho of the map with |x - twin without the shortcut| on the same phantoms. ci95 holds the
95% bootstrap interval of each metric (seeds, then images; `raygan.metrics.bootstrap`).
`shortcut_net_share` is the mean net share of the method's signed map on the shortcut (the same as
the mass for Grad-CAM and the difference map, which carry no sign); the verdict reads it, because the
reliance it is judged against is a signed mean (cells of runs before 2026-12-07 have no signed maps:
their verdict reads the mass, as it did then).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from raygan.fidelity.cell import ABLATIONS, METHODS, PRIMARY, CellResult
from raygan.fidelity.verdict import truth, verdict
from raygan.metrics.bootstrap import bootstrap

METRICS = ("shortcut_mass", "shortcut_net", "lesion_auprc", "twin_shortcut", "twin_lesions", "cf_removes_shortcut")


def verdict_statistic(values: dict[str, list[float]]) -> str:
    """The per-image statistic the verdict reads: the signed net share where the cell has it, else the mass."""
    return "shortcut_net" if "shortcut_net" in values else "shortcut_mass"


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


@dataclass(frozen=True)
class Comparison:
    """raygan minus a baseline on one metric over one group of cells, paired by image."""

    world: str  # the world (or "all")
    shortcut_kind: str  # the shortcut kind (or "all")
    metric: str  # shortcut_mass, lesion_auprc, ...
    baseline: str  # gradcam or ig
    difference: float  # mean paired difference raygan - baseline
    ci95: list[float | None]  # its 95% interval
    beats: bool  # the interval lies above 0
    n: int  # paired images


def cell_rows(cell: CellResult, *, ratio: float) -> list[dict[str, Any]]:
    """One row per method of one cell (raygan's counterfactual columns on its row only)."""
    rows = []
    c = cell.config
    for method in (m for m in METHODS + ABLATIONS if m in cell.per_image):  # earlier runs lack the newer maps
        v = cell.per_image[method]
        mass, chance = _mean(v["shortcut_mass"]), _mean(v["shortcut_chance"])
        net = _mean(v[verdict_statistic(v)])
        ci = {m: bootstrap([v[m]]).as_list() for m in METRICS if m in v}
        rows.append({
            "world": c.world, "shortcut_kind": c.shortcut_kind, "seed": c.seed, "method": method,
            "n": cell.sizes["explained"], "n_shortcut": cell.sizes["explained_with_shortcut"],
            "n_lesions": cell.sizes["explained_with_lesions"],
            "reliance_shortcut": _none(cell.reliance["shortcut"]["value"]),
            "reliance_lesions": _none(cell.reliance["lesions"]["value"]),
            "shortcut_mass": _none(mass), "shortcut_chance": _none(chance), "shortcut_net_share": _none(net),
            "lesion_auprc": _none(_mean(v["lesion_auprc"])), "lesion_chance": _none(_mean(v["lesion_chance"])),
            "twin_agreement": _none(_mean(v["twin_shortcut"])), "twin_agreement_lesions": _none(_mean(v["twin_lesions"])),
            "cf_removes_shortcut": _none(_mean(v["cf_removes_shortcut"])) if "cf_removes_shortcut" in v else None,
            "verdict": verdict(net, chance, ratio=ratio), "truth": truth(cell.reliance["shortcut"]["value"]),
            "ci95": ci,
        })
    return rows


def _groups(cells: Sequence[CellResult], method: str, metric: str) -> list[list[float]]:
    return [list(cell.per_image[method][metric]) for cell in cells]


def pooled_rows(cells: Sequence[CellResult], *, ratio: float) -> list[dict[str, Any]]:
    """One row per (world, kind, method) over the seeds given: seed-level means, intervals over seeds then images."""
    rows = []
    keys = sorted({(c.config.world, c.config.shortcut_kind) for c in cells})
    for world, kind in keys:
        group = [c for c in cells if (c.config.world, c.config.shortcut_kind) == (world, kind)]
        for method in (m for m in METHODS + ABLATIONS if all(m in c.per_image for c in group)):
            def interval(metric: str, chance: str | None = None) -> Any:
                return bootstrap(_groups(group, method, metric),
                                 chance=_groups(group, method, chance) if chance else None)

            mass, auprc = interval("shortcut_mass"), interval("lesion_auprc")
            ratio_mass = interval("shortcut_mass", "shortcut_chance")
            ci = {"shortcut_mass": mass.as_list(), "lesion_auprc": auprc.as_list(),
                  "mass_over_chance": ratio_mass.as_list(), "twin_agreement": interval("twin_shortcut").as_list()}
            cf = None
            if all("cf_removes_shortcut" in c.per_image[method] for c in group):
                removal = interval("cf_removes_shortcut")
                ci["cf_removes_shortcut"] = removal.as_list()
                cf = _none(removal.value)
            key = verdict_statistic(group[0].per_image[method])
            net = interval(key)
            ci["shortcut_net_share"] = net.as_list()
            verdicts = [verdict(_mean(c.per_image[method][key]), _mean(c.per_image[method]["shortcut_chance"]),
                                ratio=ratio) for c in group]
            truths = [truth(c.reliance["shortcut"]["value"]) for c in group]
            scored = [(v, t) for v, t in zip(verdicts, truths) if t != "unscored"]
            rows.append({
                "world": world, "shortcut_kind": kind, "seed": "all", "method": method,
                "n": sum(c.sizes["explained"] for c in group), "seeds": [c.config.seed for c in group],
                "reliance_shortcut": _none(_mean([c.reliance["shortcut"]["value"] for c in group])),
                "reliance_lesions": _none(_mean([c.reliance["lesions"]["value"] for c in group])),
                "shortcut_mass": _none(mass.value),
                "shortcut_chance": _none(_mean([_mean(c.per_image[method]["shortcut_chance"]) for c in group])),
                "mass_over_chance": _none(ratio_mass.value), "shortcut_net_share": _none(net.value),
                "lesion_auprc": _none(auprc.value),
                "lesion_chance": _none(_mean([_mean(c.per_image[method]["lesion_chance"]) for c in group])),
                "twin_agreement": _none(interval("twin_shortcut").value),
                "cf_removes_shortcut": cf,
                "verdict": verdicts, "truth": truths,
                "verdict_accuracy": _none(sum(v == t for v, t in scored) / len(scored)) if scored else None,
                "ci95": ci,
            })
    return rows


def comparisons(cells: Sequence[CellResult]) -> list[Comparison]:
    """raygan - Grad-CAM and raygan - IG on shortcut mass (where the classifier relies on the shortcut)
    and on lesion AUPRC (lesion-only world), per (world, kind) and pooled."""
    out = []
    # Cells of runs from before the swap map are compared by the difference map, as they were then.
    primary = PRIMARY if all(PRIMARY in c.per_image for c in cells) else "raygan"
    keys = sorted({(c.config.world, c.config.shortcut_kind) for c in cells})
    for world, kind in keys:
        group = [c for c in cells if (c.config.world, c.config.shortcut_kind) == (world, kind)]
        metrics = ["lesion_auprc"] if world == "lesion_only" else ["shortcut_mass"]
        for metric in metrics:
            for baseline in ("gradcam", "ig"):
                diff = bootstrap(_groups(group, primary, metric), minus=_groups(group, baseline, metric))
                out.append(Comparison(world, kind, metric, baseline, diff.value, diff.as_list(),
                                      not math.isnan(diff.low) and diff.low > 0, diff.n))
    return out


__all__ = ["Comparison", "METRICS", "cell_rows", "comparisons", "pooled_rows", "verdict_statistic"]
