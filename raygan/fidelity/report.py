"""The fidelity document as Markdown: pooled table with intervals, comparisons, targets, validity, cells."""

from __future__ import annotations

from typing import Any

LABEL = {"raygan": "raygan difference map", "raygan_path": "raygan traversal attribution",
         "raygan_swap": "raygan counterfactual swap", "gradcam": "Grad-CAM",
         "ig": "Integrated Gradients", "raygan_no_cf": "raygan difference map, counterfactual term off",
         "raygan_swap_no_cf": "raygan counterfactual swap, counterfactual term off"}


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(row: dict[str, Any], key: str, digits: int = 3) -> str:
    low, high = (row.get("ci95", {}).get(key) or [None, None])
    return f"{_f(row.get(key), digits)} [{_f(low, digits)}, {_f(high, digits)}]"


def _head(*columns: str) -> list[str]:
    """A Markdown table's header and separator rows for `columns`."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _net(row: dict[str, Any]) -> str:
    """The net share the verdict read, with its interval (rows of runs before 2026-12-07 have none)."""
    return "-" if row.get("shortcut_net_share") is None else _ci(row, "shortcut_net_share")


def _pooled(document: dict[str, Any]) -> list[str]:
    lines = _head("world", "shortcut", "method", "reliance on shortcut / lesions", "shortcut mass [95% CI]", "chance",
                  "mass / chance", "net share (verdict) [95% CI]", "lesion AUPRC [95% CI]", "chance", "twin agreement",
                  "counterfactual removes shortcut", "verdicts right")
    for r in document["pooled"]:
        right = [v == t for v, t in zip(r["verdict"], r["truth"]) if t != "unscored"]
        removal = "-" if r.get("cf_removes_shortcut") is None else _ci(r, "cf_removes_shortcut", 2)
        lines.append(
            f"| {r['world']} | {r['shortcut_kind']} | {LABEL[r['method']]} | {_f(r['reliance_shortcut'], 2)} / "
            f"{_f(r['reliance_lesions'], 2)} | {_ci(r, 'shortcut_mass')} | {_f(r['shortcut_chance'], 4)} | "
            f"{_ci(r, 'mass_over_chance', 1)} | {_net(r)} | {_ci(r, 'lesion_auprc')} | {_f(r['lesion_chance'], 3)} | "
            f"{_f(r['twin_agreement'], 2)} | {removal} | {sum(right)} of {len(right)} |")
    return lines


def _validity(document: dict[str, Any]) -> list[str]:
    lines = _head("world", "shortcut", "seed", "class consistency C / judge", "flip rate C (cf term on / off)",
                  "flip rate judge (on / off)", "monotone own z2 (n)", "monotone fallback (n)",
                  "FD cf -> negatives (floor, gap; n)", "recon MSE", "steps")
    for c in document["cells"]:
        on, off = c["scores"].get("raygan", {}), c["scores"].get("raygan_no_cf", {})
        real = on.get("realism") or {}
        lines.append(
            f"| {c['world']} | {c['shortcut_kind']} | {c['seed']} | {_f(c['consistency']['classifier'], 2)} / "
            f"{_f(c['consistency']['judge'], 2)} | {_f(on.get('flip_rate'), 2)} / {_f(off.get('flip_rate'), 2)} "
            f"({on.get('flip_eligible')}) | {_f(on.get('judge_flip_rate'), 2)} / {_f(off.get('judge_flip_rate'), 2)} "
            f"({on.get('judge_flip_eligible')}) | {_f(on.get('monotone_own'), 2)} ({on.get('own_count')}) | "
            f"{_f(on.get('monotone_fallback'), 2)} ({on.get('fallback_count')}) | "
            f"{_f(real.get('counterfactual_to_negative'), 1)} ({_f(real.get('floor'), 1)}, {_f(real.get('gap'), 1)}; "
            f"{real.get('n')}) | {_f(on.get('recon_mse'), 3)} | {_f(on.get('mean_steps'), 0)} |")
    return lines


DEFINITIONS = """\
raygan is for auditing what a classifier responds to, shortcuts included. This benchmark measures,
on synthetic chest X-ray phantoms where the truth is known by construction, whether an explanation
points at the cue the classifier really relies on, measured by intervention, not assumed.

**Worlds** (y = label): *lesion-only*: lesions exactly when y = 1, the shortcut present with
probability 0.5 whatever y is (a distractor, so "does not rely" is a real verdict); *shortcut-only*:
the shortcut with probability 0.95 when y = 1 and 0.05 when y = 0, lesions with probability 0.5;
*mixed*: lesions exactly when y = 1, the shortcut 0.8 / 0.2. Shortcut kinds: a corner **marker**
glyph (L, R or a square, random corner) and a burned-in text **stamp** (AP, PORT, SUP, ICU at a random
place along the top or bottom edge). Both keep off the lungs; the stamp is the kind no setting was
chosen on.

**Twins**: every phantom is rendered with its twins without the shortcut, without the lesions and
without both; they share anatomy, exposure and noise and differ from the phantom only where the
removed cue acts (tested per cue in tests/data/test_phantoms.py).

**Definitions**
- reliance on cue c = mean of p(x) - p(twin without c) over the test phantoms that carry c;
- mass on c = the map's share of mass on c's pixels (phantoms carrying c), beside its chance (c's
  area share); lesion AUPRC = average precision of map-ranked pixels against the lesion mask,
  beside its chance (the mask's area share);
- twin agreement = per-image Spearman rho between the map and |x - twin without the shortcut|;
- the counterfactual removes c when, on c's footprint, mean |G(z1, 0) - twin without c| is below
  mean |G(z1, 0) - x|, counted over the images it flips; this is met trivially by a generator that
  never draws c, so cell results also record whether the reconstruction G(z1, z2) drew it;
- net share on c = the sum of the method's *signed* attribution on c's pixels over the sum of its
  magnitudes (the swap map's window drops, IG's and the traversal attribution's contributions to the
  log-odds, negative where a pixel speaks against the call); Grad-CAM (ReLU'd by definition) and the
  difference map (a magnitude) have no sign, and their net share is their mass;
- verdict truth: "relies" at measured reliance >= 0.3, "does not" at <= 0.05, unscored in between;
  the rule, the same for every map: "relies" when the odds of the map's mean net share on the shortcut
  are at least R times the odds of its area share (R fixed on development seeds 0 and 10, frozen in
  `raygan.fidelity.verdict.RATIO`, then reported on seeds 1, 2, 3 and on the stamp). It reads the
  signed form because reliance is a signed mean: a cue that raises some calls and lowers others is
  not relied on, and a map cut to its positive part counts only the first half (runs before
  2026-12-07 read the mass of the non-negative maps);
- intervals: 95% bootstrap, resampling seeds, then images within them; "beats" = the interval of
  the paired difference (raygan's audit map, the counterfactual swap map where a run has it, minus the
  baseline, image by image) excludes 0; the targets and verdict accuracy are judged on that map too. Grad-CAM and IG
  have no counterfactual: that column is raygan's alone.

**Per cell**: train the explained classifier (small_cnn) and an independent judge (max_cnn,
another seed, same training split); measure reliance on each cue by twins over the whole test
split; train the GAN against the frozen classifier; explain a test sample of which half carries the
shortcut, once with raygan's inversion and once with its counterfactual term off; score raygan's
difference map, raygan's traversal attribution, raygan's counterfactual swap map (where runs have it),
Grad-CAM and Integrated Gradients.
"""


def to_markdown(document: dict[str, Any], *, notes: str | None = None) -> str:
    """The whole document as Markdown; `notes` (what was tried and what it gave) goes at the end."""
    cfg = document["config"]
    lines = [
        f"# Fidelity benchmark{' (development run)' if cfg.get('quick') else ''}",
        "",
        DEFINITIONS,
        "## This run",
        "",
        f"- date {document['date']}; {document['machine']}; {cfg['workers']} cells at a time; "
        f"{document['seconds'] / 60:.1f} min wall"
        + (f" ({document['reused_cells']} cells reused from an earlier run)" if document.get("reused_cells") else "")
        + (f"; {document['cell_minutes']:.0f} cell-minutes in all" if document.get("cell_minutes") else ""),
        f"- seeds {list(cfg['seeds'])}; cells {[f'{w}/{k}' for w, k in cfg['cells']]}; preset {cfg['preset']}; "
        f"{cfg['phantoms']} phantoms per cell (80/10/10), {cfg['explain']} test phantoms explained per cell "
        f"(half with the shortcut where possible)",
        f"- verdict rule: 'relies' when the odds of the map's mean net share on the shortcut (its mass where the "
        f"map has no sign) are >= {document['verdict_ratio']} x the odds of its area share (frozen before the run); "
        "truth: measured reliance >= 0.3 relies, <= 0.05 does not, else unscored",
    ]
    if "chosen_ratio" in document:
        lines.append(f"- the ratio these development cells would choose: {document['chosen_ratio']}")
    lines += ["", "## Pooled over seeds (95% bootstrap intervals: seeds, then images)", "", *_pooled(document)]
    lines += ["", "## raygan against the baselines (paired difference, raygan - baseline)", "",
              *_head("world", "shortcut", "metric", "baseline", "difference [95% CI]", "beats", "n")]
    for c in document["comparisons"]:
        low, high = c["ci95"]
        lines.append(f"| {c['world']} | {c['shortcut_kind']} | {c['metric']} | {LABEL[c['baseline']]} | "
                     f"{_f(c['difference'])} [{_f(low)}, {_f(high)}] | {'yes' if c['beats'] else 'no'} | {c['n']} |")
    lines += ["", "## Targets (issue 10)", "", *_head("target", "value", "goal", "met")]
    for t in document["targets"]:
        value = t["value"]
        shown = " vs ".join(_f(v) for v in value) if isinstance(value, list) else _f(value)
        lines.append(f"| {t['target']} | {shown} | {t['goal']} | {'yes' if t['met'] else 'NO'} |")
    lines += ["", "## raygan's validity, monotonicity and realism per cell", "",
              "Flip rates are over the images the classifier (or the judge) calls positive; 'off' is the same "
              "inversion with the counterfactual term switched off (the term optimises the explained classifier's "
              "flip rate). The judge is an independently trained max_cnn (another architecture and seed, same split).", "", *_validity(document)]
    lines += ["", "## Per cell", "",
              *_head("world", "shortcut", "seed", "method", "reliance shortcut / lesions", "shortcut mass (chance)",
                     "net share", "lesion AUPRC (chance)", "twin agreement", "cf removes shortcut", "verdict", "truth")]
    for r in document["rows"]:
        lines.append(
            f"| {r['world']} | {r['shortcut_kind']} | {r['seed']} | {LABEL[r['method']]} | "
            f"{_f(r['reliance_shortcut'], 2)} / {_f(r['reliance_lesions'], 2)} | {_f(r['shortcut_mass'])} "
            f"({_f(r['shortcut_chance'], 4)}) | {_f(r.get('shortcut_net_share'))} | "
            f"{_f(r['lesion_auprc'])} ({_f(r['lesion_chance'])}) | "
            f"{_f(r['twin_agreement'], 2)} | {_f(r['cf_removes_shortcut'], 2)} | {r['verdict']} | {r['truth']} |")
    lines += ["", "## Sizes and timings per cell", "", *_head("cell", "sizes", "epochs", "seconds")]
    for c in document["cells"]:
        secs = ", ".join(f"{k} {v:.0f}" for k, v in c["seconds"].items())
        lines.append(f"| {c['world']}/{c['shortcut_kind']}/seed {c['seed']} | {c['sizes']} | {c['epochs']} | {secs} |")
    if notes:
        lines += ["", notes.rstrip()]
    return "\n".join(lines) + "\n"


__all__ = ["to_markdown"]
