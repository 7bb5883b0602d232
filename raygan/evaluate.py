"""Evaluate a bundle: every registered metric over its generator and, given data, its explanations.

Generator part (always): class consistency (the paper's protocol). Data part (with a data URI):
the images of one split are explained by `raygan.explain.Explainer`; then the explanation
metrics (flip rate, monotone share, reconstruction, proximity), the Frechet distance of real
vs generated images in the classifier's features, and for each attribution map ("diff",
"gradcam", "ig") faithfulness, border mass, the sanity check, and, where the data carries
ground truth (phantoms: `mask`, `shortcut_mask`, `lung_mask` columns), localisation, shortcut mass
and outside-lung mass. The result is a flat dict of values plus the sample size behind each.
Pure apart from reading the data; `write_report` is the I/O edge.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

from raygan.config import InversionConfig, TraversalConfig
from raygan.explain.attribution import MAP_NAMES
from raygan.metrics import METRICS
from raygan.metrics.faithfulness import Baseline
from raygan.metrics.glossary import describe

if TYPE_CHECKING:
    from raygan import storage
    from raygan.bundle import Bundle
    from raygan.explain.explainer import Explainer, Explanation
    from raygan.fidelity.audit import RegionAudit
    from raygan.models.frozen import FrozenClassifier

MAPS = MAP_NAMES  # attribution maps every map metric is computed for: "diff", "gradcam", "ig"
MASK_COLUMNS = {"mask": "lesion", "shortcut_mask": "shortcut", "lung_mask": "lung"}  # phantom ground truth


@dataclass(frozen=True)
class EvaluationConfig:
    """What `evaluate_bundle` measures and on how much data."""

    limit: int = 64  # images explained: the first `limit` rows of the split, in shard order
    split: Literal["train", "val", "test"] | None = "test"  # hash split of image_id; None = every row
    n_z1: int = 1000  # class consistency: structure latents per repeat (paper: 1000)
    repeats: int = 1  # class consistency: repeats of the draw (paper: 1000)
    batch_size: int = 16  # images per Explainer call
    deletion_steps: int = 16  # K: steps of the deletion and insertion curves
    deletion_baseline: Baseline = "blur"  # what deleted pixels become: "blur" (blurred image) or "black" (-1)
    border_fraction: float = 0.1  # border mass: band width as a share of the image side
    sanity_images: int = 8  # images re-explained with a randomised classifier; 0 skips the sanity check
    sanity_layers: int | None = None  # top parameterised layers re-initialised; None = all (end of the cascade)
    ablation: bool = True  # also explain with the counterfactual term off (the term targets the flip rate it is scored on)
    audit: bool = True  # the shortcut audit: reliance on every mask column and the border band, each map's verdict
    seed: int = 0  # seeds class consistency, the Frechet samples, the randomisation and tie breaks
    no_encoder: bool = False  # invert from scratch even when the bundle has an encoder

    def __post_init__(self) -> None:
        if self.limit < 0 or self.n_z1 < 1 or self.repeats < 1 or self.batch_size < 1 or self.deletion_steps < 1:
            raise ValueError(f"invalid evaluation config: {self}")
        if self.split is not None and self.split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val', 'test' or None, got {self.split!r}")


@dataclass(frozen=True)
class EvaluationReport:
    """The outcome of `evaluate_bundle`: flat metric values and the sample sizes behind them."""

    bundle_uri: str  # the bundle evaluated
    bundle_id: str  # fingerprint of the bundle's weights with the inversion/traversal settings used
    data_uri: str | None  # the data explained; None = generator metrics only
    values: dict[str, float]  # "<metric>.<field>" or "<metric>.<map>.<field>" -> value (nan = undefined)
    sizes: dict[str, int]  # sample sizes: "<metric>[.<map>].<int field>" and "data.*" -> count
    curves: dict[str, list[float]]  # "faithfulness.<map>.deletion_curve" etc.: mean p per step
    config: EvaluationConfig  # what was measured
    inversion: InversionConfig  # inversion settings of the explanations
    traversal: TraversalConfig  # traversal settings of the explanations
    seconds: float  # wall time of the evaluation
    explanations: tuple[Explanation, ...] = ()  # the per-image explanations behind the data metrics (for reports)
    audit: tuple[RegionAudit, ...] = ()  # the shortcut audit (empty without data or with config.audit off)
    skipped: dict[str, str] = field(default_factory=dict)  # metric (or map) -> why this classifier cannot give it
    encoder: str | None = None  # fingerprint of the encoder the inversions started from; None: from scratch


@dataclass(frozen=True)
class EvaluationData:
    """Decoded evaluation images and their ground truth, at the generator's size."""

    image_ids: list[str]  # ids of the decoded rows, in input order
    images: torch.Tensor  # [N, C, S, S] in [-1, 1]
    labels: torch.Tensor | None  # [N] int64 (-1 = unlabelled); None without a label column
    masks: dict[str, torch.Tensor]  # "lesion" / "shortcut" / "lung" -> [N, 1, S, S] bool, where the column exists
    rows: int  # rows of the split considered (before decoding)
    errors: int  # rows whose image failed to decode (left out)


@dataclass
class _Sink:
    """Accumulates metric results into the flat report dicts."""

    values: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)

    def add(self, prefix: str, result: Any) -> None:
        for f in dataclasses.fields(result):
            value = getattr(result, f.name)
            key = f"{prefix}.{f.name}"
            if isinstance(value, bool):
                raise TypeError(f"{key}: bool result fields are not supported")
            if value is None:
                continue
            if isinstance(value, int):
                self.sizes[key] = value
            elif isinstance(value, float):
                self.values[key] = value
            elif isinstance(value, tuple):
                self.curves[key] = [float(v) for v in value]


# --- data -----------------------------------------------------------------------------------------


def _decode_mask(data: Any, *, size: int) -> torch.Tensor:
    """A mask PNG (or null = empty) -> [1, S, S] bool, thresholded at mid-grey."""
    from raygan.data.codec import decode_image

    if data is None:
        return torch.zeros(1, size, size, dtype=torch.bool)
    return decode_image(bytes(data), size=size, channels=1) > 0


def load_data(
    data_uri: str,
    *,
    size: int,
    channels: int,
    split: str | None,
    limit: int,
    settings: storage.StorageSettings | None = None,
    classes: Sequence[str] = (),
) -> EvaluationData:
    """The first `limit` rows of `split` under `data_uri`, decoded at `size`, with their phantom masks
    (labels as class indices; names resolved through `classes`)."""
    from raygan.data.shards import decode_rows, read_table
    from raygan.data.splits import filter_split

    table = read_table(data_uri, settings=settings)
    if split is not None:
        table = filter_split(table, split)
    table = table.slice(0, limit)
    batch = decode_rows(table, size=size, channels=channels, classes=classes)
    masks = {}
    for column, name in MASK_COLUMNS.items():
        if column in batch.passthrough:
            decoded = [_decode_mask(v, size=size) for v in batch.passthrough[column]]
            masks[name] = torch.stack(decoded) if decoded else torch.zeros(0, 1, size, size, dtype=torch.bool)
    return EvaluationData(batch.image_ids, batch.images, batch.labels, masks, table.num_rows, len(batch.errors))


# --- metric groups --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Explained:
    """The explanations of N images, stacked."""

    images: torch.Tensor  # [N, C, S, S]
    reconstructions: torch.Tensor  # [N, C, S, S]
    counterfactuals: torch.Tensor  # [N, C, S, S]
    p_input: torch.Tensor  # [N]
    p_reconstruction: torch.Tensor  # [N]
    p_counterfactual: torch.Tensor  # [N]
    alphas: torch.Tensor  # [F]
    probs: torch.Tensor  # [N, F]
    maps: dict[str, torch.Tensor]  # name -> [N, 1, S, S]
    explanations: tuple[Explanation, ...]  # the per-image results these were stacked from


def _explain(explainer: Explainer, data: EvaluationData, *, batch_size: int) -> _Explained:
    out: list[Explanation] = []
    for start in range(0, len(data.image_ids), batch_size):
        out += explainer.explain(data.images[start : start + batch_size],
                                 image_ids=data.image_ids[start : start + batch_size])

    def stack(name: str) -> torch.Tensor:
        return torch.stack([getattr(e, name) for e in out])

    def scalars(name: str) -> torch.Tensor:
        return torch.tensor([getattr(e, name) for e in out], dtype=torch.float32)

    return _Explained(
        images=stack("image"), reconstructions=stack("reconstruction"), counterfactuals=stack("counterfactual"),
        p_input=scalars("p_input"), p_reconstruction=scalars("p_reconstruction"),
        p_counterfactual=scalars("p_counterfactual"),
        alphas=torch.tensor(out[0].traversal_alphas, dtype=torch.float64),
        probs=torch.tensor([e.traversal_probs for e in out], dtype=torch.float64),
        # The maps every explanation has: MAPS and, with attributions, "path", less the ones this
        # classifier does not allow (e.g. no Grad-CAM for TorchScript: see Explanation.maps_skipped).
        maps={name: torch.stack([e.maps[name] for e in out]) for name in out[0].maps if all(name in e.maps for e in out)},
        explanations=tuple(out),
    )


def _explanation_metrics(sink: _Sink, ex: _Explained, *, threshold: float = 0.5) -> None:
    from raygan.metrics import flip_rate, monotone_share, proximity, reconstruction_quality

    sink.add("flip_rate", flip_rate(ex.p_input, ex.p_counterfactual, threshold=threshold))
    sink.add("monotone", monotone_share(ex.probs, ex.alphas))
    sink.add("reconstruction", reconstruction_quality(
        ex.images, ex.reconstructions, p_input=ex.p_input, p_reconstruction=ex.p_reconstruction))
    sink.add("proximity", proximity(ex.reconstructions, ex.counterfactuals))


def _honest_scores(sink: _Sink, prefix: str, explanations: Sequence[Explanation], data: EvaluationData, *,
                   classifier: FrozenClassifier, judge: FrozenClassifier | None, seed: int) -> None:
    """`raygan.scoring.score` of the explanations under `prefix`: the judge's flip rate, monotone share
    over own-z2 and fallback traversals, counterfactual realism against the data's real negatives."""
    from raygan.scoring import ExplanationArrays, score

    labels = data.labels
    negatives = data.images[labels == 0] if labels is not None else None
    positives = data.images[labels == 1] if labels is not None else None
    scores = score(ExplanationArrays.of(explanations), judge=judge, classifier=classifier, negatives=negatives,
                   positives=positives, seed=seed)
    realism = scores.realism
    sink.add(prefix, dataclasses.replace(scores, realism=None))
    if realism is not None:
        sink.add(f"{prefix}.realism", realism)


def _map_functions(
    explainer: Explainer, image_ids: Sequence[str]
) -> dict[str, Callable[[Any, torch.Tensor], torch.Tensor]]:
    """(classifier, images) -> maps [N, 1, S, S] on the CPU, per map name, for the sanity check."""
    from raygan.explain.attribution import gradcam, integrated_gradients
    from raygan.explain.explainer import Explainer

    device = explainer.device

    def diff(classifier: Any, images: torch.Tensor) -> torch.Tensor:
        # The difference map depends on C through the inversion (Eq. 2): re-invert with the
        # randomised classifier, same per-image seeds (same ids), same generator and settings.
        again = Explainer(explainer.generator, classifier, inversion=explainer.inversion,
                          traversal=explainer.traversal, device=device, attributions=False, encoder=explainer.encoder)
        return torch.stack([e.maps["diff"] for e in again.explain(images, image_ids=list(image_ids))])

    return {
        "diff": diff,
        "gradcam": lambda c, x: gradcam(c, x.to(device)).cpu(),
        "ig": lambda c, x: integrated_gradients(c, x.to(device)).cpu(),
    }


def _map_metrics(
    sink: _Sink, ex: _Explained, data: EvaluationData, explainer: Explainer, config: EvaluationConfig
) -> None:
    from raygan.metrics import (
        border_mass,
        deletion_insertion,
        localisation,
        model_randomisation,
        outside_lung_mass,
        shortcut_mass,
    )

    classifier, device = explainer.classifier, explainer.device
    side = ex.images.shape[-1]
    margin = max(1, round(config.border_fraction * side))
    positive = ex.p_input > 0.5  # faithfulness follows the positive evidence, so only positive calls count
    n_sanity = min(config.sanity_images, ex.images.shape[0])
    if "reset_parameters" in classifier.unsupported():
        n_sanity = 0  # evaluate_bundle records why in the report's `skipped`
    map_fns = _map_functions(explainer, data.image_ids[:n_sanity]) if n_sanity else {}

    def predict(x: torch.Tensor) -> torch.Tensor:
        return classifier.p_positive(x.to(device)).cpu()

    for name in (n for n in MAPS if n in ex.maps):  # the maps this classifier allows (no Grad-CAM for TorchScript)
        maps = ex.maps[name]
        if "lesion" in data.masks:
            sink.add(f"localisation.{name}", localisation(maps, data.masks["lesion"]))
        if "shortcut" in data.masks:
            sink.add(f"shortcut_mass.{name}", shortcut_mass(maps, data.masks["shortcut"]))
        if "lung" in data.masks:
            sink.add(f"outside_lung_mass.{name}", outside_lung_mass(maps, data.masks["lung"]))
        sink.add(f"border_mass.{name}", border_mass(maps, margin=margin))
        sink.add(f"faithfulness.{name}", deletion_insertion(
            predict, ex.images[positive], maps[positive], steps=config.deletion_steps,
            baseline=config.deletion_baseline, batch_size=max(64, config.deletion_steps + 1), seed=config.seed))
        if n_sanity:
            sink.add(f"sanity.{name}", model_randomisation(
                classifier, ex.images[:n_sanity], map_fns[name], layers=config.sanity_layers, seed=config.seed,
                original=maps[:n_sanity]))


def _audit(ex: _Explained, data: EvaluationData, classifier: FrozenClassifier, *, seed: int) -> list[RegionAudit]:
    """The shortcut audit of the explained images: every mask column (but the lesion truth's
    complement, the lungs) and the built-in border band, each map's verdict beside the reliance."""
    from raygan.explain.explainer import SIGNED_MAPS, signed_maps
    from raygan.fidelity.audit import audit_regions, border_band

    side = ex.images.shape[-1]
    regions = {f"{name} mask": mask for name, mask in data.masks.items()}
    regions["border band"] = border_band(side).expand(ex.images.shape[0], -1, -1, -1)
    device = classifier.mean.device

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([classifier.p_positive(x[i:i + 256].to(device)).cpu() for i in range(0, x.shape[0], 256)])

    labels = data.labels if data.labels is not None else None
    signed = signed_maps(classifier, ex.explanations, names=tuple(n for n in SIGNED_MAPS if n in ex.maps))
    return audit_regions(predict, ex.images, ex.maps, regions, labels=labels, seed=seed, signed=signed)


@torch.no_grad()
def _generated_like(generator: Any, labels: torch.Tensor, *, seed: int, batch_size: int = 256) -> torch.Tensor:
    """Generated images [N, C, S, S] (CPU) whose classes follow `labels` [N] (-1 = unlabelled: alternating)."""
    from raygan.models.generator import sample_latents

    classes = torch.where(labels >= 0, labels, torch.arange(labels.shape[0]) % 2).clamp(0, 1)
    z1, z2 = sample_latents(classes, z1_dim=generator.config.z1_dim, z2_dim=generator.config.z2_dim,
                            generator=torch.Generator().manual_seed(seed))
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        chunks = [generator(z1[i : i + batch_size].to(device), z2[i : i + batch_size].to(device)).cpu()
                  for i in range(0, classes.shape[0], batch_size)]
    finally:
        generator.train(was_training)
    return torch.cat(chunks)


# --- the whole evaluation -------------------------------------------------------------------------


def evaluate_bundle(
    bundle: Bundle,
    *,
    data_uri: str | None = None,
    config: EvaluationConfig | None = None,
    inversion: InversionConfig | None = None,
    traversal: TraversalConfig | None = None,
    device: torch.device | str | None = None,
    settings: storage.StorageSettings | None = None,
    judge: FrozenClassifier | None = None,
) -> EvaluationReport:
    """Every registered metric for `bundle`; explanation and map metrics only with `data_uri`.

    `inversion`/`traversal` default to the bundle's (tuned) settings; `device` defaults to CUDA
    when available (the Explainer's choice). `judge` (an independently trained classifier) adds the
    validity columns nothing optimised: its flip rate, with and without the counterfactual term.
    """
    from raygan.explain.explainer import Explainer
    from raygan.metrics import class_consistency, classifier_frechet

    config = config or EvaluationConfig()
    start = time.perf_counter()
    explainer = Explainer.from_bundle(bundle, inversion=inversion, traversal=traversal, device=device,
                                      no_encoder=config.no_encoder)
    sink = _Sink()
    explanations: tuple[Explanation, ...] = ()
    audit: tuple[RegionAudit, ...] = ()
    unsupported = explainer.classifier.unsupported()
    skipped = dict(explainer.maps_skipped)
    if config.sanity_images and data_uri is not None and "reset_parameters" in unsupported:
        skipped["sanity"] = f"the randomisation check needs reset_parameters(): {unsupported['reset_parameters']}"
    sink.add("class_consistency", class_consistency(
        explainer.generator, explainer.classifier, n_z1=config.n_z1, repeats=config.repeats, seed=config.seed))
    if data_uri is not None:
        data = load_data(data_uri, size=explainer.image_size, channels=explainer.channels, split=config.split,
                         limit=config.limit, settings=settings, classes=explainer.classifier.spec.classes)
        sink.sizes.update(
            {"data.rows": data.rows, "data.images": len(data.image_ids), "data.decode_errors": data.errors})
        if data.labels is not None:
            # Class indices -> 1 for the explained class, 0 for the rest (-1 stays unlabelled), for every metric below.
            target = explainer.classifier.target
            data = dataclasses.replace(
                data, labels=torch.where(data.labels >= 0, (data.labels == target).long(), data.labels))
        if data.image_ids:
            labels = data.labels if data.labels is not None else torch.full((len(data.image_ids),), -1)
            generated = _generated_like(explainer.generator, labels, seed=config.seed)
            classifier, dev = explainer.classifier, explainer.device
            if "features" in unsupported:
                skipped["frechet"] = f"needs the classifier's features(): {unsupported['features']}"
            else:
                sink.add("frechet", classifier_frechet(lambda x: classifier.features(x.to(dev)), data.images,
                                                       generated))
            explained = _explain(explainer, data, batch_size=config.batch_size)
            explanations = explained.explanations
            _explanation_metrics(sink, explained)
            judge_dev = judge.to(dev) if judge is not None else None
            _honest_scores(sink, "explanations", explanations, data, classifier=classifier, judge=judge_dev,
                           seed=config.seed)
            if config.ablation and explainer.inversion.counterfactual_weight > 0:
                plain = Explainer(explainer.generator, classifier, traversal=explainer.traversal, device=dev,
                                  inversion=dataclasses.replace(explainer.inversion, counterfactual_weight=0.0),
                                  attributions=False, encoder=explainer.encoder)
                ablated = _explain(plain, data, batch_size=config.batch_size).explanations
                _honest_scores(sink, "explanations_no_cf", ablated, data, classifier=classifier, judge=judge_dev,
                               seed=config.seed)
            if config.audit:
                audit = tuple(_audit(explained, data, classifier, seed=config.seed))
            _map_metrics(sink, explained, data, explainer, config)
    return EvaluationReport(
        bundle_uri=bundle.uri, bundle_id=explainer.bundle_id, data_uri=data_uri, values=sink.values,
        sizes=sink.sizes, curves=sink.curves, config=config, inversion=explainer.inversion,
        traversal=explainer.traversal, seconds=time.perf_counter() - start, explanations=explanations, audit=audit,
        skipped=skipped, encoder=bundle.encoder_fingerprint if explainer.encoder is not None else None,
    )


# --- output ---------------------------------------------------------------------------------------


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def to_json(report: EvaluationReport) -> dict[str, Any]:
    """A JSON-ready dict of the report (nan -> null, configs as dicts)."""
    from raygan.storage import jsonable

    return {
        "bundle_uri": report.bundle_uri,
        "bundle_id": report.bundle_id,
        "data_uri": report.data_uri,
        "values": {k: _finite_or_none(v) for k, v in report.values.items()},
        "sizes": dict(report.sizes),
        "curves": {k: [_finite_or_none(v) for v in c] for k, c in report.curves.items()},
        "config": dataclasses.asdict(report.config),
        "inversion": dataclasses.asdict(report.inversion),
        "traversal": dataclasses.asdict(report.traversal),
        "seconds": report.seconds,
        "skipped": dict(report.skipped),
        "encoder": {"used": report.encoder is not None, "fingerprint": report.encoder,
                    "encoder_steps": report.inversion.encoder_steps if report.encoder is not None else None},
        "descriptions": {name: m.description for name, m in METRICS.items()},
        "audit": jsonable([dataclasses.asdict(a) for a in report.audit]),
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _size(sizes: Mapping[str, int], prefix: str) -> str:
    """The sample size recorded under `prefix`: its "count" (or "samples", "eligible"), else its first int field."""
    for name in ("count", "samples", "eligible"):
        if f"{prefix}.{name}" in sizes:
            return str(sizes[f"{prefix}.{name}"])
    return next((str(n) for key, n in sizes.items() if key.startswith(prefix + ".")), "")


def _gate_lines(report: EvaluationReport) -> list[str]:
    """The quality gate's warning (class consistency below the threshold) and what could not be computed."""
    from raygan.quality import CONSISTENCY_THRESHOLD

    lines = []
    consistency = report.values.get("class_consistency.accuracy")
    if consistency is not None and consistency < CONSISTENCY_THRESHOLD:
        lines.append(f"- **warning**: generator class consistency {consistency:.3f} is below "
                     f"{CONSISTENCY_THRESHOLD:g}: its counterfactuals and traversals may not reflect the classifier")
    lines += [f"- not computed: {name}: {why}" for name, why in sorted(report.skipped.items())]
    return lines


def _inversion_text(report: EvaluationReport) -> str:
    """Where the inversions started and how many steps they could run."""
    if report.encoder is not None:
        return f"from the bundle's encoder `{report.encoder}`, at most {report.inversion.encoder_steps} refinement steps"
    return f"from scratch, at most {report.inversion.steps} steps"


def to_markdown(report: EvaluationReport) -> str:
    """A readable Markdown summary: one table for the generator and explanations, one per-map table."""
    lines = [
        f"# Evaluation of {report.bundle_uri}",
        "",
        f"- bundle_id: `{report.bundle_id}`",
        f"- data: {report.data_uri or 'none (generator metrics only)'}"
        + (f", split {report.config.split or 'all'}, {report.sizes.get('data.images', 0)} images"
           f" ({report.sizes.get('data.decode_errors', 0)} failed to decode)" if report.data_uri else ""),
        f"- class consistency: {report.config.n_z1} z1 x {report.config.repeats} repeat(s)",
        f"- inversion: {_inversion_text(report)}; "
        f"traversal: {report.traversal.frames} frames x {report.traversal.rate}",
        f"- wall time: {report.seconds:.1f} s",
        *_gate_lines(report),
        "",
        "| metric | field | value | n | better | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for name, metric in METRICS.items():
        if metric.scope == "map":
            continue
        for key, value in report.values.items():
            if key.startswith(name + "."):
                gloss = describe(key)
                lines.append(f"| {name} | {key[len(name) + 1:]} | {_fmt(value)} | {_size(report.sizes, name)} | "
                             f"{gloss.better_text} | {gloss.meaning} |")
    map_rows = []
    for name, metric in METRICS.items():
        if metric.scope != "map":
            continue
        fields = [f.name for f in dataclasses.fields(metric.result) if f.type in ("float", float)]
        for f in fields:
            cells = [report.values.get(f"{name}.{m}.{f}") for m in MAPS]
            if all(c is None for c in cells):
                continue
            sizes = "/".join(_size(report.sizes, f"{name}.{m}") or "-" for m in MAPS)
            gloss = describe(f"{name}.{f}")
            map_rows.append(f"| {name} | {f} | " + " | ".join(_fmt(c) for c in cells)
                            + f" | {sizes} | {gloss.better_text} | {gloss.meaning} |")
    if map_rows:
        header = "| metric | field | " + " | ".join(MAPS) + " | n | better | meaning |"
        lines += ["", header, "|---|---|" + "---|" * (len(MAPS) + 3), *map_rows]
    lines += _honest_markdown(report)
    lines += _audit_markdown(report)
    used = {k.split(".", 1)[0] for k in report.values}
    lines += ["", "Metrics:", *(f"- **{n}**: {m.description}" for n, m in METRICS.items() if n in used)]
    return "\n".join(lines) + "\n"


def _honest_markdown(report: EvaluationReport) -> list[str]:
    """Validity beside its ablation and an independent judge; monotone share split; counterfactual realism."""
    v, n = report.values, report.sizes
    if "explanations.flip_rate" not in v:
        return []
    rows = [("explanations", "shipped inversion")]
    if "explanations_no_cf.flip_rate" in v:
        rows.append(("explanations_no_cf", "counterfactual term off"))
    lines = ["", "Validity, monotonicity and realism (the counterfactual term optimises the explained classifier's "
             "flip rate, so the same inversion without it and an independent judge are shown beside it):", "",
             "| inversion | flip rate, explained C (n) | flip rate, judge (n) | monotone own z2 (n) | monotone fallback "
             "(n) | FD counterfactuals -> real negatives | FD floor (neg vs neg) | FD gap (pos vs neg) |",
             "|---|---|---|---|---|---|---|---|"]
    for prefix, name in rows:
        lines.append(
            f"| {name} | {_fmt(v.get(f'{prefix}.flip_rate'))} ({n.get(f'{prefix}.flip_eligible', 0)}) | "
            f"{_fmt(v.get(f'{prefix}.judge_flip_rate'))} ({n.get(f'{prefix}.judge_flip_eligible', 0)}) | "
            f"{_fmt(v.get(f'{prefix}.monotone_own'))} ({n.get(f'{prefix}.own_count', 0)}) | "
            f"{_fmt(v.get(f'{prefix}.monotone_fallback'))} ({n.get(f'{prefix}.fallback_count', 0)}) | "
            f"{_fmt(v.get(f'{prefix}.realism.counterfactual_to_negative'))} | {_fmt(v.get(f'{prefix}.realism.floor'))} "
            f"| {_fmt(v.get(f'{prefix}.realism.gap'))} |")
    if "explanations.judge_agreement" not in v or v["explanations.judge_agreement"] != v["explanations.judge_agreement"]:
        lines.append("\n(no independent judge given: `raygan evaluate --judge DIR` adds its column)")
    return lines


def _audit_markdown(report: EvaluationReport) -> list[str]:
    """The shortcut audit: per region, the measured reliance and each map's verdict."""
    if not report.audit:
        return []
    lines = ["", f"Shortcut audit: reliance by intervention (each region of a positive call swapped for the same "
             f"region of negative images) beside what each map says (relies = odds of the map's share >= "
             f"{report.audit[0].ratio:g} x the region's area odds; the share is the net share of the signed map "
             f"where the map has a sign, else the mass):", "",
             "| region | reliance (n) | truth | " + " | ".join(report.audit[0].maps) + " |",
             "|---|---|---|" + "---|" * len(report.audit[0].maps)]
    for a in report.audit:
        cells = []
        for name in a.maps:
            mv = a.maps.get(name)
            mark = "" if mv is None or mv.agrees is None else (" (right)" if mv.agrees else " (wrong)")
            net = "" if mv is None or mv.net is None else f", net {_fmt(mv.net)}"
            cells.append("n/a" if mv is None else f"{mv.verdict}{mark}: mass {_fmt(mv.mass)}{net} vs {_fmt(mv.chance)}")
        lines.append(f"| {a.region} | {_fmt(a.reliance.value)} ({a.reliance.count}) | {a.truth} | "
                     + " | ".join(cells) + " |")
    return lines


def write_report(
    report: EvaluationReport, out_uri: str, *, settings: storage.StorageSettings | None = None
) -> list[str]:
    """Write `evaluation.json` and `evaluation.md` under `out_uri` (a .json path: it and a .md beside it)."""
    from raygan import storage

    if out_uri.endswith(".json"):
        json_uri, md_uri = out_uri, out_uri[: -len(".json")] + ".md"
    else:
        json_uri, md_uri = storage.join(out_uri, "evaluation.json"), storage.join(out_uri, "evaluation.md")
    storage.write_text(json_uri, json.dumps(to_json(report), indent=2, allow_nan=False), settings=settings)
    storage.write_text(md_uri, to_markdown(report), settings=settings)
    return [json_uri, md_uri]


__all__ = [
    "EvaluationConfig", "EvaluationData", "EvaluationReport", "MAPS", "evaluate_bundle", "load_data", "to_json",
    "to_markdown", "write_report",
]
