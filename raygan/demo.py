"""`raygan demo`: the whole pipeline end to end on the embedded phantoms, on a laptop CPU.

phantoms (with a planted shortcut) -> classifier (Ray Train) -> GAN (Ray Train) -> class
consistency and the explanation metrics -> explanations of a few test images ->
`<out>/report.html`. Each stage is skipped when its output already exists, so a rerun picks up
where an interrupted one stopped. `--data` swaps the phantoms for other labelled shards. (The
larger real-data run, `make results-cpu`, is `raygan study`: the GPU results pipeline without Ray.)
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from raygan import storage
from raygan.config import Preset, preset, replace


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs and how long it trains."""

    out: str = "runs/demo"  # everything is written under here
    data: str | None = None  # input shards; None = generate phantoms under <out>/data
    preset: str = "small"  # model preset (64 px, CPU-sized)
    phantoms: int = 2000  # phantoms generated when no --data is given
    world: str = "mixed"  # phantom world (raygan.data.phantoms.WORLDS): lesions = label, a marker in 80% / 20%
    classifier_epochs: int = 4  # classifier training epochs
    gan_epochs: int = 10  # GAN training epochs
    explain_images: int = 16  # test images explained and shown in the report
    consistency_z1: int = 250  # class consistency: z1 per repeat (x 4 samples each)
    consistency_repeats: int = 4  # class consistency: repeats
    seed: int = 0  # seeds the phantoms and both trainings


@dataclass(frozen=True)
class DemoResult:
    """Where the demo put things and the headline numbers."""

    bundle: str  # the trained bundle
    report: str  # the HTML report
    evaluation: list[str]  # evaluation.json and evaluation.md
    classifier_accuracy: float  # held-out accuracy of the classifier
    class_consistency: float  # generator class consistency (paper: 91.15%)
    seconds: float  # wall time of this run


def _stage(name: str) -> tuple[str, float]:
    print(f"\n=== {name} ===", flush=True)
    return name.split(":")[0], time.perf_counter()


def _done(stage: tuple[str, float]) -> None:
    name, start = stage
    print(f"    {name} done in {time.perf_counter() - start:.0f} s", flush=True)


HEADLINE = ("class_consistency.accuracy", "flip_rate.value", "monotone.share", "reconstruction.mse")


def _headline(values: dict[str, float], md_uri: str) -> None:
    """The evaluation's key numbers with their meaning, one line each; the full table is in the file."""
    from raygan.metrics.glossary import describe

    for key in HEADLINE:
        if key in values:
            gloss = describe(key)
            value = values[key]
            shown = "n/a" if value is None or value != value else f"{value:.3f}"
            print(f"    {gloss.label}: {shown} ({gloss.better_text}; {gloss.meaning})")
    print(f"    every metric, with its meaning: {md_uri}")


def run_demo(config: DemoConfig) -> DemoResult:
    """Run every stage of the pipeline; returns where the outputs are."""
    from raygan.bundle import BUNDLE_FILE, load_bundle
    from raygan.data.phantoms import world_config, write_phantoms
    from raygan.evaluate import EvaluationConfig, evaluate_bundle, write_report
    from raygan.render import explanation_report
    from raygan.train.classifier_trainer import train_classifier
    from raygan.train.gan_trainer import train_gan
    from raygan.train.run import absolute_uri

    started = time.perf_counter()
    out = absolute_uri(config.out)
    p: Preset = preset(config.preset)
    storage.write_json(storage.join(out, "demo.json"), dataclasses.asdict(config))

    # --- 1. data ---------------------------------------------------------------------------------
    data = config.data or storage.join(out, "data")
    if config.data is None and not storage.list_files(data, suffix=".parquet"):
        t = _stage(f"1/5 phantoms: {config.phantoms} chest X-ray phantoms at {p.gan.image_size} px, "
                   f"{config.world} world")
        write_phantoms(world_config(config.world, n=config.phantoms, size=p.gan.image_size, seed=config.seed), data)
        _done(t)

    # --- 2. the classifier being explained ---------------------------------------------------------
    classifier = storage.join(out, "classifier")
    if not storage.exists(storage.join(classifier, "classifier.json")):
        t = _stage(f"2/5 classifier: {p.classifier.arch}, {config.classifier_epochs} epochs on Ray Train")
        train_classifier(data, classifier, config=replace(p.classifier, epochs=config.classifier_epochs,
                                                             seed=config.seed, workers=1, use_gpu=False))
        _done(t)
    scores = storage.read_json(storage.join(classifier, "metrics.json"))
    accuracy = float(scores["test"]["accuracy"])
    print(f"    classifier held-out accuracy {accuracy:.3f}, ROC AUC {scores['test']['auc']:.3f}")

    # --- 3. the GAN against the frozen classifier (resumes from its checkpoints) --------------------
    bundle_uri = storage.join(out, "bundle")
    t = _stage(f"3/5 GAN: {config.preset} preset, {config.gan_epochs} epochs on Ray Train")
    train_gan(data, classifier, bundle_uri, gan=p.gan,
              train=replace(p.train, epochs=config.gan_epochs, seed=config.seed, workers=1, use_gpu=False),
              inversion=p.inversion, traversal=p.traversal)
    _done(t)
    assert storage.exists(storage.join(bundle_uri, BUNDLE_FILE))

    # --- 4. metrics: class consistency and the explanation metrics on test images -------------------
    t = _stage(f"4/5 evaluation: class consistency + explanations of {config.explain_images} test images")
    bundle = load_bundle(bundle_uri)
    report = evaluate_bundle(bundle, data_uri=data, device="cpu", config=EvaluationConfig(
        limit=config.explain_images, n_z1=config.consistency_z1, repeats=config.consistency_repeats,
        sanity_images=min(4, config.explain_images), seed=config.seed))
    evaluation = write_report(report, storage.join(out, "evaluation"))
    _headline(dict(report.values), evaluation[-1])
    _done(t)

    # --- 5. the report ------------------------------------------------------------------------------
    t = _stage("5/5 report")
    page = storage.join(out, "report.html")
    storage.write_text(page, explanation_report(
        report.explanations, report.values, title=f"raygan demo: {len(report.explanations)} test images",
        quality=bundle.quality, audit=report.audit))
    _done(t)
    consistency = float(report.values["class_consistency.accuracy"])
    print(f"\nclass consistency {consistency:.4f} (paper: 0.9115); report: {page}")
    print(f"open it with: python -m webbrowser file://{Path(page).resolve()}")
    return DemoResult(bundle=bundle_uri, report=page, evaluation=evaluation, classifier_accuracy=accuracy,
                      class_consistency=consistency, seconds=time.perf_counter() - started)


def demo_config(**overrides: object) -> DemoConfig:
    """The default demo config with the given (non-None) overrides."""
    return replace(DemoConfig(), **overrides)


def summary_json(result: DemoResult) -> str:
    """The result as one JSON line (the last line the demo prints)."""
    return json.dumps(dataclasses.asdict(result))
