"""The study's report: `results.json` (flat headline keys plus the details) and `results.md` (tables).

Pure: the stages' outputs in, a JSON-ready dict and Markdown text out; `raygan.study` writes them.
The headline keys are the ones issue 6 asks for: classifier_test_accuracy, classifier_test_auc,
class_consistency, monotone_share (all, own-z2, fallback), flip_rate (explained and judge), p_gap, recon_mse, proximity and the same
with an `authors_` prefix (null when the authors' recipe was skipped), with the sample sizes behind
them, the epochs and seconds of each stage, the preset, `gpu`, `date` and the torch version.
"""

from __future__ import annotations

import dataclasses
import math
import platform
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from raygan.storage import jsonable

if TYPE_CHECKING:
    from raygan.config import InversionConfig, Preset
    from raygan.evaluate import EvaluationReport
    from raygan.scoring import ExplanationScores
    from raygan.study import ClassifierStage, GanStage, StudyConfig

PAPER = {"classifier_test_accuracy": 0.75, "class_consistency": 0.9115}  # the paper's figures (accuracy approximate)
COMPARED = ("monotone_share", "monotone_own", "monotone_fallback", "mean_spearman", "flip_rate", "judge_flip_rate",
            "p_gap", "recon_mse", "recon_ssim", "proximity", "fallback_share",
            "mean_steps")  # raygan.scoring.ExplanationScores fields reported for every recipe
MAPS = ("diff", "gradcam", "ig")


def _scores(scores: ExplanationScores | None, prefix: str = "") -> dict[str, Any]:
    out = {f"{prefix}{name}": None if scores is None else getattr(scores, name) for name in COMPARED}
    real = None if scores is None else scores.realism
    out[f"{prefix}frechet_counterfactual_negative"] = None if real is None else real.counterfactual_to_negative
    return out


def _ablation(values: Mapping[str, float], sizes: Mapping[str, int]) -> dict[str, Any]:
    """raygan's inversion with its counterfactual term off, on the same images (from the evaluation)."""
    keys = ("flip_rate", "judge_flip_rate", "monotone_share", "monotone_own", "monotone_fallback", "recon_mse", "p_gap")
    out: dict[str, Any] = {k: values.get(f"explanations_no_cf.{k}") for k in keys}
    out["realism"] = {k: values.get(f"explanations_no_cf.realism.{k}") for k in ("counterfactual_to_negative",)}
    out["flip_eligible"] = sizes.get("explanations_no_cf.flip_eligible")
    return out


def _map_table(values: Mapping[str, float], sizes: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """Per attribution map: border mass (and chance), faithfulness, sanity check, from an evaluation."""
    out = {}
    for m in MAPS:
        out[m] = {
            "border_mass": values.get(f"border_mass.{m}.value"), "border_chance": values.get(f"border_mass.{m}.chance"),
            "deletion_auc": values.get(f"faithfulness.{m}.deletion_auc"),
            "insertion_auc": values.get(f"faithfulness.{m}.insertion_auc"),
            "faithfulness_images": sizes.get(f"faithfulness.{m}.count"),
            "sanity_spearman": values.get(f"sanity.{m}.spearman"), "sanity_ssim": values.get(f"sanity.{m}.ssim"),
            "outside_lung_mass": values.get(f"outside_lung_mass.{m}.value"),
        }
    return out


def results_json(
    *,
    config: StudyConfig,
    preset: Preset,
    gpu: str,
    date: str,
    classifier: ClassifierStage,
    gan: GanStage,
    report: EvaluationReport,
    raygan: ExplanationScores,
    paired: ExplanationScores | None,
    authors: ExplanationScores | None,
    authors_config: InversionConfig,
    authors_predicted_s: float,
    counts: Mapping[str, int],
    labels: Mapping[str, int],
    ids: list[str],
    figures: list[str],
    seconds: Mapping[str, float],
    encoder: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything a study measured, JSON-ready (nan -> null)."""
    values, sizes = report.values, report.sizes
    results: dict[str, Any] = {
        "preset": preset.name, "data": config.data, "gpu": gpu, "date": date, "torch": torch.__version__,
        "python": platform.python_version(),
        "classifier_arch": classifier.arch,
        "classifier_test_accuracy": classifier.test_accuracy, "classifier_test_auc": classifier.test_auc,
        "classifier_val_accuracy": classifier.val_accuracy, "classifier_val_auc": classifier.val_auc,
        "classifier_train_accuracy": classifier.train_accuracy,
        "class_consistency": values["class_consistency.accuracy"],
        "class_consistency_std": values["class_consistency.std"],
        "class_consistency_negative": values["class_consistency.negative_accuracy"],
        "class_consistency_positive": values["class_consistency.positive_accuracy"],
        **_scores(raygan), **_scores(authors, "authors_"),
        "no_counterfactual_term": _ablation(values, sizes),
        "judge_test_accuracy": classifier.judge_test_accuracy,
        "frechet": values.get("frechet.value"),
        "frechet_floor": None if raygan.realism is None else raygan.realism.floor,
        "frechet_gap": None if raygan.realism is None else raygan.realism.gap,
        "frechet_n": None if raygan.realism is None else raygan.realism.n,
        "maps": _map_table(values, sizes),
        "sample_sizes": {
            "train": counts["train"], "val": counts["val"], "test": counts["test"],
            "test_explained": raygan.images, "test_explained_positive": sum(labels.get(i) == 1 for i in ids),
            "authors_images": 0 if authors is None else authors.images,
            "flip_eligible": raygan.flip_eligible,
            "judge_flip_eligible": raygan.judge_flip_eligible,
            "authors_flip_eligible": None if authors is None else authors.flip_eligible,
            "own_z2_traversals": raygan.own_count, "fallback_traversals": raygan.fallback_count,
            "class_consistency_samples": sizes.get("class_consistency.samples"),
            "sanity_images": min(config.sanity_images, raygan.images),
        },
        "epochs": {"classifier": classifier.epochs, "classifier_planned": classifier.planned,
                   "gan": gan.epochs, "gan_planned": gan.planned},
        "caps_s": {"classifier": config.classifier_cap_s, "gan": config.gan_cap_s, "authors": config.authors_cap_s},
        "seconds": dict(seconds),
        "authors_predicted_s": authors_predicted_s,
        "gan_final": dict(gan.final),
        "inversion": {"raygan": dataclasses.asdict(report.inversion), "authors": dataclasses.asdict(authors_config)},
        "traversal": dataclasses.asdict(report.traversal),
        "bundle_id": report.bundle_id,
        "figures": figures,
        "paper": PAPER,
        "config": dataclasses.asdict(config),
        "evaluation": {"values": dict(values), "sizes": dict(sizes)},
    }
    if encoder is not None:
        results["encoder"] = dict(encoder)
    if paired is not None and authors is not None and paired.images != raygan.images:
        results["raygan_on_authors_images"] = _scores(paired)  # the like-for-like comparison when fewer were inverted
    return jsonable(results)


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


ROWS = (  # (key, label, paper's figure)
    ("monotone_share", "monotone share of traversals", "monotone traversals (shown, no share given)"),
    ("monotone_own", "monotone share, traversals along their own z2", "-"),
    ("monotone_fallback", "monotone share, fallback traversals", "-"),
    ("mean_spearman", "mean Spearman rho of p vs alpha", "-"),
    ("flip_rate", "flip rate judged by the explained classifier", "-"),
    ("judge_flip_rate", "flip rate judged by an independent classifier", "-"),
    ("p_gap", "mean abs delta p, reconstruction vs input", "-"),
    ("recon_mse", "reconstruction MSE ([-1, 1] scale)", "-"),
    ("recon_ssim", "reconstruction SSIM", "-"),
    ("proximity", "proximity: mean abs(G(z1, 0) - G(z1, z2))", "-"),
    ("fallback_share", "traversals that walked the mean positive direction", "-"),
    ("mean_steps", "mean inversion steps per image", "5000"),
    ("frechet_counterfactual_negative", "Frechet distance, counterfactuals vs real negatives", "-"),
)


def results_markdown(results: Mapping[str, Any]) -> str:
    """`results.md`: raygan's shipped inversion vs the authors' recipe vs the paper, then the details."""
    n, s, e = results["sample_sizes"], results["seconds"], results["epochs"]
    paired = results.get("raygan_on_authors_images")
    lines = [
        f"# raygan study: `{results['preset']}` preset",
        "",
        (f"- data: `{results['data']}`: {n['train']} train / {n['val']} val / {n['test']} test images "
        "(80/10/10 by a hash of image_id; the GAN saw the training split only)"),
        f"- device: {results['gpu']}; torch {results['torch']}; {results['date']}",
        (f"- epochs: classifier ({results['classifier_arch']}) {e['classifier']} of {e['classifier_planned']}, "
        f"GAN {e['gan']} of {e['gan_planned']}"),
        "- seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in s.items()),
        (f"- explained: the first {n['test_explained']} test images "
         f"({n['test_explained_positive']} labelled positive); "
        f"the authors' recipe on the first {n['authors_images']} of them; class consistency over "
        f"{n['class_consistency_samples']} generated images"),
        "",
        "| | raygan | paper |",
        "|---|---|---|",
        f"| classifier test accuracy | {_f(results['classifier_test_accuracy'])} | ~0.75 |",
        f"| classifier test ROC AUC | {_f(results['classifier_test_auc'])} | - |",
        (f"| generator class consistency | {_f(results['class_consistency'], 4)} "
        f"(negatives {_f(results['class_consistency_negative'])}, "
         f"positives {_f(results['class_consistency_positive'])}) "
        "| 0.9115 |"),
        f"| Frechet distance, classifier features (real vs generated) | {_f(results['frechet'])} | - |",
        "",
        ("Explanations of the same test images: raygan's shipped inversion "
        f"({results['inversion']['raygan']['steps']} steps max) vs the authors' recipe "
        f"({results['inversion']['authors']['steps']} steps, Adam 0.01, a = 4, b = 1, z1 = 0, z2 random):"),
        "",
        "| metric | raygan | authors' recipe |" + (" raygan on the authors' images |" if paired else "") + " paper |",
        "|---|---|---|" + ("---|" if paired else "") + "---|",
    ]
    for key, label, paper in ROWS:
        cells = [_f(results[key]), _f(results[f"authors_{key}"])] + ([_f(paired[key])] if paired else [])
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {paper} |")
    ab = results["no_counterfactual_term"]
    lines += [
        "",
        f"Flip rate denominators: {n['flip_eligible']} (raygan), {_f(n['authors_flip_eligible'])} (authors); "
        f"the independent judge ({_f(results['judge_test_accuracy'])} test accuracy) calls "
        f"{n['judge_flip_eligible']} of raygan's inputs positive. Monotone share over {n['own_z2_traversals']} "
        f"own-z2 and {n['fallback_traversals']} fallback traversals.",
        "",
        "raygan's counterfactual term optimises the flip rate it is scored on; the same inversion without it, on "
        f"the same images: flip rate {_f(ab['flip_rate'])} (judge {_f(ab['judge_flip_rate'])}), monotone own-z2 "
        f"{_f(ab['monotone_own'])}, reconstruction MSE {_f(ab['recon_mse'])}.",
        "",
        f"Counterfactual realism (Frechet distance in the classifier's features, n = {results['frechet_n']} per side): "
        f"counterfactuals vs real negatives {_f(results['frechet_counterfactual_negative'])}, real negatives vs real "
        f"negatives (floor) {_f(results['frechet_floor'])}, real positives vs real negatives (gap) "
        f"{_f(results['frechet_gap'])}.",
        "",
        ("Attribution maps of raygan's explanations (border = outer 10% of the side; faithfulness on images "
        "called positive; sanity = Spearman rho of the maps before and after randomising the classifier, "
        "lower is better):"),
        "",
        "| map | border mass (chance) | deletion AUC (lower better) | insertion AUC (higher better) | sanity rho |",
        "|---|---|---|---|---|",
    ]
    for m, row in results["maps"].items():
        lines.append(f"| {m} | {_f(row['border_mass'])} ({_f(row['border_chance'])}) | {_f(row['deletion_auc'])} | "
                     f"{_f(row['insertion_auc'])} | {_f(row['sanity_spearman'])} |")
    lines += _encoder_lines(results.get("encoder"))
    lines += ["", "Figures:", ""] + [f"![{f}](figures/{f})" for f in results["figures"]]
    return "\n".join(lines) + "\n"


def _encoder_lines(encoder: Mapping[str, Any] | None) -> list[str]:
    """The encoder stage's section: speed at equal work, quality beside the shipped inversion, paired intervals."""
    if not encoder:
        return []
    sc, diff, t = encoder["scores"], encoder["minus_shipped"], encoder["inversion_seconds"]

    def d(name: str) -> str:
        lo, hi = diff[name]["ci95"]
        return f"{_f(diff[name]['value'], 4)} [{_f(lo, 4)}, {_f(hi, 4)}] (n {diff[name]['n']})"

    return [
        "",
        (f"Encoder (amortised inversion): trained {encoder['epochs']} of {encoder['planned']} epochs in "
         f"{encoder['train_seconds']:.0f} s; the same {encoder['images']} test images inverted from E(x) + "
         f"{encoder['encoder_steps']} steps in {t['encoder']:.1f} s against {t['shipped']:.1f} s for the shipped "
         f"optimisation at the same batch ({_f(encoder['speed_ratio'], 1)}x). One encoder seed: no interval "
         "across seeds (`benchmarks/inversion_throughput.py --encoders` compares several)."),
        "",
        "| metric | from the encoder | encoder minus shipped, paired 95% interval over images |",
        "|---|---|---|",
        f"| reconstruction MSE | {_f(sc['recon_mse'], 4)} | {d('recon_mse')} |",
        f"| mean abs delta p | {_f(sc['p_gap'], 4)} | {d('p_gap')} |",
        f"| flip rate, explained classifier | {_f(sc['flip_rate'])} | {d('flipped')} |",
        f"| flip rate, independent judge | {_f(sc['judge_flip_rate'])} | {d('judge_flipped')} |",
        f"| monotone share, own-z2 traversals | {_f(sc['monotone_own'])} | {d('monotone_own')} |",
    ]


__all__ = ["COMPARED", "PAPER", "results_json", "results_markdown"]
