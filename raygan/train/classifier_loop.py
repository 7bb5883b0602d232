"""The Ray Train worker loop that trains the classifier to be explained (when raygan trains one).

Stages: (1) context and seeds, (2) model (data-parallel) and optimiser, (3) resume, (4) epochs of
cross-entropy over this worker's shard with light augmentation, (5) metrics and a checkpoint per
epoch from rank 0. Held-out evaluation happens in the driver, through the written spec.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from raygan import console, storage
from raygan.config import ClassifierTrainConfig
from raygan.models.classifier import build_classifier
from raygan.tracking import Tracker, TrackingConfig
from raygan.train.checkpoint import report_epoch, restore_state
from raygan.train.epoch import augment, classifier_epoch, epoch_seed
from raygan.train.step import bare
from raygan.train.worker import all_reduce_sum, epoch_batches

SHUFFLE_BUFFER = 512  # rows in Ray Data's local shuffle buffer


@dataclass(frozen=True)
class ClassifierLoopConfig:
    """What the classifier loop needs; passed as `train_loop_config={"loop": ClassifierLoopConfig(...)}`."""

    config: ClassifierTrainConfig  # the recipe
    channels: int  # input channels
    settings: storage.StorageSettings  # object-storage endpoint for local-mode checkpoints
    local_checkpoints: str | None = None  # where local mode (workers = 0) keeps checkpoints
    tracking: TrackingConfig | None = None  # TensorBoard / MLflow destinations, used by rank 0; None = none


def classifier_loop(config: dict[str, Any]) -> None:
    """Ray Train `train_loop_per_worker`: AdamW on cross-entropy over the training split."""
    import ray.train
    import ray.train.torch

    loop: ClassifierLoopConfig = config["loop"]
    cfg = loop.config

    # --- 1. context and seeds ---------------------------------------------------------------
    context = ray.train.get_context()
    rank = context.get_world_rank()
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.seed)

    # --- 2. model and optimiser, 3. resume ------------------------------------------------------
    model = build_classifier(cfg.arch, image_size=cfg.image_size, channels=loop.channels)
    state = restore_state(local_root=loop.local_checkpoints, settings=loop.settings)
    start_epoch = 0
    if state is not None:
        if state["config"]["arch"] != cfg.arch or state["config"]["image_size"] != cfg.image_size:
            raise ValueError(
                f"checkpoints under this output are for {state['config']}, not {asdict(cfg)}; use a new --out"
            )
        model.load_state_dict(state["model"])
        start_epoch = int(state["epoch"]) + 1
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    shard = ray.train.get_dataset_shard("train")
    rng = torch.Generator(device=device)

    # --- 4. epochs (one bar for the stage, drawn by the driver when this runs in a Ray worker) ------
    bar = console.progress(desc="classifier epochs", total=cfg.epochs, initial=start_epoch, unit="epoch",
                           disable=rank != 0)
    tracker = Tracker(loop.tracking, settings=loop.settings, tags={"start_epoch": str(start_epoch)}) \
        if rank == 0 and loop.tracking is not None else None
    for epoch in range(start_epoch, cfg.epochs):
        seed = epoch_seed(cfg.seed, rank=rank, epoch=epoch)
        torch.manual_seed(seed)
        rng.manual_seed(seed)
        started = time.perf_counter()
        batches = epoch_batches(shard, batch_size=cfg.batch_size, device=device, seed=seed,
                                shuffle_buffer=SHUFFLE_BUFFER)
        # The per-batch update is the pure `classifier_epoch`, shared with the Ray-free study.
        totals = classifier_epoch(model, optimizer, ((b["image"], b["label"]) for b in batches), rng=rng)

        # --- 5. metrics (one host sync per epoch) and checkpoint --------------------------------
        totals = all_reduce_sum(totals)
        seconds = time.perf_counter() - started
        seen = max(float(totals[2]), 1.0)
        metrics = {"epoch": epoch, "start_epoch": start_epoch, "train_loss": float(totals[0]) / seen,
                   "train_accuracy": float(totals[1]) / seen, "images": int(totals[2]),
                   "epoch_seconds": seconds, "images_per_s": float(totals[2]) / max(seconds, 1e-9)}
        new_state = None
        if rank == 0:
            bar.set_postfix({"loss": metrics["train_loss"], "accuracy": metrics["train_accuracy"]})
            if tracker is not None:
                tracker.log(metrics, step=epoch)
            new_state = {"epoch": epoch, "model": bare(model).state_dict(), "optimizer": optimizer.state_dict(),
                         "config": asdict(cfg), "metrics": metrics}
        report_epoch(metrics, state=new_state, rank=rank, local_root=loop.local_checkpoints, keep=1,
                     settings=loop.settings)
        bar.update(1)
    bar.close()
    if tracker is not None:
        tracker.close()


__all__ = ["ClassifierLoopConfig", "augment", "classifier_loop"]
