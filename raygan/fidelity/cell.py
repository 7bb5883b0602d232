"""One cell of the fidelity benchmark: one world, one shortcut kind, one seed, end to end, no Ray.

Stages (each timed, each under a wall-clock cap where it trains):
  1. phantoms: render the world's train / val / test splits in memory, test with twins;
  2. classifiers: train the one to explain and an independent judge (another architecture and
     seed, same training split); their test accuracy;
  3. reliance: p(x) - p(twin without the cue) on every test phantom carrying it, per cue;
  4. GAN: train it against the frozen classifier (Eq. 1) on the training split;
  5. explain: the stratified test sample (half with the shortcut) with the method's inversion,
     and again with the counterfactual term off (the ablation of the term that targets the flip
     rate); Grad-CAM and IG of the same images;
  6. score every map against the ground truth, raygan's counterfactual against the twins, and
     raygan's validity, monotonicity and realism by the one scoring path (`raygan.scoring`).

The result keeps per-image values, so the benchmark can bootstrap over seeds and images and
apply the verdict rule afterwards. Pure torch and numpy: it runs on a bare GPU box.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from raygan.config import Preset, replace
from raygan.data.phantoms import world_config
from raygan.fidelity.phantom_set import PhantomSet, render_split, stratified

# The maps scored: raygan's difference map, traversal attribution and counterfactual swap map, Grad-CAM, IG.
METHODS = ("raygan", "raygan_path", "raygan_swap", "gradcam", "ig")
MAP_OF = {"raygan": "diff", "raygan_path": "path", "raygan_swap": "swap", "gradcam": "gradcam", "ig": "ig"}
# raygan's audit map: the one its targets, its comparisons with the baselines and its verdicts are judged by.
# Chosen on development seed 0 (2026-12-02, `make fidelity-quick`: the swap map against the difference map),
# before seeds 1-3 and the stamp were run with it.
PRIMARY = "raygan_swap"
# The same two maps of raygan's from the inversion with its counterfactual term off (the term that targets the flip
# rate): reported beside them, never compared with the baselines or held to the targets.
ABLATIONS = ("raygan_no_cf", "raygan_swap_no_cf")
Log = Callable[[str], None]


@dataclass(frozen=True)
class CellConfig:
    """What one cell runs and how big it is."""

    world: str  # "lesion_only", "shortcut_only" or "mixed" (raygan.data.phantoms.WORLDS)
    shortcut_kind: str = "marker"  # "marker" or "stamp"
    seed: int = 0  # seeds the phantoms, both classifiers, the GAN and the explanations
    phantoms: int = 2000  # phantoms rendered (80/10/10 by image_id)
    explain: int = 48  # test phantoms explained (half of them carry the shortcut where possible)
    classifier_epochs: int = 8  # epochs of the explained classifier and of the judge
    gan_epochs: int | None = None  # GAN epochs (None: the preset's)
    classifier_cap_s: float = math.inf  # each classifier stops after the epoch that crosses this
    gan_cap_s: float = math.inf  # the GAN stops after the epoch that crosses this
    judge_arch: str = "max_cnn"  # the independent judge's architecture
    judge_lr: float | None = None  # its AdamW learning rate (None: the preset's classifier recipe)
    ablation: bool = True  # also explain with the counterfactual term off
    batch: int = 48  # images per Explainer call
    encoder_epochs: int = 0  # > 0: also train the preset's encoder (this many epochs on the training split) and
    #                          explain the same sample from E(x) + encoder_steps steps (issue 14's comparison)
    encoder_steps: int | None = None  # K refinement steps after E(x) (None: the preset inversion's encoder_steps)
    encoder_cap_s: float = math.inf  # the encoder stops after the epoch that crosses this


@dataclass(frozen=True)
class CellResult:
    """Everything a cell measured, with per-image values for the intervals."""

    config: CellConfig  # the cell
    method: dict[str, Any]  # the preset's configs under test (asdict)
    sizes: dict[str, int]  # train / test / explained / carriers counts
    seconds: dict[str, float]  # per stage
    epochs: dict[str, int]  # epochs actually run: classifier, judge, gan (and encoder, when the cell trains one)
    accuracy: dict[str, float]  # test accuracy of the classifier and the judge, their agreement
    reliance: dict[str, dict[str, float]]  # cue -> Reliance fields (value, flipped, p_with, p_without, count)
    consistency: dict[str, float]  # class consistency under C and under the judge
    per_image: dict[str, dict[str, list[float]]]  # method -> metric -> one value per explained phantom (nan = n/a)
    carriers: dict[str, list[bool]]  # "shortcut" / "lesions": which explained phantoms carry the cue
    scores: dict[str, dict[str, Any]]  # "raygan" / "raygan_no_cf" -> raygan.scoring.ExplanationScores (asdict)
    extra: dict[str, Any] = field(default_factory=dict)  # anything else worth keeping (first image ids, ...)


def _accuracy(classifier: Any, phantoms: PhantomSet) -> tuple[float, torch.Tensor]:
    from raygan.scoring import probabilities

    p = probabilities(classifier, phantoms.images)
    return float(((p > 0.5).long() == phantoms.labels).double().mean()), p


def frozen_classifier(model: torch.nn.Module, *, arch: str, size: int) -> Any:
    """`model` (an `arch` factory network) as a FrozenClassifier fed [-1, 1] images unchanged (mean = std = 0.5)."""
    from raygan.models.classifier import factory_path
    from raygan.models.frozen import ClassifierSpec, FrozenClassifier

    spec = ClassifierSpec(format="factory", weights="model.pt", factory=factory_path(arch),  # type: ignore[arg-type]
                          factory_kwargs={"image_size": size, "channels": 1}, size=size, channels=1)
    return FrozenClassifier(model, spec)


@dataclass(frozen=True)
class TrainedClassifier:
    """A classifier trained on phantoms."""

    model: torch.nn.Module  # the bare network (eval mode)
    frozen: Any  # the same network as a FrozenClassifier
    arch: str  # its factory name
    epochs: int  # epochs run


def train_classifier(arch: str, train: PhantomSet, *, preset: Preset, seed: int, epochs: int,
                     cap_s: float = math.inf, log: Log = lambda _: None, lr: float | None = None) -> TrainedClassifier:
    """Train a classifier of `arch` on `train` with the preset's recipe (`lr` overrides its learning rate)."""
    from raygan.models.classifier import build_classifier
    from raygan.train.local import fit_classifier

    size = train.images.shape[-1]
    cfg = replace(preset.classifier, arch=arch, epochs=epochs, seed=seed, image_size=size, lr=lr)
    torch.manual_seed(seed)
    model = build_classifier(arch, image_size=size, channels=1)  # type: ignore[arg-type]
    fit = fit_classifier(model, train.images, train.labels, config=cfg, cap_s=cap_s, log=log, name=arch)
    return TrainedClassifier(model=model, frozen=frozen_classifier(model, arch=arch, size=size), arch=arch,
                             epochs=fit.epochs)


def _reliance(classifier: Any, test: PhantomSet) -> dict[str, dict[str, float]]:
    from raygan.metrics.reliance import reliance
    from raygan.scoring import probabilities

    p = probabilities(classifier, test.images)
    out = {}
    for cue, carriers in (("shortcut", test.has_shortcut), ("lesions", test.has_lesions)):
        out[cue] = dataclasses.asdict(reliance(p, probabilities(classifier, test.twins[cue]), carriers))
    return out


def explain_all(explainer: Any, phantoms: PhantomSet, *, batch: int) -> list[Any]:
    """Explanations of every phantom, `batch` at a time (inversion is batch-independent)."""
    out: list[Any] = []
    for start in range(0, len(phantoms), batch):
        out += explainer.explain(phantoms.images[start:start + batch], image_ids=phantoms.image_ids[start:start + batch])
    return out


def map_scores(maps: torch.Tensor, phantoms: PhantomSet, *, signed: torch.Tensor | None = None) -> dict[str, list[float]]:
    """Per-image ground-truth scores of maps [N, 1, S, S] on `phantoms` (nan where a score does not apply).

    shortcut_mass / shortcut_chance: the map's share of mass on the shortcut and the shortcut's
    area share (carriers only); lesion_auprc / lesion_chance: AUPRC of map-ranked pixels against the
    lesion mask and the mask's area share (lesion carriers only); twin_shortcut / twin_lesions:
    Spearman rho of the map with |x - twin without the cue|; shortcut_net: the net share of the
    method's signed map on the shortcut, sum on the shortcut / sum of magnitudes (`signed`, [N, 1, S, S],
    for methods whose attribution carries a sign; otherwise the same as shortcut_mass), which the verdict reads.
    """
    from raygan.metrics.localisation import average_precision
    from raygan.metrics.mass import net_shares
    from raygan.metrics.stats import spearman_rows

    n = len(phantoms)
    flat = maps.detach().float().flatten(1).cpu()  # [N, P]
    nan = [math.nan] * n
    out = {k: list(nan) for k in ("shortcut_mass", "shortcut_chance", "lesion_auprc", "lesion_chance",
                                  "twin_shortcut", "twin_lesions", "shortcut_net")}
    net = None if signed is None else net_shares(signed.cpu(), phantoms.shortcut_masks).tolist()  # [N]
    effects = {cue: (phantoms.images - phantoms.twins[cue]).abs().flatten(1) for cue in ("shortcut", "lesions")}
    rho = {cue: spearman_rows(flat, effects[cue]) for cue in effects}
    for i in range(n):
        total = float(flat[i].sum())
        if bool(phantoms.has_shortcut[i]):
            region = phantoms.shortcut_masks[i].flatten()
            out["shortcut_chance"][i] = float(region.double().mean())
            out["shortcut_mass"][i] = float(flat[i][region].sum()) / total if total > 0 else math.nan
            out["shortcut_net"][i] = out["shortcut_mass"][i] if net is None else net[i]
            out["twin_shortcut"][i] = float(rho["shortcut"][i])
        if bool(phantoms.has_lesions[i]):
            region = phantoms.lesion_masks[i].flatten()
            out["lesion_chance"][i] = float(region.double().mean())
            out["lesion_auprc"][i] = average_precision(flat[i], region)
            out["twin_lesions"][i] = float(rho["lesions"][i])
    return out


def counterfactual_scores(explained: list[Any], phantoms: PhantomSet) -> dict[str, list[float]]:
    """Per image: does raygan's counterfactual flip the call, does it remove the shortcut (or the lesions)
    where it sits, and does the reconstruction draw the shortcut at all?

    The removal test alone is met trivially by a generator that never draws the shortcut (neither
    G(z1, z2) nor G(z1, 0) has it, so the counterfactual is "closer to the twin" on its pixels):
    `recon_renders_shortcut` (on the shortcut's pixels G(z1, z2) is closer to x than to the twin)
    says whether the removal was a real one.
    """
    from raygan.metrics.cue_removal import removes_cue

    cf = torch.stack([e.counterfactual for e in explained])
    recon = torch.stack([e.reconstruction for e in explained])
    p_in = torch.tensor([e.p_input for e in explained])
    p_cf = torch.tensor([e.p_counterfactual for e in explained])
    flips = (p_in > 0.5) & (p_cf < 0.5)
    removed = removes_cue(cf, phantoms.images, phantoms.twins["shortcut"])
    removed_l = removes_cue(cf, phantoms.images, phantoms.twins["lesions"])
    # G(z1, z2) "renders" the cue when, on its footprint, it is closer to x than to the twin: the
    # removal test with the roles of x and the twin swapped.
    renders = removes_cue(recon, phantoms.twins["shortcut"], phantoms.images)
    n = len(explained)
    return {
        "flips": [float(v) for v in flips],
        "recon_renders_shortcut": [float(renders[i]) if phantoms.has_shortcut[i] else math.nan for i in range(n)],
        "cf_removes_shortcut": [float(removed[i]) if phantoms.has_shortcut[i] and flips[i] else math.nan
                                for i in range(n)],
        "cf_removes_lesions": [float(removed_l[i]) if phantoms.has_lesions[i] and flips[i] else math.nan
                               for i in range(n)],
    }


ENCODER = "raygan_swap_encoder"  # the audit map from the encoder's inversion (E(x) + K steps): issue 14's row


def _encoder_rows(config: CellConfig, preset: Preset, train: PhantomSet, sample: PhantomSet, generator: Any,
                  classifier: Any, judge: Any, inversion: Any, per_image: dict[str, Any], scores: dict[str, Any],
                  seconds: dict[str, float], log: Log, t: float, *, real: tuple[torch.Tensor, torch.Tensor]
                  ) -> tuple[float, int]:
    """Train the encoder on the training split and explain `sample` from E(x): the swap map's scores, the
    counterfactual's, and the scoring path's, beside the shipped optimisation's (same images, same G and C).
    Returns (the time it finished, the encoder's epochs run)."""
    from raygan.explain.explainer import Explainer, signed_maps
    from raygan.scoring import ExplanationArrays, score
    from raygan.train.local import fit_encoder

    cfg = replace(preset.encoder, epochs=config.encoder_epochs, seed=config.seed)
    encoder, fit = fit_encoder(train.images, generator, classifier, config=cfg, inversion=inversion,
                               positive_fraction=preset.train.positive_fraction, cap_s=config.encoder_cap_s, log=log)
    seconds["encoder_train"] = time.perf_counter() - t
    t = time.perf_counter()
    steps = inversion.encoder_steps if config.encoder_steps is None else config.encoder_steps
    explainer = Explainer(generator, classifier, inversion=replace(inversion, encoder_steps=steps),
                          traversal=preset.traversal, device=classifier.mean.device, encoder=encoder)
    explained = explain_all(explainer, sample, batch=config.batch)
    seconds["explain_encoder"] = time.perf_counter() - t
    per_image[ENCODER] = {**map_scores(torch.stack([e.maps["swap"] for e in explained]), sample,
                                       signed=signed_maps(classifier, explained, names=("swap",))["swap"]),
                          **counterfactual_scores(explained, sample)}
    negatives, positives = real  # the test split's, as for the shipped optimisation's row
    scores["raygan_encoder"] = dataclasses.asdict(score(ExplanationArrays.of(explained), judge=judge,
                                                        classifier=classifier, negatives=negatives,
                                                        positives=positives, seed=config.seed))
    scores["raygan_encoder"]["encoder_steps"] = steps
    log(f"    encoder ({fit.epochs} epochs, {seconds['encoder_train']:.0f} s): explained {len(sample)} in "
        f"{seconds['explain_encoder']:.1f} s against {seconds['explain']:.1f} s from scratch")
    return time.perf_counter(), fit.epochs


def run_cell(config: CellConfig, *, preset: Preset, log: Log = print) -> CellResult:
    """Run one cell end to end on the CPU (or the default CUDA device) and return what it measured."""
    from raygan.explain.attribution import swap_attribution_both
    from raygan.explain.explainer import Explainer, signed_maps
    from raygan.metrics.class_consistency import class_consistency
    from raygan.scoring import ExplanationArrays, score
    from raygan.train.local import fit_gan

    seconds: dict[str, float] = {}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = preset.gan.image_size

    def tick(name: str, t0: float) -> float:
        seconds[name] = time.perf_counter() - t0
        return time.perf_counter()

    t = time.perf_counter()
    world = world_config(config.world, n=config.phantoms, size=size, seed=config.seed,
                         shortcut_kind=config.shortcut_kind)  # type: ignore[arg-type]
    train = render_split(world, "train", twins=False)
    test = render_split(world, "test")
    t = tick("phantoms", t)

    explained_c = train_classifier(preset.classifier.arch, train, preset=preset, seed=config.seed,
                                   epochs=config.classifier_epochs, cap_s=config.classifier_cap_s, log=log)
    judge_c = train_classifier(config.judge_arch, train, preset=preset, seed=config.seed + 1000,
                               epochs=config.classifier_epochs, cap_s=config.classifier_cap_s, log=log,
                               lr=config.judge_lr)
    classifier, judge = explained_c.frozen.to(device), judge_c.frozen.to(device)
    c_epochs, j_epochs = explained_c.epochs, judge_c.epochs
    acc, p_test = _accuracy(classifier, test)
    judge_acc, p_judge = _accuracy(judge, test)
    t = tick("classifiers", t)

    relies = _reliance(classifier, test)
    t = tick("reliance", t)
    log(f"    classifier accuracy {acc:.3f} (judge {judge_acc:.3f}); reliance on the shortcut "
        f"{relies['shortcut']['value']:.3f}, on the lesions {relies['lesions']['value']:.3f}")

    train_cfg = replace(preset.train, epochs=config.gan_epochs, seed=config.seed, workers=0,
                        use_gpu=device.type == "cuda")
    generator, gan_fit = fit_gan(train.images, classifier, gan=preset.gan, train=train_cfg, cap_s=config.gan_cap_s,
                                 log=log)
    consistency = class_consistency(generator, classifier, n_z1=250, seed=config.seed)
    judged = class_consistency(generator, judge, n_z1=250, seed=config.seed)
    t = tick("gan", t)

    chosen = stratified(test, config.explain)
    sample = test.subset(chosen)
    inversion = replace(preset.inversion, seed=config.seed)
    explainer = Explainer(generator, classifier, inversion=inversion, traversal=preset.traversal, device=device)
    explained = explain_all(explainer, sample, batch=config.batch)
    t = tick("explain", t)
    ablated = []
    if config.ablation and inversion.counterfactual_weight > 0:
        plain = Explainer(generator, classifier, inversion=replace(inversion, counterfactual_weight=0.0),
                          traversal=preset.traversal, device=device, attributions=False)
        ablated = explain_all(plain, sample, batch=config.batch)
    t = tick("ablation", t)

    per_image = {}
    signed = signed_maps(classifier, explained)  # what the verdict reads, where a map carries a sign
    for method in METHODS:
        maps = torch.stack([e.maps[MAP_OF[method]] for e in explained])
        per_image[method] = map_scores(maps, sample, signed=signed.get(MAP_OF[method]))
    removal = counterfactual_scores(explained, sample)  # the same counterfactuals behind both of raygan's maps
    per_image["raygan"].update(removal)
    per_image[PRIMARY].update(removal)
    negatives = test.images[test.labels == 0]
    positives = test.images[test.labels == 1]
    scores = {"raygan": dataclasses.asdict(score(ExplanationArrays.of(explained), judge=judge, classifier=classifier,
                                                 negatives=negatives, positives=positives, seed=config.seed))}
    if ablated:
        removal_off = counterfactual_scores(ablated, sample)
        per_image["raygan_no_cf"] = {**map_scores(torch.stack([e.maps["diff"] for e in ablated]), sample),
                                     **removal_off}
        swap_off = swap_attribution_both(classifier, sample.images.to(device),
                                         torch.stack([e.counterfactual for e in ablated]).to(device))
        per_image["raygan_swap_no_cf"] = {**map_scores(swap_off.map.cpu(), sample, signed=swap_off.signed.cpu()),
                                          **removal_off}
        scores["raygan_no_cf"] = dataclasses.asdict(score(
            ExplanationArrays.of(ablated), judge=judge, classifier=classifier, negatives=negatives,
            positives=positives, seed=config.seed))
    t = tick("score", t)
    epochs = {"classifier": c_epochs, "judge": j_epochs, "gan": gan_fit.epochs}
    if config.encoder_epochs > 0:
        t, epochs["encoder"] = _encoder_rows(config, preset, train, sample, generator, classifier, judge, inversion, per_image, scores,
                          seconds, log, t, real=(negatives, positives))
    return CellResult(
        config=config,
        method={"gan": dataclasses.asdict(preset.gan), "train": dataclasses.asdict(train_cfg),
                "classifier": dataclasses.asdict(preset.classifier), "inversion": dataclasses.asdict(inversion),
                "traversal": dataclasses.asdict(preset.traversal)},
        sizes={"train": len(train), "test": len(test), "explained": len(sample),
               "explained_with_shortcut": int(sample.has_shortcut.sum()),
               "explained_with_lesions": int(sample.has_lesions.sum()),
               "test_with_shortcut": int(test.has_shortcut.sum()), "test_with_lesions": int(test.has_lesions.sum())},
        seconds=seconds,
        epochs=epochs,
        accuracy={"classifier": acc, "judge": judge_acc,
                  "agreement": float(((p_test > 0.5) == (p_judge > 0.5)).double().mean())},
        reliance=relies,
        consistency={"classifier": consistency.accuracy, "judge": judged.accuracy,
                     "classifier_negative": consistency.negative_accuracy,
                     "classifier_positive": consistency.positive_accuracy},
        per_image=per_image,
        carriers={"shortcut": sample.has_shortcut.tolist(), "lesions": sample.has_lesions.tolist()},
        scores=scores,
        extra={"image_ids": sample.image_ids},
    )


__all__ = ["ABLATIONS", "ENCODER", "METHODS", "CellConfig", "CellResult", "TrainedClassifier", "counterfactual_scores", "explain_all",
           "frozen_classifier", "map_scores", "run_cell", "train_classifier"]
