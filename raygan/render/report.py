"""The explanation report: one self-contained HTML page for a handful of explained images.

Per image: the paper's Figure 2 and its probability-vs-alpha curve; for the set: the metrics
table, an overview table and every traversal curve on one chart. Pure: explanations in, HTML out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from raygan.render import charts
from raygan.render import html as H
from raygan.render.figure import MAP_TITLES, explanation_figure
from raygan.render.images import png_bytes


def _finite(value: Any) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def _flipped(expl: Any) -> bool:
    """The flip of DESIGN.md's flip rate: called positive, and the counterfactual is called negative."""
    return float(expl.p_input) > 0.5 and float(expl.p_counterfactual) < 0.5


def _pills(expl: Any) -> str:
    monotone = ('<span class="pill good">monotone</span>' if expl.monotone
                else '<span class="pill bad">not monotone</span>')
    crossing = _finite(expl.crossing_alpha)
    cross = (f'<span class="pill">reaches 0.5 at α={crossing:.2f}</span>' if crossing is not None
             else '<span class="pill bad">never reaches 0.5</span>')
    flip = '<span class="pill good">counterfactual flips the decision</span>' if _flipped(expl) else ""
    fallback = ('<span class="pill bad">fallback traversal: walked the mean positive direction, so its α = 1 '
                'end is not the reconstruction</span>' if getattr(expl, "used_fallback", False) else "")
    stats = (f'<span class="note">Spearman ρ={float(expl.spearman):.2f} · reconstruction MSE '
             f"{float(expl.recon_mse):.4f}, SSIM {float(expl.recon_ssim):.3f}</span>")
    return f"<p>{monotone}{cross}{flip}{fallback}{stats}</p>"


def _overview(explanations: Sequence[Any]) -> str:
    rows = [
        [
            f'<a href="#img-{i}" class="mono">{H.esc(e.image_id)}</a>',
            H.p_cell(float(e.p_input)), H.p_cell(float(e.p_reconstruction)), H.p_cell(float(e.p_counterfactual)),
            H.fmt(bool(e.monotone)), H.fmt(float(e.spearman), digits=2), H.fmt(_finite(e.crossing_alpha), digits=2),
            H.fmt(float(e.recon_mse), digits=4), H.fmt(float(e.recon_ssim), digits=3),
        ]
        for i, e in enumerate(explanations)
    ]
    headers = ["image", "p(input)", "p(reconstruction)", "p(counterfactual)", "monotone", "Spearman ρ",
               "crossing α", "recon MSE", "recon SSIM"]
    return H.table(headers, rows, numeric=range(1, 9))


def _metrics_table(metrics: Mapping[str, float]) -> str:
    """Every value with what it means and which direction is better (raygan.metrics.glossary), the key small."""
    from raygan.metrics.glossary import describe

    if not metrics:
        return '<p class="note">No metrics were computed for this run.</p>'
    rows = []
    for name, value in metrics.items():
        gloss = describe(name)
        rows.append([f'{H.esc(gloss.label)}<br><span class="note mono">{H.esc(name)}</span>',
                     H.fmt(_finite(value), digits=4), H.esc(gloss.better_text), H.esc(gloss.meaning)])
    return H.table(["metric", "value", "better", "meaning"], rows, numeric=[1])


def _image_section(index: int, expl: Any) -> str:
    alphas = [float(a) for a in expl.traversal_alphas]
    probs = [float(p) for p in expl.traversal_probs]
    fig = png_bytes(explanation_figure(expl, header=False))  # the HTML heading says the same
    curve = charts.probability_curve_png(alphas, probs, crossing_alpha=_finite(expl.crossing_alpha),
                                         used_fallback=bool(getattr(expl, "used_fallback", False)))
    return (
        f'<section class="image" id="img-{index}"><h3 class="mono">{H.esc(expl.image_id)}</h3>{_pills(expl)}'
        + '<div class="row">'
        + H.figure(fig, alt=f"Figure 2 for {expl.image_id}",
                   caption="(a) reconstruction and counterfactual, (b) latent traversal, (c) difference map vs. "
                           "Grad-CAM and Integrated Gradients; p = classifier p(positive).")
        + H.figure(curve, alt=f"p(positive) against alpha for {expl.image_id}", scale=charts.DISPLAY_SCALE,
                   caption="Classifier p(positive) along the traversal; dashed: the 0.5 decision threshold.")
        + "</div></section>"
    )


def _gate(explanations: Sequence[Any], quality: Any) -> str:
    """The target class, the bundle's quality gate (numbers when known) and its warning, and skipped maps."""
    out = ""
    targets = sorted({str(getattr(e, "target_class", "")) for e in explanations} - {""})
    if targets:
        out += f'<p class="note">Explained class: <b>{H.esc(", ".join(targets))}</b> (p = p(target class)).</p>'
    if quality is not None:
        out += f'<p class="note">Quality gate: {H.esc(quality.describe())}</p>'
    warnings = {w for w in (getattr(e, "warning", None) for e in explanations) if w}
    if quality is not None and quality.warning:
        warnings.add(quality.warning)
    out += "".join(f'<div class="warning">Warning: {H.esc(w)}</div>' for w in sorted(warnings))
    skipped = {f"{k}: {v}" for e in explanations for k, v in getattr(e, "maps_skipped", {}).items()}
    if skipped:
        out += f'<p class="note">Maps not available for this classifier: {H.esc("; ".join(sorted(skipped)))}</p>'
    return out


def audit_section(audit: Sequence[Any]) -> str:
    """The shortcut audit (`raygan.fidelity.audit.RegionAudit`s) as an HTML table, or why there is none."""
    if not audit:
        return ('<p class="note">No shortcut verdict can be given: it needs the classifier and the input images '
                "(to measure reliance by intervention) and a region to test (a *_mask column or the border band)."
                "</p>")
    names = list(audit[0].maps)
    rows = []
    for a in audit:
        cells = [H.esc(a.region), H.fmt(_finite(a.reliance.value), digits=3) + f" ({a.reliance.count})",
                 H.esc(a.truth)]
        for name in names:
            v = a.maps[name]
            mark = "" if v.agrees is None else (" ✓" if v.agrees else " ✗")
            net = "" if getattr(v, "net", None) is None else f" (net {H.fmt(_finite(v.net), digits=3)})"
            cells.append(f"{H.esc(v.verdict)}{mark} · {H.fmt(_finite(v.mass), digits=3)}{net}")
        rows.append(cells)
    note = ('<p class="note">Reliance: mean drop of p(positive) when the region of each positive call is replaced by '
            "the same region of negative images (n = positive calls carrying the region). Truth: relies at >= 0.3, "
            f"does not at <= 0.05. A map says relies when the odds of its share on the region are >= {audit[0].ratio:g} x "
            "the region's area odds; the share is the net share of the signed map (net) where the map has a sign, "
            "else the mass; ✓ / ✗: the map agrees with the measured truth.</p>")
    return H.table(["region", "reliance (n)", "truth", *(MAP_TITLES.get(n, n) for n in names)], rows) + note


def explanation_report(explanations: Sequence[Any], metrics: Mapping[str, float], *,
                       title: str = "raygan explanations", audit: Sequence[Any] | None = None,
                       quality: Any = None) -> str:
    """One self-contained HTML page (inline CSS and base64 PNGs, no external assets) for these explanations.

    `quality` (a `raygan.quality.Quality`) adds the bundle's quality gate; each explanation's own
    warning and skipped maps are shown either way.
    """
    explanations = list(explanations)
    n = len(explanations)
    monotone = sum(bool(e.monotone) for e in explanations)
    called_positive = sum(float(e.p_input) > 0.5 for e in explanations)
    flipped = sum(_flipped(e) for e in explanations)
    summary = H.cards([
        (str(n), "images explained"),
        (f"{monotone}/{n}", "monotone traversals"),
        (f"{flipped}/{called_positive}", "positive calls flipped by the counterfactual"),
    ])
    curves = [(str(e.image_id), [float(a) for a in e.traversal_alphas], [float(p) for p in e.traversal_probs])
              for e in explanations]
    body = [
        "<h2>Summary</h2>", _gate(explanations, quality), summary,
        '<div class="row"><div><h3>Metrics</h3>', _metrics_table(metrics), "</div>",
        "<div><h3>All traversals</h3>",
        H.figure(charts.probability_curves_png(curves), alt="p(positive) against alpha for every image",
                 scale=charts.DISPLAY_SCALE,
                 caption="Each line is one image's traversal from its counterfactual (α = 0) to its "
                         "reconstruction (α = 1); a fallback traversal (marked per image below) walks the mean "
                         "positive direction instead, and its α = 1 is not the reconstruction."),
        "</div></div>",
        *(["<h2>Shortcut audit: what the classifier relies on, and which map says so</h2>", audit_section(audit)]
          if audit is not None else []),
        "<h2>Images</h2>", _overview(explanations) if explanations else '<p class="note">No images.</p>',
        *(_image_section(i, e) for i, e in enumerate(explanations)),
    ]
    return H.page(title, "".join(body), subtitle=f"{n} image{'s' if n != 1 else ''} · latent traversal explanations")
