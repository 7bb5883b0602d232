"""A study: one end-to-end results run on real labelled images, in-process, without Ray.

Stages (each prints its progress and its seconds):
  1. data: read the input shards, split 80/10/10 by image_id, decode each split once into tensors;
  2. classifier: train the preset's classifier on the training split (the same per-batch update as
     the Ray Train loop, `raygan.train.epoch`), score it on the test split (accuracy, ROC AUC), save
     it as a classifier spec;
  3. GAN: train the preset's GAN against the frozen classifier on the training split with the pure
     Eq. 1 step of Ray Train (`raygan.train.step`: bf16, channels_last and torch.compile on CUDA as
     the preset says), save a bundle;
  4. evaluation: `evaluate_bundle` on the test split with the preset's shipped inversion, then the
     authors' recipe (`AUTHORS_INVERSION`, 5000 steps) on the same test images, scored batched
     (inversion is batch-independent, so batched quality equals batch-1 quality);
  5. figures and results: Figure-2 pictures of positive and negative test images, `results.json`
     and `results.md` (raygan's default vs the authors' recipe vs the paper).

Training stages stop after the epoch that crosses their wall-clock cap, and the authors' recipe is
run on fewer test images when a timed probe says all of them would not fit in its cap: a run on an
unmeasured GPU cannot overrun its slot, and the epochs and sample sizes actually used are recorded.
No Ray: torch, torchvision, numpy, pyarrow, PIL, tqdm and matplotlib, plus captum (Grad-CAM, IG) and
pytorch_msssim (SSIM), so it runs on a bare GPU machine from the source tree (`benchmarks/gpu_realdata.sh`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from raygan import storage
from raygan.config import AUTHORS_INVERSION, InversionConfig, Preset, preset, replace

if TYPE_CHECKING:
    import pyarrow as pa
    from torch import nn

    from raygan.scoring import ExplanationScores

    from raygan.bundle import Bundle
    from raygan.explain.explainer import Explanation
    from raygan.models.frozen import FrozenClassifier

PROBE_STEPS = 10  # inversion steps timed to predict the authors' 5000-step run
JUDGE_ARCH = "max_cnn"  # the independent judge's architecture (about small_cnn's training cost)
PROBE_MARGIN = 1.15  # the prediction is scaled by this (traversal, SSIM, a slower chunk)
MIN_AUTHORS_IMAGES = 8  # below this the authors' recipe is skipped rather than scored on too few images
SAMPLE_COLUMNS = 8  # z1s in the generator sample grid


@dataclass(frozen=True)
class StudyConfig:
    """What a study runs, on how much data, and how long each stage may take."""

    data: str  # labelled input shards (e.g. the cxr128 shards): local path, file:// or s3://
    out: str  # output directory / prefix: classifier/, bundle/, figures/, results.json, results.md
    preset: str = "small"  # model preset: "paper" (VGG16-bn, 128 px), "small" (64 px CPU), "tiny" (tests)
    classifier_epochs: int | None = None  # classifier epochs; None = the preset's
    gan_epochs: int | None = None  # GAN epochs; None = the preset's
    compile: bool | None = None  # torch.compile G, D and C on CUDA; None = the preset's
    classifier_cap_s: float = math.inf  # classifier training stops after the epoch that crosses this many seconds
    gan_cap_s: float = math.inf  # GAN training stops after the epoch that crosses this many seconds
    authors_cap_s: float = math.inf  # the authors' recipe runs on fewer test images when all would take longer
    explain_images: int = 64  # test images explained (the first ones of the test split, in shard order)
    authors_steps: int = AUTHORS_INVERSION.steps  # the authors' inversion steps (their recipe: 5000)
    consistency_z1: int = 1000  # class consistency: structure latents per repeat (x 4 samples; paper 1000)
    consistency_repeats: int = 10  # class consistency: repeats (paper 1000)
    sanity_images: int = 8  # images re-explained with a randomised classifier (0 skips the sanity check)
    eval_batch: int = 64  # images per Explainer call (both recipes)
    figures: int = 4  # Figure-2 pictures of raygan's explanations: half positives, half negatives
    seed: int = 0  # seeds weights, data order, latents and the evaluation
    device: str | None = None  # torch device; None = CUDA when available
    threads: int | None = None  # torch CPU threads; None = torch's default (1 beats 2 on a busy 2-core machine)
    encoder_epochs: int = 0  # > 0: train the preset's encoder after the GAN, attach it to the bundle and explain
    #                          the same test images from E(x) + encoder_steps steps (0: no encoder stage)
    encoder_cap_s: float = math.inf  # encoder training stops after the epoch that crosses this many seconds

    def __post_init__(self) -> None:
        if self.explain_images < 1 or self.eval_batch < 1 or self.authors_steps < 1 or self.figures < 0:
            raise ValueError(f"invalid study config: {self}")


@dataclass(frozen=True)
class SplitImages:
    """One split of the labelled data, decoded once."""

    image_ids: list[str]  # ids of the rows that decoded, in shard order
    images: torch.Tensor  # [N, C, S, S] float32 in [-1, 1], on the CPU
    labels: torch.Tensor  # [N] int64, 1 = positive


@dataclass(frozen=True)
class ClassifierStage:
    """What the classifier stage trained and how it scores on held-out images."""

    uri: str  # the classifier spec directory written
    arch: str  # network family
    epochs: int  # epochs run (fewer than planned when the wall-clock cap stopped training)
    planned: int  # epochs asked for
    test_accuracy: float  # share of test images with (p > 0.5) == label
    test_auc: float  # ROC AUC on the test split
    val_accuracy: float  # accuracy on the validation split
    val_auc: float  # ROC AUC on the validation split
    train_loss: float  # mean cross-entropy of the last epoch (augmented training images)
    train_accuracy: float  # accuracy of the last epoch on augmented training images
    judge_uri: str  # the independent judge (max_cnn, another seed, same training split) that validity is checked with
    judge_test_accuracy: float  # its test accuracy


@dataclass(frozen=True)
class GanStage:
    """What the GAN stage trained."""

    uri: str  # the bundle written
    epochs: int  # epochs run (fewer than planned when the wall-clock cap stopped training)
    planned: int  # epochs asked for
    final: dict[str, float]  # the last epoch's mean losses, D outputs, class consistency (few z1s) and images/s


@dataclass(frozen=True)
class StudyResult:
    """Where a study put its outputs, and its headline numbers (all of them are in `results`)."""

    out: str  # the study's output prefix
    results_uri: str  # results.json
    markdown_uri: str  # results.md
    bundle_uri: str  # the trained bundle
    classifier_uri: str  # the trained classifier spec
    figures: list[str]  # PNG URIs: Figure-2 pictures and the generator sample grid
    classifier_test_accuracy: float  # held-out accuracy of the classifier
    class_consistency: float  # generator class consistency (paper: 0.9115)
    results: dict[str, Any]  # the contents of results.json
    seconds: float  # wall time of the whole study


# --- stage 1: data --------------------------------------------------------------------------------


def decode_split(table: pa.Table, split: str, *, size: int, channels: int = 1) -> SplitImages:
    """The rows of `split` (hash of image_id) of a labelled input table, decoded at `size`."""
    from raygan.data.shards import decode_rows
    from raygan.data.splits import filter_split

    rows = filter_split(table, split)  # type: ignore[arg-type]
    batch = decode_rows(rows, size=size, channels=channels)
    if batch.errors:
        print(f"    {split}: {len(batch.errors)} of {rows.num_rows} rows failed to decode and are left out "
              f"(first: {batch.errors[0].image_id}: {batch.errors[0].message})")
    if batch.labels is None or bool((batch.labels < 0).any()):
        raise ValueError("a study needs a 'label' column (1 = positive) on every row of the input shards")
    return SplitImages(batch.image_ids, batch.images, batch.labels)


def _load(config: StudyConfig, p: Preset) -> dict[tuple[str, int], SplitImages]:
    """(split, size) -> decoded images, for the classifier's and the GAN's sizes."""
    from tqdm import tqdm

    from raygan.data.shards import read_table

    table = read_table(config.data, columns=["image_id", "image", "label"])
    wanted = {("train", p.classifier.image_size), ("val", p.classifier.image_size),
              ("test", p.classifier.image_size), ("train", p.gan.image_size)}
    return {key: decode_split(table, key[0], size=key[1], channels=p.gan.channels)
            for key in tqdm(sorted(wanted), desc="decode", unit="split")}


# --- stage 2: classifier --------------------------------------------------------------------------


@torch.no_grad()
def _score(classifier: Any, data: SplitImages, device: torch.device, batch: int = 256) -> tuple[float, float]:
    """(accuracy, ROC AUC) of a FrozenClassifier on one split."""
    from raygan.train.classifier_trainer import roc_auc

    if not data.image_ids:
        return math.nan, math.nan
    p = torch.cat([classifier.p_positive(data.images[i:i + batch].to(device)).cpu()
                   for i in range(0, len(data.image_ids), batch)])
    y = data.labels
    return float(((p > 0.5).long() == y).double().mean()), roc_auc(p.double().numpy(), y.numpy())


def _train_classifier(config: StudyConfig, p: Preset, splits: dict, device: torch.device) -> ClassifierStage:
    from raygan.models.classifier import build_classifier, factory_path
    from raygan.models.frozen import ClassifierSpec, load_classifier, save_classifier
    from raygan.train.local import fit_classifier

    cfg = replace(p.classifier, epochs=config.classifier_epochs, seed=config.seed)
    train = splits[("train", cfg.image_size)]
    torch.manual_seed(cfg.seed)
    model = build_classifier(cfg.arch, image_size=cfg.image_size, channels=p.gan.channels).to(device)
    fit = fit_classifier(model, train.images, train.labels, config=cfg, cap_s=config.classifier_cap_s,
                         log=lambda line: print(line, flush=True))
    epochs_run = fit.epochs
    last = {k: fit.final[k] for k in ("train_loss", "train_accuracy")}

    # The spec maps [-1, 1] images unchanged into the model (mean = std = 0.5), as `raygan train-classifier`.
    spec = ClassifierSpec(
        format="factory", weights="model.pt", factory=factory_path(cfg.arch),
        factory_kwargs={"image_size": cfg.image_size, "channels": p.gan.channels}, size=cfg.image_size,
        channels=p.gan.channels, mean=(0.5,) * p.gan.channels, std=(0.5,) * p.gan.channels,
    )
    uri = save_classifier(model.cpu().to(memory_format=torch.contiguous_format), storage.join(config.out, "classifier"),
                          spec=spec)
    classifier = load_classifier(uri).to(device)  # scored through the written spec, as a bundle loads it
    test_acc, test_auc = _score(classifier, splits[("test", cfg.image_size)], device)
    val_acc, val_auc = _score(classifier, splits[("val", cfg.image_size)], device)
    print(f"    classifier {cfg.arch}: test accuracy {test_acc:.3f}, ROC AUC {test_auc:.3f} "
          f"(val {val_acc:.3f} / {val_auc:.3f})")

    # The independent judge: another architecture and seed on the same split, so that validity is not
    # judged only by the classifier the inversion optimised against.
    judge_cfg = replace(cfg, arch=JUDGE_ARCH, seed=cfg.seed + 1000)
    torch.manual_seed(judge_cfg.seed)
    judge_model = build_classifier(JUDGE_ARCH, image_size=cfg.image_size, channels=p.gan.channels).to(device)
    fit_classifier(judge_model, train.images, train.labels, config=judge_cfg, cap_s=config.classifier_cap_s,
                   log=lambda line: print(line, flush=True))
    judge_spec = dataclasses.replace(spec, factory=factory_path(JUDGE_ARCH))
    judge_uri = save_classifier(judge_model.cpu().to(memory_format=torch.contiguous_format),
                                storage.join(config.out, "judge"), spec=judge_spec)
    judge_acc, _ = _score(load_classifier(judge_uri).to(device), splits[("test", cfg.image_size)], device)
    print(f"    judge {JUDGE_ARCH}: test accuracy {judge_acc:.3f}")
    return ClassifierStage(uri=uri, arch=cfg.arch, epochs=epochs_run, planned=cfg.epochs, test_accuracy=test_acc,
                           test_auc=test_auc, val_accuracy=val_acc, val_auc=val_auc, **last, judge_uri=judge_uri,
                           judge_test_accuracy=judge_acc)


# --- stage 3: GAN ---------------------------------------------------------------------------------


def _train_gan(config: StudyConfig, p: Preset, splits: dict, classifier_uri: str, device: torch.device
               ) -> GanStage:
    from raygan.bundle import save_bundle
    from raygan.models.frozen import load_classifier
    from raygan.train.local import fit_gan

    train = replace(p.train, epochs=config.gan_epochs, seed=config.seed, compile=config.compile, workers=0,
                    use_gpu=device.type == "cuda")
    generator, fit = fit_gan(splits[("train", p.gan.image_size)].images, load_classifier(classifier_uri).to(device),
                             gan=p.gan, train=train, cap_s=config.gan_cap_s, log=lambda line: print(line, flush=True))
    epochs_run, last = fit.epochs, fit.final
    uri = storage.join(config.out, "bundle")
    save_bundle(uri, generator=generator, classifier_uri=classifier_uri,
                train=replace(train, epochs=epochs_run), inversion=p.inversion, traversal=p.traversal,
                extras={"data": config.data, "epochs": epochs_run, "final_metrics": last, "by": "raygan study"})
    return GanStage(uri=uri, epochs=epochs_run, planned=train.epochs, final=last)


# --- stage 4: evaluation --------------------------------------------------------------------------


def _encoder_stage(config: StudyConfig, p: Preset, splits: dict, bundle_uri: str, explained: Sequence[Explanation], *,
                   judge: FrozenClassifier, test: SplitImages, device: torch.device) -> dict[str, Any]:
    """Train the encoder (in-process, `fit_encoder`), attach it to the bundle, explain the shipped explanations'
    images from E(x), and compare: both inversions timed on the same images at the same batch, every score by
    the one scoring path, paired 95% intervals of the per-image differences (encoder minus shipped)."""
    from raygan.bundle import attach_encoder, load_bundle
    from raygan.explain.explainer import Explainer
    from raygan.explain.inversion import invert
    from raygan.metrics.bootstrap import bootstrap
    from raygan.scoring import ExplanationArrays, per_image
    from raygan.train.local import fit_encoder

    bundle = load_bundle(bundle_uri)
    g, c = bundle.generator.to(device), bundle.classifier.to(device)
    cfg = replace(p.encoder, epochs=config.encoder_epochs, seed=config.seed, use_gpu=device.type == "cuda")
    encoder, fit = fit_encoder(splits[("train", p.gan.image_size)].images, g, c, config=cfg, inversion=bundle.inversion,
                               positive_fraction=bundle.train.positive_fraction, cap_s=config.encoder_cap_s,
                               log=lambda line: print(line, flush=True))
    attach_encoder(bundle_uri, encoder=encoder.cpu(), data=config.data, metrics=fit.final, epochs=fit.epochs)
    with_encoder = load_bundle(bundle_uri)
    images = torch.stack([e.image for e in explained]).to(device)
    ids = [e.image_id for e in explained]
    batch = config.eval_batch

    def timed(enc: Any) -> float:
        _sync(device)
        start = time.perf_counter()
        for i in range(0, len(ids), batch):
            invert(g, c, images[i:i + batch], config=bundle.inversion, keys=ids[i:i + batch], encoder=enc)
        _sync(device)
        return time.perf_counter() - start

    invert(g, c, images[:2], config=replace(bundle.inversion, steps=2, encoder_steps=2), keys=ids[:2],
           encoder=with_encoder.encoder.to(device))  # warm-up
    seconds = {"shipped": timed(None), "encoder": timed(with_encoder.encoder.to(device))}
    explainer = Explainer.from_bundle(with_encoder, device=device, attributions=False)
    from_encoder = [e for i in range(0, len(ids), batch)
                    for e in explainer.explain(images[i:i + batch].cpu(), image_ids=ids[i:i + batch])]
    shipped_values = per_image(ExplanationArrays.of(list(explained)), judge=judge)
    encoder_values = per_image(ExplanationArrays.of(from_encoder), judge=judge)
    paired = {}
    for name in ("recon_mse", "p_gap", "flipped", "judge_flipped", "monotone_own"):
        i = bootstrap([getattr(encoder_values, name).tolist()], minus=[getattr(shipped_values, name).tolist()],
                      seed=config.seed)
        paired[name] = {"value": i.value, "ci95": i.as_list(), "n": i.n}
    scores = explanation_scores(from_encoder, judge=judge, classifier=c, test=test, seed=config.seed)
    print(f"    encoder: {fit.epochs} epochs in {fit.seconds:.0f} s; inversion of {len(ids)} images "
          f"{seconds['encoder']:.1f} s from E(x) against {seconds['shipped']:.1f} s shipped "
          f"({seconds['shipped'] / max(seconds['encoder'], 1e-9):.1f}x)", flush=True)
    return {"epochs": fit.epochs, "planned": fit.planned, "train_seconds": fit.seconds, "final": fit.final,
            "encoder_steps": bundle.inversion.encoder_steps, "inversion_seconds": seconds,
            "speed_ratio": seconds["shipped"] / max(seconds["encoder"], 1e-9), "images": len(ids),
            "scores": dataclasses.asdict(scores), "minus_shipped": paired}


def explanation_scores(
    explanations: Sequence[Explanation], *, judge: FrozenClassifier | None = None,
    classifier: FrozenClassifier | None = None, test: SplitImages | None = None, seed: int = 0,
) -> ExplanationScores:
    """One recipe's explanations scored by the one scoring path (`raygan.scoring`): the judge's flip
    rate beside C's, monotone share split own-z2 / fallback, realism against the test split's negatives."""
    from raygan.scoring import ExplanationArrays, score

    assert explanations, "no explanations to score"
    arrays = ExplanationArrays.of(explanations)
    negatives = positives = None
    if test is not None and classifier is not None:
        size = arrays.images.shape[-1]
        images = test.images if test.images.shape[-1] == size else torch.nn.functional.interpolate(
            test.images, size=(size, size), mode="bilinear", antialias=True)
        negatives, positives = images[test.labels == 0], images[test.labels == 1]
    return score(arrays, judge=judge, classifier=classifier, negatives=negatives, positives=positives, seed=seed)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def authors_sample_size(
    generator: nn.Module, classifier: FrozenClassifier, images: torch.Tensor, ids: list[str], *,
    config: InversionConfig, cap_s: float, batch: int, device: torch.device,
) -> tuple[int, float]:
    """(test images the authors' recipe can invert within `cap_s`, predicted seconds for them).

    A few steps are timed at the batch the run will use; while the prediction exceeds the cap the
    sample is halved (and re-timed, since a GPU step barely gets cheaper with a smaller batch).
    Returns (0, prediction) when even MIN_AUTHORS_IMAGES would not fit.
    """
    from raygan.explain.inversion import invert

    assert images.ndim == 4 and images.shape[0] == len(ids), (images.shape, len(ids))  # [N, C, S, S]
    g, c = generator.to(device), classifier.to(device)
    n = images.shape[0]
    while True:
        b = min(n, batch)
        x = images[:b].to(device)
        invert(g, c, x, config=dataclasses.replace(config, steps=2), keys=ids[:b])  # warm-up (cudnn, allocator)
        _sync(device)
        t0 = time.perf_counter()
        invert(g, c, x, config=dataclasses.replace(config, steps=PROBE_STEPS), keys=ids[:b])
        _sync(device)
        per_step = (time.perf_counter() - t0) / PROBE_STEPS
        predicted = per_step * config.steps * math.ceil(n / b) * PROBE_MARGIN
        print(f"    authors' recipe: {per_step * 1e3:.1f} ms/step at batch {b} -> ~{predicted:.0f} s for {n} images "
              f"x {config.steps} steps (cap {cap_s:.0f} s)", flush=True)
        if predicted <= cap_s:
            return n, predicted
        if n <= MIN_AUTHORS_IMAGES:
            return 0, predicted
        n = max(MIN_AUTHORS_IMAGES, n // 2)


def _explain_authors(bundle: Bundle, images: torch.Tensor, ids: list[str], *, config: InversionConfig,
                     batch: int, device: torch.device) -> list[Explanation]:
    from tqdm import tqdm

    from raygan.explain.explainer import Explainer

    explainer = Explainer(bundle.generator, bundle.classifier, inversion=config, traversal=bundle.traversal,
                          device=device, attributions=False)
    out: list[Explanation] = []
    for start in tqdm(range(0, len(ids), batch), desc="authors' recipe", unit="batch"):
        out += explainer.explain(images[start:start + batch], image_ids=ids[start:start + batch])
    return out


# --- stage 5: figures -----------------------------------------------------------------------------


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _figure_name(kind: str, index: int, image_id: str) -> str:
    return f"{kind}-{index}-{re.sub(r'[^A-Za-z0-9_-]', '_', image_id)[:40]}.png"


def _figures(config: StudyConfig, bundle: Bundle, explained: Sequence[Explanation], authors: Sequence[Explanation],
             labels: dict[str, int]) -> list[str]:
    """Figure-2 pictures of the first positive and negative test images, the authors' picture of the
    first positive beside them, and a G(z1, 0) / G(z1, z2) sample grid."""
    from raygan.render import explanation_figure
    from raygan.train.gan_loop import sample_grid_png

    folder = storage.join(config.out, "figures")
    half = config.figures // 2
    chosen = ([("positive", e) for e in explained if labels.get(e.image_id) == 1][: config.figures - half]
              + [("negative", e) for e in explained if labels.get(e.image_id) == 0][:half])
    uris = []
    for kind, expl in chosen:
        index = sum(k == kind for k, _ in chosen[: len(uris) + 1])  # 1-based within its kind
        uris.append(storage.join(folder, _figure_name(f"raygan-{kind}", index, expl.image_id)))
        storage.write_bytes(uris[-1], _png(explanation_figure(expl)))
    by_id = {e.image_id: e for e in authors}
    first = next((e for kind, e in chosen if kind == "positive" and e.image_id in by_id), None)
    if first is not None:
        uris.append(storage.join(folder, _figure_name("authors-positive", 1, first.image_id)))
        storage.write_bytes(uris[-1], _png(explanation_figure(by_id[first.image_id])))
    rng = torch.Generator().manual_seed(config.seed + 1)
    z1 = torch.randn(SAMPLE_COLUMNS, bundle.gan.z1_dim, generator=rng)
    z2 = torch.randn(SAMPLE_COLUMNS, bundle.gan.z2_dim, generator=rng)
    device = next(bundle.generator.parameters()).device
    uris.append(storage.join(folder, "samples.png"))
    storage.write_bytes(uris[-1], sample_grid_png(bundle.generator, z1.to(device), z2.to(device)))
    return uris


# --- the whole study ------------------------------------------------------------------------------


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {os.cpu_count()} cores ({torch.get_num_threads()} torch threads)"


def run_study(config: StudyConfig) -> StudyResult:
    """Run every stage; writes under `config.out` and returns the headline numbers and where things are."""
    from raygan.bundle import load_bundle
    from raygan.evaluate import EvaluationConfig, evaluate_bundle, to_markdown, write_report
    from raygan.study_report import results_json, results_markdown
    from raygan.storage import jsonable

    started = time.perf_counter()
    p = preset(config.preset)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    seconds: dict[str, float] = {}
    storage.write_json(storage.join(config.out, "study.json"), jsonable(dataclasses.asdict(config)))
    print(f"raygan study: preset {p.name} on {device} ({_device_name(device)}), torch {torch.__version__}; "
          f"data {config.data}; out {config.out}", flush=True)

    def stage(title: str) -> float:
        print(f"\n=== {title} ===", flush=True)
        return time.perf_counter()

    def done(name: str, t: float) -> None:
        seconds[name] = time.perf_counter() - t
        print(f"    ({name}: {seconds[name]:.1f} s)", flush=True)

    t = stage("1/5 data: read, split 80/10/10 by image_id, decode once")
    splits = _load(config, p)
    counts = {s: len(splits[(s, p.classifier.image_size)].image_ids) for s in ("train", "val", "test")}
    print(f"    train {counts['train']}, val {counts['val']}, test {counts['test']} images")
    done("data", t)

    t = stage(f"2/5 classifier: {p.classifier.arch} at {p.classifier.image_size} px")
    classifier = _train_classifier(config, p, splits, device)
    done("classifier", t)

    t = stage(f"3/5 GAN: {p.name} preset ({p.gan.arch}, {p.gan.image_size} px) against the frozen classifier")
    gan = _train_gan(config, p, splits, classifier.uri, device)
    done("gan", t)

    t = stage(f"4/5 evaluation: {config.explain_images} test images, raygan's shipped inversion")
    bundle = load_bundle(gan.uri)
    from raygan.models.frozen import load_classifier

    judge = load_classifier(classifier.judge_uri).to(device)
    report = evaluate_bundle(bundle, data_uri=config.data, device=device, judge=judge, config=EvaluationConfig(
        limit=config.explain_images, split="test", n_z1=config.consistency_z1, repeats=config.consistency_repeats,
        batch_size=config.eval_batch, sanity_images=min(config.sanity_images, config.explain_images),
        seed=config.seed))
    write_report(report, storage.join(config.out, "evaluation"))
    print(to_markdown(report))
    explained = list(report.explanations)
    done("evaluation", t)

    authors_config = dataclasses.replace(AUTHORS_INVERSION, steps=config.authors_steps)
    t = stage(f"4/5 the authors' recipe ({config.authors_steps} steps, a = 4, b = 1, Adam 0.01) "
                         "on the same test images")
    images = torch.stack([e.image for e in explained])  # [N, C, S, S]
    ids = [e.image_id for e in explained]
    n, predicted = authors_sample_size(bundle.generator, bundle.classifier, images, ids, config=authors_config,
                                       cap_s=config.authors_cap_s, batch=config.eval_batch, device=device)
    authors = _explain_authors(bundle, images[:n], ids[:n], config=authors_config, batch=config.eval_batch,
                               device=device) if n else []
    if not n:
        print(f"    skipped: even {MIN_AUTHORS_IMAGES} images would take ~{predicted:.0f} s "
              f"(cap {config.authors_cap_s:.0f} s)")
    done("authors", t)

    test_split = splits[("test", p.classifier.image_size)]
    encoder_stage = None
    if config.encoder_epochs > 0:
        t = stage(f"4/5 the encoder: {config.encoder_epochs} epochs on the training split, then the same test images "
                  f"from E(x) + {bundle.inversion.encoder_steps} steps")
        encoder_stage = _encoder_stage(config, p, splits, gan.uri, explained, judge=judge, test=test_split,
                                       device=device)
        done("encoder", t)

    def scored(explanations: Sequence[Explanation]) -> ExplanationScores:
        return explanation_scores(explanations, judge=judge, classifier=bundle.classifier.to(device), test=test_split,
                                  seed=config.seed)

    t = stage("5/5 figures and results")
    labels = dict(zip(splits[("test", p.classifier.image_size)].image_ids,
                      splits[("test", p.classifier.image_size)].labels.tolist()))
    figures = _figures(config, bundle, explained, authors, labels)
    done("figures", t)
    seconds["total"] = time.perf_counter() - started

    results = results_json(
        config=config, preset=p, gpu=_device_name(device), date=dt.datetime.now(dt.UTC).isoformat(
            timespec="seconds"), classifier=classifier, gan=gan, report=report,
        raygan=scored(explained), paired=scored(explained[:n]) if n else None,
        authors=scored(authors) if authors else None, authors_config=authors_config,
        authors_predicted_s=predicted, counts=counts, labels=labels, ids=ids,
        figures=[u.rsplit("/", 1)[-1] for u in figures], seconds=seconds, encoder=encoder_stage,
    )
    results_uri, markdown_uri = storage.join(config.out, "results.json"), storage.join(config.out, "results.md")
    storage.write_json(results_uri, results)
    storage.write_text(markdown_uri, results_markdown(results))
    print(f"\nresults: {results_uri}\n         {markdown_uri}\ntotal {seconds['total']:.0f} s", flush=True)
    return StudyResult(
        out=config.out, results_uri=results_uri, markdown_uri=markdown_uri, bundle_uri=gan.uri,
        classifier_uri=classifier.uri, figures=figures, classifier_test_accuracy=classifier.test_accuracy,
        class_consistency=float(report.values["class_consistency.accuracy"]), results=results,
        seconds=seconds["total"],
    )


__all__ = [
    "JUDGE_ARCH", "ClassifierStage", "GanStage", "SplitImages", "StudyConfig", "StudyResult",
    "authors_sample_size", "decode_split", "explanation_scores", "run_study",
]
