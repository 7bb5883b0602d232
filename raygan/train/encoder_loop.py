"""The Ray Train worker loop for the encoder (runs on every worker; `encoder_trainer.train_encoder` launches it).

Stages: (1) context and seeds, (2) models (E data-parallel; the bundle's G and C frozen on every
worker), (3) resume from the latest checkpoint, (4) epochs of the pure `encoder_epoch` over this
worker's data shard, (5) per-epoch metrics and checkpoint from rank 0, reported by every rank.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from raygan import console, storage
from raygan.bundle import load_bundle
from raygan.config import EncoderConfig
from raygan.models.encoder import build_encoder
from raygan.train.checkpoint import report_epoch, restore_state
from raygan.train.encoder_step import EncoderModels, encoder_epoch, make_encoder_optimizer
from raygan.train.epoch import epoch_seed
from raygan.train.step import bare
from raygan.train.worker import all_reduce_sum, epoch_batches

# EncoderConfig fields that change what is learned; the others (epochs, workers, ...) only how long or where.
RECIPE_FIELDS = ("width", "max_width", "batch_size", "lr", "latent_weight", "image_weight", "real_weight", "seed")


@dataclass(frozen=True)
class EncoderLoopConfig:
    """Everything the worker loop needs; passed as `train_loop_config={"loop": EncoderLoopConfig(...)}`."""

    bundle_uri: str  # the bundle whose G and C the encoder inverts (loaded on every worker)
    encoder: EncoderConfig  # the encoder and its recipe
    settings: storage.StorageSettings  # object-storage endpoint, passed explicitly (workers lack the driver's env)
    local_checkpoints: str | None = None  # local mode (workers = 0) keeps checkpoints here; None: Ray Train storage


def recipe(config: EncoderConfig) -> dict[str, Any]:
    """The fields of `config` a resumed run must share with its checkpoints."""
    return {name: getattr(config, name) for name in RECIPE_FIELDS}


def encoder_loop(config: dict[str, Any]) -> None:
    """Ray Train `train_loop_per_worker`: trains E against the bundle's frozen G and C."""
    import ray.train
    import ray.train.torch

    loop: EncoderLoopConfig = config["loop"]
    cfg = loop.encoder

    # --- 1. context and seeds ---------------------------------------------------------------
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)

    # --- 2. models: E trained data-parallel; G and C frozen, identical everywhere (no DDP) ------
    bundle = load_bundle(loop.bundle_uri, settings=loop.settings)
    generator_fp = bundle.meta["fingerprints"]["generator"]
    encoder = build_encoder(bundle.gan, cfg)
    state = restore_state(local_root=loop.local_checkpoints, settings=loop.settings)
    start_epoch = 0
    if state is not None:
        if state["recipe"] != recipe(cfg) or state["generator"] != generator_fp:
            raise ValueError(
                f"the encoder checkpoints of this run were trained with {state['recipe']} against generator "
                f"{state['generator']}, not {recipe(cfg)} against {generator_fp}; use another --storage-path"
            )
        encoder.load_state_dict(state["encoder"])
        start_epoch = int(state["epoch"]) + 1
    E = ray.train.torch.prepare_model(encoder.to(device))
    G = bundle.generator.to(device).eval()
    C = bundle.classifier.to(device).eval()
    models = EncoderModels(E, G, C)
    optimizer = make_encoder_optimizer(E, cfg)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])

    # --- 3. data and the generated half's random stream -----------------------------------------
    shard = ray.train.get_dataset_shard("train")
    rng = torch.Generator(device=device)

    # --- 4. epochs ------------------------------------------------------------------------------
    epochs = console.progress(desc="encoder epochs", total=cfg.epochs, initial=start_epoch, unit="epoch",
                              disable=rank != 0)
    for epoch in range(start_epoch, cfg.epochs):
        seed = epoch_seed(cfg.seed, rank=rank, epoch=epoch)
        rng.manual_seed(seed)  # labels and latents of the generated half
        started = time.perf_counter()
        batches = epoch_batches(shard, batch_size=cfg.batch_size, device=device, seed=seed)
        # The per-batch update is the pure `encoder_epoch`, which the GPU scripts run without Ray.
        done = encoder_epoch(models, optimizer, (b["image"] for b in batches), config=cfg,
                             inversion=bundle.inversion, positive_fraction=bundle.train.positive_fraction, rng=rng)

        # --- 5. metrics (one host sync per epoch) and checkpoint --------------------------------
        names = list(done.sums)
        counts = torch.tensor([float(done.steps), float(done.images)], device=device)
        totals = all_reduce_sum(torch.cat([torch.stack([done.sums[n] for n in names]).float(), counts]))
        seconds = time.perf_counter() - started
        steps = max(float(totals[-2]), 1.0)
        metrics: dict[str, Any] = {n: float(totals[i]) / steps for i, n in enumerate(names)}
        metrics.update(epoch=epoch, start_epoch=start_epoch, epoch_seconds=seconds, images=int(totals[-1]),
                       images_per_s=float(totals[-1]) / max(seconds, 1e-9), workers=world)
        last = epoch == cfg.epochs - 1
        new_state = None
        if rank == 0:
            epochs.set_postfix({k: metrics[k] for k in ("loss", "latent_mse", "real_loss")})
            if last or (epoch + 1) % cfg.checkpoint_every == 0:
                new_state = {
                    "epoch": epoch,
                    "encoder": bare(E).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "config": asdict(cfg),
                    "recipe": recipe(cfg),
                    "generator": generator_fp,
                    "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                }
        report_epoch(metrics, state=new_state, rank=rank, local_root=loop.local_checkpoints, settings=loop.settings)
        epochs.update(1)
    epochs.close()


__all__ = ["EncoderLoopConfig", "RECIPE_FIELDS", "encoder_loop", "recipe"]
