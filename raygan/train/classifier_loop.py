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
import torch.nn.functional as F

from raygan import storage
from raygan.config import ClassifierTrainConfig
from raygan.models.classifier import build_classifier
from raygan.train.checkpoint import report_epoch, restore_state
from raygan.train.gan_loop import all_reduce_sum, epoch_seed
from raygan.train.step import bare

MAX_SHIFT = 0.06  # random translation, as a fraction of the image side
MAX_GAIN = 0.1  # random contrast gain 1 +- this
MAX_OFFSET = 0.05  # random brightness offset +- this, on the [0, 1] scale
SHUFFLE_BUFFER = 512  # rows in Ray Data's local shuffle buffer


@dataclass(frozen=True)
class ClassifierLoopConfig:
    """What the classifier loop needs; passed as `train_loop_config={"loop": ClassifierLoopConfig(...)}`."""

    config: ClassifierTrainConfig  # the recipe
    channels: int  # input channels
    settings: storage.StorageSettings  # object-storage endpoint for local-mode checkpoints
    local_checkpoints: str | None = None  # where local mode (workers = 0) keeps checkpoints


def augment(images: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Small random translations and brightness/contrast jitter of [-1, 1] images [N, C, S, S].

    No flips: chest X-rays have a handedness (the heart is on the left) a classifier may rely on.
    """
    assert images.ndim == 4, images.shape  # [N, C, S, S]
    n, device = images.shape[0], images.device
    shift = (torch.rand(n, 2, device=device, generator=generator) * 2 - 1) * MAX_SHIFT * 2  # grid units span 2
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    moved = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain = 1 + (torch.rand(n, 1, 1, 1, device=device, generator=generator) * 2 - 1) * MAX_GAIN
    offset = (torch.rand(n, 1, 1, 1, device=device, generator=generator) * 2 - 1) * MAX_OFFSET
    unit = ((moved + 1) / 2 - 0.5) * gain + 0.5 + offset  # contrast about mid-grey, then brightness
    return (unit.clamp(0, 1) * 2 - 1).contiguous()


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

    # --- 4. epochs ------------------------------------------------------------------------------
    for epoch in range(start_epoch, cfg.epochs):
        seed = epoch_seed(cfg.seed, rank=rank, epoch=epoch)
        torch.manual_seed(seed)
        rng.manual_seed(seed)
        model.train()
        totals = torch.zeros(3, device=device)  # loss sum, correct, images
        started = time.perf_counter()
        for batch in shard.iter_torch_batches(
            batch_size=cfg.batch_size, drop_last=True, device=device,
            local_shuffle_buffer_size=SHUFFLE_BUFFER, local_shuffle_seed=seed,
        ):
            images, labels = augment(batch["image"], generator=rng), batch["label"].long()  # [N, C, S, S], [N]
            logits = model(images)  # [N, 2]
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            totals += torch.stack([loss.detach() * labels.shape[0], (logits.argmax(1) == labels).sum().float(),
                                   torch.tensor(float(labels.shape[0]), device=device)])

        # --- 5. metrics (one host sync per epoch) and checkpoint --------------------------------
        totals = all_reduce_sum(totals)
        seconds = time.perf_counter() - started
        seen = max(float(totals[2]), 1.0)
        metrics = {"epoch": epoch, "start_epoch": start_epoch, "train_loss": float(totals[0]) / seen,
                   "train_accuracy": float(totals[1]) / seen, "images": int(totals[2]),
                   "epoch_seconds": seconds, "images_per_s": float(totals[2]) / max(seconds, 1e-9)}
        new_state = None
        if rank == 0:
            print(f"classifier epoch {epoch + 1}/{cfg.epochs}: loss {metrics['train_loss']:.4f} "
                  f"accuracy {metrics['train_accuracy']:.3f} ({metrics['images_per_s']:.0f} img/s)")
            new_state = {"epoch": epoch, "model": bare(model).state_dict(), "optimizer": optimizer.state_dict(),
                         "config": asdict(cfg), "metrics": metrics}
        report_epoch(metrics, state=new_state, rank=rank, local_root=loop.local_checkpoints, keep=1,
                     settings=loop.settings)


__all__ = ["ClassifierLoopConfig", "augment", "classifier_loop"]
