"""Charts for the reports: probability-vs-alpha curves and histograms, as PNG bytes from matplotlib.

matplotlib is imported inside the functions and used through `matplotlib.figure.Figure`
directly (no pyplot, no global backend), so charts are safe in threads and never open windows.
PNGs are drawn at DPI 160 and shown at DISPLAY_SCALE in the HTML, which keeps them sharp.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DPI = 160  # pixels per inch of the PNG
DISPLAY_SCALE = 0.6  # the HTML shows charts at 96 px per inch (CSS pixels), sharp on high-DPI screens
LABEL_COLOURS = {0: "#2166ac", 1: "#b2182b"}  # negative blue, positive red (same as the figures)
OTHER_COLOURS = ("#1b7837", "#762a83", "#e08214", "#4d4d4d")  # further groups (unlabelled, other labels)
THRESHOLD_STYLE = {"color": "#8c959f", "linestyle": (0, (4, 3)), "linewidth": 1.0}


def _figure(width_in: float, height_in: float, *, ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(True, color="#eaeef2", linewidth=0.8)
        ax.set_axisbelow(True)
        ax.tick_params(labelsize=9, colors="#3d444d")
        for spine in ax.spines.values():
            spine.set_color("#8c959f")
    return fig, axes


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def group_colour(key: Any, index: int) -> str:
    """Blue for label 0, red for label 1, then a fixed cycle for anything else."""
    if isinstance(key, int) and key in LABEL_COLOURS:
        return LABEL_COLOURS[key]
    return OTHER_COLOURS[index % len(OTHER_COLOURS)]


RECONSTRUCTION_END = "1 = reconstruction"
FALLBACK_END = "1 = end of the mean positive direction, not the reconstruction"


def _probability_axes(ax: Any, alphas: Sequence[float], *, end: str = RECONSTRUCTION_END) -> None:
    hi = max([1.0, *[float(a) for a in alphas]])
    if hi > 1.0:  # past alpha = 1 the traversal extrapolates beyond the reconstruction
        ax.axvspan(1.0, hi, color="#f6f8fa", zorder=0)
    ax.axhline(0.5, **THRESHOLD_STYLE)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(min(0.0, *[float(a) for a in alphas]), hi)
    ax.set_xlabel(f"α  (0 = counterfactual, {end})", fontsize=9.5, color="#3d444d")
    ax.set_ylabel("p(positive)", fontsize=9.5, color="#3d444d")


def probability_curve_png(alphas: Sequence[float], probs: Sequence[float], *, crossing_alpha: float | None = None,
                          colour: str = "#b2182b", used_fallback: bool = False) -> bytes:
    """One traversal: p(positive) against alpha, the 0.5 threshold, and where it is crossed. A fallback
    traversal (`used_fallback`: it walked the mean positive direction) says its alpha = 1 is no reconstruction."""
    assert len(alphas) == len(probs), f"{len(alphas)} alphas but {len(probs)} probabilities"
    fig, (ax,) = _figure(4.0, 2.5)
    _probability_axes(ax, alphas, end=FALLBACK_END if used_fallback else RECONSTRUCTION_END)
    ax.plot(alphas, probs, color=colour, linewidth=1.8, marker="o", markersize=3.5)
    if crossing_alpha is not None and math.isfinite(crossing_alpha):
        ax.axvline(crossing_alpha, color=colour, linewidth=0.8, alpha=0.5)
        ax.annotate(f"α={crossing_alpha:.2f}", (crossing_alpha, 0.5), xytext=(4, -12), textcoords="offset points",
                    fontsize=8.5, color=colour)
    return _png(fig)


def probability_curves_png(curves: Sequence[tuple[str, Sequence[float], Sequence[float]]]) -> bytes:
    """Every traversal (name, alphas, probs) on one chart; a legend when there are few enough to tell apart."""
    fig, (ax,) = _figure(7.0, 3.4)
    all_alphas = [float(a) for _, alphas, _ in curves for a in alphas] or [0.0, 1.0]
    _probability_axes(ax, all_alphas)
    from matplotlib import colormaps

    palette = colormaps["tab10"] if len(curves) <= 10 else colormaps["viridis"]
    for i, (name, alphas, probs) in enumerate(curves):
        colour = palette(i if len(curves) <= 10 else i / max(1, len(curves) - 1))
        ax.plot(alphas, probs, color=colour, linewidth=1.4 if len(curves) <= 10 else 0.8,
                alpha=0.95 if len(curves) <= 10 else 0.5, label=name)
    if 0 < len(curves) <= 10:
        ax.legend(fontsize=8.5, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(fig)


def curve_bands_png(groups: Mapping[Any, Sequence[tuple[Sequence[float], Sequence[float]]]]) -> bytes:
    """Median p(positive) against alpha per group with the 25-75 % band; rows on other alpha grids are skipped."""
    fig, (ax,) = _figure(6.0, 3.0)
    grids = [tuple(np.round(a, 6)) for curves in groups.values() for a, _ in curves]
    common = max(set(grids), key=grids.count) if grids else (0.0, 1.0)  # the grid most rows share
    _probability_axes(ax, common)
    for i, (key, curves) in enumerate(groups.items()):
        rows = [np.asarray(p, dtype=np.float64) for a, p in curves if tuple(np.round(a, 6)) == common]
        if not rows:
            continue
        stack = np.stack(rows)  # [N, F]
        colour = group_colour(key, i)
        lo, mid, hi = np.nanpercentile(stack, [25, 50, 75], axis=0)
        ax.fill_between(common, lo, hi, color=colour, alpha=0.15, linewidth=0)
        ax.plot(common, mid, color=colour, linewidth=1.8, label=f"{_group_name(key)} (n={len(rows)})")
    ax.legend(fontsize=9, frameon=False, loc="upper left")
    return _png(fig)


def _group_name(key: Any) -> str:
    return "all" if key is None else f"label {key}"


def histograms_png(panels: Sequence[tuple[str, Mapping[Any, Sequence[float]], tuple[float, float]]],
                   *, bins: int = 20) -> bytes:
    """Side-by-side histograms, one panel per (title, {group: values}, range); one legend on top for all."""
    fig, axes = _figure(3.1 * len(panels), 2.8, ncols=len(panels))
    for ax, (title, groups, (lo, hi)) in zip(axes, panels, strict=True):
        edges = np.linspace(lo, hi, bins + 1)
        counts = []
        for i, (key, values) in enumerate(groups.items()):
            vals = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
            colour = group_colour(key, i)
            ax.hist(np.clip(vals, lo, hi), bins=edges, color=colour, alpha=0.18)
            ax.hist(np.clip(vals, lo, hi), bins=edges, color=colour, histtype="step", linewidth=1.4,
                    label=_group_name(key))
            counts.append(str(len(vals)))
        ax.set_title(f"{title}  (n = {' / '.join(counts)})", fontsize=10, color="#1f2328", loc="left")
        ax.set_xlim(lo, hi)
        ax.set_ylabel("images", fontsize=9.5, color="#3d444d")
    if panels and panels[0][1]:  # the groups are the same in every panel: one legend says it once
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=len(panels[0][1]),
                   fontsize=9, frameon=False)
    return _png(fig)
