"""The encoder training driver: Ray Train over the input shards, then `encoder.pt` in the bundle.

`train_encoder` launches `encoder_loop` on `config.workers` Ray Train workers (0 = Train V2 local
mode: in-process, for tests and quick runs) against the bundle's frozen G and C, measures on
training images whether E(x) is a better start than the optimisation's own (the mean inversion
loss at each), and writes `encoder.pt` plus the `encoder` section of bundle.json
(`raygan.bundle.attach_encoder`). Checkpoints go under `<bundle>/checkpoints` (or
`storage_path`), in a run named after the recipe and the generator, so a relaunch of the same
recipe resumes and another seed or recipe starts its own run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import torch

from raygan import storage
from raygan.bundle import attach_encoder, load_bundle
from raygan.config import EncoderConfig
from raygan.explain.inversion import image_key, initial_latents
from raygan.models.encoder import Encoder, build_encoder
from raygan.train.cluster import check_workers_fit, ensure_ray
from raygan.train.dataset import training_dataset
from raygan.train.encoder_loop import EncoderLoopConfig, encoder_loop, recipe
from raygan.train.encoder_step import start_loss
from raygan.train.gan_trainer import CHECKPOINT_DIR
from raygan.train.run import RunSpec, absolute_uri, fit_run

START_SAMPLES = 64  # training images on which E(x) and the from-scratch start are compared after training


@dataclass(frozen=True)
class EncoderTrainResult:
    """What an encoder training run produced."""

    bundle: str  # the bundle that now holds encoder.pt
    epochs: int  # epochs trained in all (across relaunches)
    start_epoch: int  # epoch this launch started from (> 0 after a resume)
    metrics: dict[str, Any]  # the last epoch's metrics and the start-loss comparison
    fingerprint: str  # fingerprint of encoder.pt (hashed into the bundle_id of explanations that use it)
    seconds: float  # wall time of this launch


def run_name(config: EncoderConfig, generator_fp: str) -> str:
    """`encoder-<hash>` of the recipe and the generator: the same recipe resumes, another one starts fresh."""
    payload = json.dumps({"recipe": recipe(config), "generator": generator_fp}, sort_keys=True)
    return f"encoder-{hashlib.sha256(payload.encode()).hexdigest()[:10]}"


def compare_starts(encoder: Encoder, bundle: Any, images: torch.Tensor) -> dict[str, float]:
    """Mean inversion loss over `images` [N, C, S, S] at E(x), at the optimisation's own start (the
    bundle's z1/z2 init, seeded by each image's bytes as `invert` does without keys) and at z = 0,
    and the share of images whose E(x) beats both."""
    assert images.ndim == 4, images.shape  # [N, C, S, S]
    if images.shape[0] == 0:
        return {}
    inversion, gan = bundle.inversion, bundle.gan
    with torch.no_grad():
        z1_e, z2_e = encoder.eval()(images)
    keys = [image_key(img) for img in images]
    z1_s, z2_s = initial_latents(keys, z1_dim=gan.z1_dim, z2_dim=gan.z2_dim,
                                 config=dataclasses.replace(inversion, restarts=1))
    g, c = bundle.generator, bundle.classifier
    at_encoder = start_loss(g, c, images, z1_e, z2_e, inversion=inversion)  # [N]
    at_scratch = start_loss(g, c, images, z1_s, z2_s, inversion=inversion)  # [N]
    at_zero = start_loss(g, c, images, torch.zeros_like(z1_e), torch.zeros_like(z2_e), inversion=inversion)  # [N]
    better = (at_encoder < torch.minimum(at_scratch, at_zero)).float().mean()
    return {"start_loss_encoder": float(at_encoder.mean()), "start_loss_scratch": float(at_scratch.mean()),
            "start_loss_zero": float(at_zero.mean()), "start_better_share": float(better),
            "start_samples": images.shape[0]}


def train_encoder(
    bundle_uri: str,
    data_uri: str,
    *,
    config: EncoderConfig,
    storage_path: str | None = None,
    settings: storage.StorageSettings | None = None,
) -> EncoderTrainResult:
    """Train E on the training split of `data_uri` against the bundle's frozen G and C; save it in the bundle."""
    started = time.perf_counter()
    settings = settings or storage.StorageSettings.from_env()
    bundle_uri, data_uri = absolute_uri(bundle_uri), absolute_uri(data_uri)
    bundle = load_bundle(bundle_uri, settings=settings)  # fails here, not on every worker, on a bad bundle
    build_encoder(bundle.gan, config)  # refuses a generator size the encoder cannot read
    ensure_ray(workers=config.workers)
    check_workers_fit(workers=config.workers, use_gpu=config.use_gpu, what="encoder training")

    name = run_name(config, bundle.meta["fingerprints"]["generator"])
    checkpoints = absolute_uri(storage_path) if storage_path else storage.join(bundle_uri, CHECKPOINT_DIR)
    local_root = storage.join(checkpoints, f"{name}-local") if config.workers == 0 else None
    storage.write_json(storage.join(checkpoints, f"{name}.json"), {
        "bundle": bundle_uri, "data": data_uri, "encoder": dataclasses.asdict(config)}, settings=settings)
    loop = EncoderLoopConfig(bundle_uri=bundle_uri, encoder=config, settings=settings, local_checkpoints=local_root)
    dataset = training_dataset(data_uri, size=bundle.gan.image_size, channels=bundle.gan.channels, settings=settings)
    spec = RunSpec(name=name, checkpoints=checkpoints, workers=config.workers, use_gpu=config.use_gpu,
                   max_failures=config.max_failures, local_root=local_root)
    _, state = fit_run(encoder_loop, loop, spec=spec, dataset=dataset, settings=settings,
                       what="encoder training", epochs=config.epochs)
    encoder = build_encoder(bundle.gan, config)
    encoder.load_state_dict(state["encoder"])
    encoder.eval().requires_grad_(False)
    real = torch.tensor(dataset.take_batch(START_SAMPLES, batch_format="numpy")["image"])  # [n, C, S, S], a copy
    metrics = {**state.get("metrics", {}), **compare_starts(encoder, bundle, real)}
    epochs = int(state["epoch"]) + 1
    section = attach_encoder(bundle_uri, encoder=encoder, data=data_uri, metrics=metrics, epochs=epochs,
                             settings=settings)
    return EncoderTrainResult(
        bundle=bundle_uri, epochs=epochs, start_epoch=int(metrics.get("start_epoch", epochs)), metrics=metrics,
        fingerprint=section["fingerprint"], seconds=time.perf_counter() - started,
    )


__all__ = ["EncoderTrainResult", "START_SAMPLES", "compare_starts", "run_name", "train_encoder"]
