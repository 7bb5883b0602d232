"""What each number in an evaluation report means, and which direction is better.

Report keys are "<metric>.<field>" (generator and explanation metrics) or
"<metric>.<map>.<field>" (per attribution map: diff, gradcam, ig); `describe(key)` answers for
either form. Directions: "higher" or "lower" is better, "chance" (compare with the chance value
beside it), or "context" (a size or a reference value, no better direction). The evaluation
markdown and the HTML reports print these beside every value, so no key stands bare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Better = Literal["higher", "lower", "chance", "context"]
MAP_NAMES = ("diff", "gradcam", "ig")  # the maps of "<metric>.<map>.<field>" keys
MAP_TITLES = {"diff": "difference map", "gradcam": "Grad-CAM", "ig": "Integrated Gradients"}

BETTER_TEXT = {
    "higher": "higher is better",
    "lower": "lower is better",
    "chance": "compare with its chance value",
    "context": "context, no better direction",
}


@dataclass(frozen=True)
class Gloss:
    """The meaning of one report key."""

    label: str  # short name for a table
    meaning: str  # one sentence: what the number is
    better: Better  # which direction is better

    @property
    def better_text(self) -> str:
        """The direction in words."""
        return BETTER_TEXT[self.better]


# "<metric>.<field>" (map metrics without their map part).
GLOSSARY: dict[str, Gloss] = {
    "class_consistency.accuracy": Gloss(
        "class consistency", "share of generated images the classifier labels as the class fed to the generator "
        "(paper: 91.15%)", "higher"),
    "class_consistency.std": Gloss("class consistency spread", "standard deviation of class consistency over "
                                   "repeats", "context"),
    "class_consistency.negative_accuracy": Gloss(
        "negative consistency", "share of z2 = 0 samples the classifier calls negative", "higher"),
    "class_consistency.positive_accuracy": Gloss(
        "positive consistency", "share of z2 ~ N(0, I) samples the classifier calls positive", "higher"),
    "class_consistency.samples": Gloss("samples", "generated images counted", "context"),
    "frechet.value": Gloss(
        "Frechet distance", "distance between real and generated images in the classifier's penultimate "
        "features (0 = same mean and covariance)", "lower"),
    "flip_rate.value": Gloss(
        "flip rate", "share of images called positive whose counterfactual G(z1, 0) is called negative", "higher"),
    "flip_rate.eligible": Gloss("eligible images", "images called positive (the flip rate's denominator)", "context"),
    "flip_rate.flipped": Gloss("flipped images", "eligible images whose counterfactual is called negative",
                               "higher"),
    "monotone.share": Gloss(
        "monotone share", "share of traversals whose p(positive) never drops by more than 1e-3 as alpha grows",
        "higher"),
    "monotone.mean_spearman": Gloss(
        "mean Spearman rho", "mean rank correlation of p(positive) with alpha (1 = rises steadily)", "higher"),
    "reconstruction.mse": Gloss(
        "reconstruction MSE", "mean squared error of the reconstruction G(z1, z2) against the image, [-1, 1] "
        "scale", "lower"),
    "reconstruction.ssim": Gloss(
        "reconstruction SSIM", "structural similarity of the reconstruction to the image (1 = identical)", "higher"),
    "reconstruction.p_gap": Gloss(
        "probability gap", "mean |p(reconstruction) - p(image)|: does the classifier see the reconstruction as "
        "it sees the image", "lower"),
    "proximity.value": Gloss(
        "proximity", "mean |G(z1, 0) - G(z1, z2)|: how much the counterfactual repaints the reconstruction "
        "(small and still flipping is best)", "context"),
    "localisation.pointing_game": Gloss(
        "pointing game", "share of the map's maximal pixels inside the phantom's lesion mask", "chance"),
    "localisation.auprc": Gloss(
        "lesion AUPRC", "average precision of map-ranked pixels against the lesion mask", "chance"),
    "localisation.chance": Gloss("chance", "mean lesion-mask fraction: what a random map scores", "context"),
    "shortcut_mass.value": Gloss(
        "mass on the shortcut", "share of map mass on the planted shortcut (marker or stamp); whether that is "
        "right depends on whether the classifier relies on it: see the shortcut audit", "chance"),
    "shortcut_mass.chance": Gloss("chance", "mean shortcut area fraction: a uniform map's share", "context"),
    "border_mass.value": Gloss(
        "mass near the border", "share of map mass near the image border, where markers and collimation edges "
        "sit", "chance"),
    "border_mass.chance": Gloss("chance", "border area fraction: a uniform map's share", "context"),
    "outside_lung_mass.value": Gloss(
        "mass outside the lungs", "share of map mass outside the lung fields", "chance"),
    "outside_lung_mass.chance": Gloss("chance", "area fraction outside the lungs: a uniform map's share", "context"),
    "faithfulness.deletion_auc": Gloss(
        "deletion AUC", "area under p(positive) as the map's top pixels are removed", "lower"),
    "faithfulness.insertion_auc": Gloss(
        "insertion AUC", "area under p(positive) as the map's top pixels are restored", "higher"),
    "sanity.spearman": Gloss(
        "randomisation rank correlation", "rank correlation of the map before and after re-initialising the "
        "classifier (a map that ignores the model stays the same)", "lower"),
    "sanity.ssim": Gloss(
        "randomisation SSIM", "similarity of the map before and after re-initialising the classifier", "lower"),
}

# `raygan.scoring` fields, reported by evaluate under "explanations." (raygan's inversion) and
# "explanations_no_cf." (the same inversion with its counterfactual term off: the ablation).
SCORING = {
    "flip_rate": Gloss("flip rate (explained classifier)", "share of positive calls whose counterfactual the "
                       "explained classifier calls negative; the counterfactual term optimises it", "higher"),
    "judge_flip_rate": Gloss("flip rate (independent judge)", "the same, judged by a classifier trained "
                             "independently: validity the inversion did not optimise", "higher"),
    "judge_agreement": Gloss("judge agreement", "share of inputs on which the judge and the explained "
                             "classifier make the same call", "context"),
    "monotone_share": Gloss("monotone share", "share of traversals whose p(positive) never decreases", "higher"),
    "mean_spearman": Gloss("traversal Spearman", "mean rank correlation of p(positive) with alpha", "higher"),
    "monotone_own": Gloss("monotone share (own z2)", "the same over traversals that walk the image's own z2",
                          "higher"),
    "monotone_fallback": Gloss("monotone share (fallback)", "the same over traversals that walk the mean "
                               "positive direction because the image's own z2 did not move p", "higher"),
    "recon_mse": Gloss("reconstruction MSE", "mean squared error of G(z1, z2) against the input", "lower"),
    "recon_ssim": Gloss("reconstruction SSIM", "structural similarity of G(z1, z2) to the input", "higher"),
    "p_gap": Gloss("|delta p|", "mean |p(G(z1, z2)) - p(x)|: how faithfully the reconstruction keeps the call",
                   "lower"),
    "proximity": Gloss("proximity", "mean |G(z1, 0) - G(z1, z2)|: how much the counterfactual repaints", "lower"),
    "fallback_share": Gloss("fallback share", "share of traversals that walked the fallback direction", "context"),
    "mean_steps": Gloss("inversion steps", "mean optimisation steps run per image", "lower"),
    "realism.counterfactual_to_negative": Gloss(
        "counterfactual realism (FD)", "Frechet distance of counterfactuals G(z1, 0) to real negatives, beside "
        "its floor and gap", "lower"),
    "realism.floor": Gloss("realism floor", "the same distance between two halves of the real negatives: what "
                           "indistinguishable scores at this size", "context"),
    "realism.gap": Gloss("realism gap", "the distance of real positives to real negatives", "context"),
}
SCORING_PREFIXES = {"explanations": "", "explanations_no_cf": " (counterfactual term off)"}

_COUNTS = {"count", "samples", "eligible", "n_real", "n_generated", "dim", "layers", "total_layers",
           "spearman_count"}


def _generic(key: str) -> str:
    """`key` without its map part: "sanity.gradcam.ssim" -> "sanity.ssim"."""
    parts = key.split(".")
    if len(parts) == 3 and parts[1] in MAP_NAMES:
        return f"{parts[0]}.{parts[2]}"
    return key


def describe(key: str) -> Gloss:
    """The meaning of a report key; an unknown key says so (and `undescribed` lists it for the tests)."""
    generic = _generic(key)
    head, _, field = key.partition(".")
    if head in SCORING_PREFIXES and field in SCORING:
        gloss = SCORING[field]
        return Gloss(gloss.label + SCORING_PREFIXES[head], gloss.meaning, gloss.better)
    if generic in GLOSSARY:
        gloss = GLOSSARY[generic]
    elif generic.rsplit(".", 1)[-1] in _COUNTS:
        gloss = Gloss(generic.rsplit(".", 1)[-1], "number of items the value above was computed over", "context")
    else:
        return Gloss(key, "not described yet (see raygan.metrics.glossary)", "context")
    parts = key.split(".")
    if len(parts) == 3 and parts[1] in MAP_NAMES:
        return Gloss(f"{gloss.label} ({MAP_TITLES[parts[1]]})", gloss.meaning, gloss.better)
    return gloss


def undescribed(keys: list[str]) -> list[str]:
    """The keys `describe` has no entry for."""
    return [k for k in keys if describe(k).meaning.startswith("not described")]


__all__ = ["BETTER_TEXT", "GLOSSARY", "Gloss", "describe", "undescribed"]
