"""Metrics: one module per metric, each a pure function over tensors returning a frozen result.

`METRICS` maps a metric's name to its function, result type, scope and a one-line description;
`raygan.evaluate` computes them over a bundle and data, and reports iterate over the registry
for their row order and wording. Keys in an evaluation report are "<name>.<field>" for the
generator and explanation scopes and "<name>.<map>.<field>" for the map scope (map in
"diff", "gradcam", "ig").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from raygan.metrics.class_consistency import ClassConsistency, class_consistency
from raygan.metrics.faithfulness import Faithfulness, deletion_insertion
from raygan.metrics.flip_rate import FlipRate, flip_rate
from raygan.metrics.frechet import FrechetDistance, classifier_frechet, frechet_distance
from raygan.metrics.localisation import Localisation, localisation
from raygan.metrics.mass import MapMass, border_mass, shortcut_mass, outside_lung_mass
from raygan.metrics.monotone import Monotone, monotone_share
from raygan.metrics.reconstruction import Proximity, Reconstruction, proximity, reconstruction_quality
from raygan.metrics.sanity import Sanity, model_randomisation

Scope = Literal["generator", "explanation", "map"]


@dataclass(frozen=True)
class Metric:
    """One registered metric."""

    name: str  # registry key and the prefix of its keys in an evaluation report
    function: Callable[..., Any]  # the pure function that computes it
    result: type  # the frozen dataclass the function returns
    scope: Scope  # "generator": G and C alone; "explanation": per-image explanations; "map": per attribution map
    description: str  # one line for reports: what it measures and which direction is better


def _metric(
    name: str, function: Callable[..., Any], result: type, scope: Scope, description: str
) -> tuple[str, Metric]:
    return name, Metric(name, function, result, scope, description)


METRICS: dict[str, Metric] = dict([
    _metric("class_consistency", class_consistency, ClassConsistency, "generator",
            "share of generated images the classifier labels as the class fed to G (paper: 91.15%; higher is better)"),
    _metric("frechet", classifier_frechet, FrechetDistance, "generator",
            "Frechet distance of real vs generated images in the classifier's penultimate features (lower is better)"),
    _metric("flip_rate", flip_rate, FlipRate, "explanation",
            "share of images called positive (p > 0.5) whose counterfactual G(z1, 0) is called negative "
            "(higher is better)"),
    _metric("monotone", monotone_share, Monotone, "explanation",
            "share of traversals whose p never drops by more than 1e-3, and mean Spearman rho of p vs alpha "
            "(higher is better)"),
    _metric("reconstruction", reconstruction_quality, Reconstruction, "explanation",
            "inversion quality: MSE and SSIM of G(z*) vs x, and |p_C(G(z*)) - p_C(x)| (low MSE and gap, high SSIM)"),
    _metric("proximity", proximity, Proximity, "explanation",
            "mean |G(z1, 0) - G(z1, z2)|: how much the counterfactual repaints the reconstruction"),
    _metric("localisation", localisation, Localisation, "map",
            "phantom lesions: pointing game and AUPRC of map-ranked pixels vs the lesion mask; "
            "chance = mask fraction (higher is better)"),
    _metric("shortcut_mass", shortcut_mass, MapMass, "map",
            "share of map mass on the planted shortcut, marker or stamp (high = the map points at the shortcut)"),
    _metric("border_mass", border_mass, MapMass, "map",
            "share of map mass near the image border, where markers and collimation edges sit (high = suspicious)"),
    _metric("outside_lung_mass", outside_lung_mass, MapMass, "map",
            "share of map mass outside the lung fields (high = evidence outside the anatomy of interest)"),
    _metric("faithfulness", deletion_insertion, Faithfulness, "map",
            "deletion (lower is better) and insertion (higher is better) areas of p(positive) "
            "on images called positive"),
    _metric("sanity", model_randomisation, Sanity, "map",
            "model-randomisation check: similarity of maps before and after re-initialising C (lower is better)"),
])


__all__ = [
    "METRICS", "ClassConsistency", "Faithfulness", "FlipRate", "FrechetDistance", "Localisation", "MapMass", "Metric",
    "Monotone", "Proximity", "Reconstruction", "Sanity", "Scope", "border_mass", "class_consistency",
    "classifier_frechet", "deletion_insertion", "flip_rate", "frechet_distance", "localisation", "shortcut_mass",
    "model_randomisation", "monotone_share", "outside_lung_mass", "proximity", "reconstruction_quality",
]
