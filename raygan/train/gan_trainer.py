"""The GAN training driver: Ray Train over the input shards, then a bundle at `out`.

`train_gan` writes the run's config, launches `gan_loop` on `train.workers` Ray Train workers
(0 = Train V2 local mode: in-process, for tests and quick runs), measures the final generator's
quality (class consistency, Frechet distance: `raygan.quality`) and turns it into a bundle
(`raygan.bundle`) that records the target class it explains. Relaunching with the same `out`
resumes from the latest checkpoint under `<out>/checkpoints` and continues the epoch counter.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch

from raygan import storage
from raygan.bundle import save_bundle
from raygan.cluster import require_shared
from raygan.config import GanConfig, InversionConfig, TrainConfig, TraversalConfig
from raygan.models.frozen import load_classifier
from raygan.models.generator import build_generator
from raygan.quality import Quality, measure_quality
from raygan.tracking import TrackingConfig
from raygan.train.cluster import check_workers_fit, ensure_ray
from raygan.train.dataset import training_dataset
from raygan.train.gan_loop import GanLoopConfig, gan_loop
from raygan.train.run import RunSpec, absolute_uri, fit_run

RUN_NAME = "gan"  # Ray Train run name under <out>/checkpoints; a relaunch with the same name resumes
RUN_CONFIG_FILE = "train_config.json"
CHECKPOINT_DIR = "checkpoints"
LOCAL_CHECKPOINT_DIR = "gan-local"  # local mode (workers = 0) keeps its own checkpoints here


@dataclass(frozen=True)
class TrainResult:
    """What a GAN training run produced."""

    bundle: str  # URI of the bundle written at `out`
    epochs: int  # epochs trained in all (across relaunches)
    start_epoch: int  # epoch this launch started from (> 0 after a resume)
    metrics: dict[str, Any]  # the last epoch's metrics (losses, class consistency, images/s, ...)
    seconds: float  # wall time of this launch
    target_class: str = ""  # the class the bundle explains (name, or output index as text)
    quality: Quality = Quality.unmeasured()  # the final generator's class consistency and Frechet distance


def train_gan(
    data_uri: str,
    classifier_uri: str,
    out: str,
    *,
    gan: GanConfig,
    train: TrainConfig,
    inversion: InversionConfig,
    traversal: TraversalConfig,
    target: int | str | None = None,
    settings: storage.StorageSettings | None = None,
    fail_once_at_epoch: int | None = None,
    probe_uri: str | None = None,
) -> TrainResult:
    """Train G and D against the frozen classifier at `classifier_uri` on the training split of
    `data_uri`; write the bundle (with `inversion`/`traversal` as its defaults) to `out`.

    `target` (a class name or output index; None: the spec's positive_index) is the class the
    GAN learns to switch on and off: z2 = 0 makes "not the target", z2 ~ N(0, I) the target.
    `fail_once_at_epoch` is a fault-tolerance test hook: one worker raises once at that epoch.
    `probe_uri` is a test hook: every rank records its node, images and G's digest per epoch there.
    """
    started = time.perf_counter()
    settings = settings or storage.StorageSettings.from_env()
    out, classifier_uri, data_uri = absolute_uri(out), absolute_uri(classifier_uri), absolute_uri(data_uri)
    # Fail here, not on every worker, if the spec or the target is wrong.
    classifier = load_classifier(classifier_uri, target=target, settings=settings)
    target_index = classifier.target
    ensure_ray(workers=train.workers)
    # Ray Data reads the shards, every worker loads the classifier, rank 0 writes samples and checkpoints.
    require_shared({"--data": data_uri, "--classifier": classifier_uri, "--out": out})
    check_workers_fit(workers=train.workers, use_gpu=train.use_gpu, what="GAN training")

    # The run's config beside its outputs (the bundle records it again).
    storage.write_json(storage.join(out, RUN_CONFIG_FILE), {
        "data": data_uri, "classifier": classifier_uri, "gan": dataclasses.asdict(gan),
        "train": dataclasses.asdict(train), "inversion": dataclasses.asdict(inversion),
        "traversal": dataclasses.asdict(traversal), "target": target_index,
    }, settings=settings)

    checkpoints = storage.join(out, CHECKPOINT_DIR)
    local_root = storage.join(checkpoints, LOCAL_CHECKPOINT_DIR) if train.workers == 0 else None
    tracking = TrackingConfig.for_run(out, run_name=RUN_NAME, params={
        "gan": dataclasses.asdict(gan), "train": dataclasses.asdict(train), "data": data_uri,
        "classifier": classifier_uri})
    loop = GanLoopConfig(
        gan=gan, train=train, classifier_uri=classifier_uri, out=out, settings=settings, tracking=tracking,
        local_checkpoints=local_root, fail_once_at_epoch=fail_once_at_epoch, target=target_index,
        fail_marker=storage.join(checkpoints, "fail-once.marker") if fail_once_at_epoch is not None else None,
        probe_uri=probe_uri,
    )
    dataset = training_dataset(data_uri, size=gan.image_size, channels=gan.channels, settings=settings)
    spec = RunSpec(name=RUN_NAME, checkpoints=checkpoints, workers=train.workers, use_gpu=train.use_gpu,
                   max_failures=train.max_failures, local_root=local_root)
    result, state = fit_run(gan_loop, loop, spec=spec, dataset=dataset, settings=settings,
                            what="training", epochs=train.epochs)
    generator = build_generator(gan)
    generator.load_state_dict(state["generator"])
    metrics = dict(result.metrics or state.get("metrics", {}))
    # The quality gate, on the final generator: class consistency and the Frechet distance to
    # (at most train.quality_samples) real training images.
    real = (torch.tensor(dataset.take_batch(train.quality_samples, batch_format="numpy")["image"])  # a copy
            if train.quality_samples else torch.zeros(0, gan.channels, gan.image_size, gan.image_size))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    quality = measure_quality(generator.to(device).eval(), classifier.to(device), real,
                              n_z1=train.consistency_samples, seed=train.seed)
    generator.cpu()
    save_bundle(
        out, generator=generator, classifier_uri=classifier_uri, train=train, inversion=inversion,
        traversal=traversal, settings=settings, target=target_index, quality=quality,
        extras={"data": data_uri, "epochs": int(state["epoch"]) + 1, "final_metrics": state.get("metrics", {})},
    )
    return TrainResult(
        bundle=out, epochs=int(state["epoch"]) + 1, start_epoch=int(metrics.get("start_epoch", state["epoch"] + 1)),
        metrics=metrics, seconds=time.perf_counter() - started, target_class=classifier.target_name, quality=quality,
    )


__all__ = ["CHECKPOINT_DIR", "TrainResult", "train_gan"]
