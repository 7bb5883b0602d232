"""The encoder on the fidelity benchmark's worlds: does amortised inversion keep the shortcut in the audit map?

    python benchmarks/encoder_fidelity.py [--seeds 1,2,3] [--cells shortcut_only:marker,mixed:marker] [--workers 2]

Each cell is a fidelity-benchmark cell (`raygan.fidelity.cell.run_cell`: phantoms, classifier and
judge, reliance by intervention, GAN, the shipped optimisation's explanations) that also trains the
preset's encoder on the cell's training phantoms (`raygan.train.local.fit_encoder`) and explains the
same test phantoms from E(x) + K steps. Both sides use the same G, C, judge and images, so every
comparison is paired image by image: the swap map's shortcut mass (issue 14's target: no worse),
its lesion AUPRC, whether the counterfactual removes the shortcut, and the one scoring path's flip
rates (explained classifier and judge) and own-z2 monotone share. Intervals: 95% bootstrap over
seeds, then images (`raygan.metrics.bootstrap`). Speed: explanation seconds per image of each side
in the same process (attributions on both sides, so the difference is the inversion).

K is the preset inversion's `encoder_steps` unless --encoder-steps says otherwise; no setting is
chosen on these cells. The cells skip the counterfactual-term ablation (`make fidelity` reports it). Cell results go to `<out>/cells/*.json` (a rerun skips finished cells);
the last line is `RESULT {json}`. Outside `make fidelity`'s budget: about 12 cell-minutes per cell
on one core of the 2-core CI machine.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source tree without installing

from raygan.fidelity.benchmark import BenchmarkConfig, run_cells  # noqa: E402
from raygan.fidelity.cell import ENCODER, PRIMARY, CellResult  # noqa: E402
from raygan.metrics.bootstrap import bootstrap  # noqa: E402

MAP_METRICS = ("shortcut_mass", "lesion_auprc", "cf_removes_shortcut", "flips")
SCORES = ("flip_rate", "judge_flip_rate", "monotone_own", "recon_mse", "p_gap")


def _interval(values: list[list[float]], minus: list[list[float]] | None = None,
              chance: list[list[float]] | None = None) -> dict[str, Any]:
    i = bootstrap(values, minus=minus, chance=chance)
    return {"value": None if math.isnan(i.value) else i.value, "ci95": i.as_list(), "n": i.n, "groups": i.groups}


def compare(results: list[CellResult]) -> dict[str, Any]:
    """Per world (world, shortcut kind): the encoder's swap map against the shipped optimisation's, paired."""
    worlds: dict[str, list[CellResult]] = {}
    for r in results:
        worlds.setdefault(f"{r.config.world}/{r.config.shortcut_kind}", []).append(r)
    out: dict[str, Any] = {}
    for name, cells in worlds.items():
        row: dict[str, Any] = {"seeds": [c.config.seed for c in cells],
                               "reliance_shortcut": [c.reliance["shortcut"]["value"] for c in cells]}
        for metric in MAP_METRICS:
            enc = [c.per_image[ENCODER][metric] for c in cells]
            shipped = [c.per_image[PRIMARY][metric] for c in cells]
            row[metric] = {"encoder": _interval(enc), "shipped": _interval(shipped),
                           "encoder_minus_shipped": _interval(enc, minus=shipped)}
        chance = [c.per_image[PRIMARY]["shortcut_chance"] for c in cells]
        row["shortcut_mass_over_chance"] = {
            "encoder": _interval([c.per_image[ENCODER]["shortcut_mass"] for c in cells], chance=chance),
            "shipped": _interval([c.per_image[PRIMARY]["shortcut_mass"] for c in cells], chance=chance)}
        row["scores"] = {side: {k: [c.scores[key][k] for c in cells] for k in SCORES}
                         for side, key in (("shipped", "raygan"), ("encoder", "raygan_encoder"))}
        row["encoder_steps"] = [c.scores["raygan_encoder"].get("encoder_steps") for c in cells]
        explained = [c.sizes["explained"] for c in cells]
        shipped_s = [c.seconds["explain"] / n for c, n in zip(cells, explained)]
        encoder_s = [c.seconds["explain_encoder"] / n for c, n in zip(cells, explained)]
        row["seconds_per_image"] = {"shipped": shipped_s, "encoder": encoder_s,
                                    "speed_ratio": [a / b for a, b in zip(shipped_s, encoder_s)]}
        row["encoder_train_seconds"] = [c.seconds["encoder_train"] for c in cells]
        diff = row["shortcut_mass"]["encoder_minus_shipped"]
        row["mass_no_worse"] = None if diff["ci95"][0] is None else diff["ci95"][0] >= -0.05 * max(
            row["shortcut_mass"]["shipped"]["value"] or 0.0, 1e-12)
        out[name] = row
    return out


def _fmt(entry: dict[str, Any]) -> str:
    lo, hi = entry["ci95"]
    f = (lambda v: "n/a" if v is None else f"{v:.3f}")
    return f"{f(entry['value'])} [{f(lo)}, {f(hi)}] (n {entry['n']})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--seeds", default="1,2,3", help="cell seeds (default: the fidelity benchmark's reported ones)")
    p.add_argument("--cells", default="shortcut_only:marker,mixed:marker", help="world:kind pairs")
    p.add_argument("--workers", type=int, default=2, help="cells at once, one torch thread each")
    p.add_argument("--encoder-epochs", type=int, default=20, help="encoder epochs on each cell's training phantoms")
    p.add_argument("--encoder-steps", type=int, default=None, help="K (default: the preset inversion's)")
    p.add_argument("--out", default="runs/encoder-fidelity", help="cell results and logs")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: tiny preset, 160 phantoms, 8 explained, one epoch of everything (~1 min)")
    args = p.parse_args(argv)
    sizes: dict[str, Any] = {}
    if args.quick:
        sizes = {"preset": "tiny", "phantoms": 160, "explain": 8, "classifier_epochs": 1, "gan_epochs": 1}
        args.encoder_epochs = 1
    cells = tuple(tuple(c.split(":")) for c in args.cells.split(","))
    config = BenchmarkConfig(out=args.out, docs=None, seeds=tuple(int(s) for s in args.seeds.split(",")),
                             cells=cells, workers=args.workers, encoder_epochs=args.encoder_epochs,  # type: ignore[arg-type]
                             encoder_steps=args.encoder_steps, ablation=False, **sizes)
    results, reused = run_cells(config)
    table = compare(results)
    for name, row in table.items():
        print(f"\n{name}, seeds {row['seeds']} (K = {row['encoder_steps']}), reliance on the shortcut "
              f"{', '.join(f'{v:.2f}' for v in row['reliance_shortcut'])}:")
        for metric in MAP_METRICS:
            m = row[metric]
            print(f"  {metric:>20s}: encoder {_fmt(m['encoder'])}, shipped {_fmt(m['shipped'])}, "
                  f"difference {_fmt(m['encoder_minus_shipped'])}")
        print(f"  mass over chance: encoder {_fmt(row['shortcut_mass_over_chance']['encoder'])}, shipped "
              f"{_fmt(row['shortcut_mass_over_chance']['shipped'])}")
        for side in ("shipped", "encoder"):
            s = row["scores"][side]
            print(f"  {side:>8s}: " + "; ".join(f"{k} {', '.join('n/a' if v is None or v != v else f'{v:.3f}' for v in s[k])}"
                                               for k in SCORES))
        print(f"  seconds per image: shipped {', '.join(f'{v:.2f}' for v in row['seconds_per_image']['shipped'])}; "
              f"encoder {', '.join(f'{v:.3f}' for v in row['seconds_per_image']['encoder'])}; speed ratio "
              f"{', '.join(f'{v:.1f}x' for v in row['seconds_per_image']['speed_ratio'])}")
        print(f"  shortcut mass no worse (the interval's lower end >= -5% of shipped): {row['mass_no_worse']}")
    print("RESULT " + json.dumps({"benchmark": "encoder_fidelity", "reused_cells": reused, "worlds": table,
                                  "encoder_epochs": args.encoder_epochs}, allow_nan=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
