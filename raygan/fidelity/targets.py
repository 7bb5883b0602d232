"""Issue 10's targets, checked on the fidelity rows: each one met or missed, and by how much.

Per scored cell (one world, kind and seed) for raygan's audit map (`cell.PRIMARY`, the counterfactual
swap map; the difference map for runs that predate it): where the measured reliance on the
shortcut is >= 0.3, shortcut mass >= 0.30 in the shortcut-only world and >= 0.10 in the mixed
world, and the counterfactual removes the shortcut in >= 80% of the images it flips; in the
lesion-only world, lesion AUPRC >= 10x its chance; the verdict right in every scored cell. Pooled:
raygan beats Grad-CAM and IG (paired 95% interval above 0) on shortcut mass, lesion AUPRC, and
verdict accuracy (over the scored cells: raygan's accuracy above each baseline's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from raygan.fidelity.cell import PRIMARY
from raygan.fidelity.verdict import RELIES

MASS_TARGET = {"shortcut_only": 0.30, "mixed": 0.10}
REMOVAL_TARGET = 0.80
AUPRC_OVER_CHANCE = 10.0


def _target(name: str, value: Any, goal: str, met: bool | None) -> dict[str, Any]:
    return {"target": name, "value": value, "goal": goal, "met": met}


def check_targets(rows: Sequence[dict[str, Any]], comparisons: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per target and cell: {target, value, goal, met} (met None: not applicable in that cell)."""
    out = []
    primary = PRIMARY if any(r["method"] == PRIMARY for r in rows) else "raygan"  # older runs: the difference map
    cells = [r for r in rows if r["method"] == primary and r["seed"] != "all"]
    for r in cells:
        where = f"{r['world']}/{r['shortcut_kind']}/seed {r['seed']}"
        reliance = r["reliance_shortcut"]
        if r["world"] in MASS_TARGET and reliance is not None and reliance >= RELIES:
            goal = MASS_TARGET[r["world"]]
            mass = r["shortcut_mass"]
            out.append(_target(f"shortcut mass, {where}", mass, f">= {goal}", mass is not None and mass >= goal))
            removal = r["cf_removes_shortcut"]
            out.append(_target(f"counterfactual removes the shortcut, {where}", removal, f">= {REMOVAL_TARGET}",
                               removal is not None and removal >= REMOVAL_TARGET))
        if r["world"] == "lesion_only":
            auprc, chance = r["lesion_auprc"], r["lesion_chance"]
            ratio = auprc / chance if auprc is not None and chance else None
            out.append(_target(f"lesion AUPRC over chance, {where}", ratio, f">= {AUPRC_OVER_CHANCE}",
                               ratio is not None and ratio >= AUPRC_OVER_CHANCE))
        if r["truth"] != "unscored":
            out.append(_target(f"verdict, {where}", r["verdict"], r["truth"], r["verdict"] == r["truth"]))
    for c in comparisons:
        out.append(_target(f"raygan beats {c['baseline']} on {c['metric']}, {c['world']}/{c['shortcut_kind']}",
                           c["difference"], "paired 95% interval above 0", c["beats"]))
    scored = [r for r in rows if r["seed"] != "all" and r["truth"] != "unscored"]
    accuracy = {m: [r["verdict"] == r["truth"] for r in scored if r["method"] == m] for m in (primary, "gradcam", "ig")}
    if accuracy[primary]:
        mine = sum(accuracy[primary]) / len(accuracy[primary])
        for baseline in ("gradcam", "ig"):
            theirs = sum(accuracy[baseline]) / len(accuracy[baseline])
            out.append(_target(f"verdict accuracy above {baseline} ({len(accuracy[primary])} scored cells)",
                               [mine, theirs], "raygan > baseline", mine > theirs))
    return out


__all__ = ["AUPRC_OVER_CHANCE", "MASS_TARGET", "REMOVAL_TARGET", "check_targets"]
