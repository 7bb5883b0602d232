"""The Ray Train worker loop for the GAN (runs on every worker; `gan_trainer.train_gan` launches it).

Stages: (1) context and seeds, (2) models (G and D data-parallel, C frozen on every worker),
(3) resume from the latest checkpoint, (4) epochs of `gan_step` over this worker's data shard,
(5) per-epoch metrics, sample grid and checkpoint from rank 0, reported by every rank.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from raygan import console, storage
from raygan.config import GanConfig, TrainConfig
from raygan.metrics.class_consistency import class_consistency
from raygan.models.discriminator import build_discriminator
from raygan.models.frozen import load_classifier
from raygan.models.generator import build_generator
from raygan.train.checkpoint import report_epoch, restore_state
from raygan.train.epoch import epoch_seed, gan_epoch
from raygan.tracking import Tracker, TrackingConfig
from raygan.train.step import GanModels, bare, compile_models, configure_models, make_optimizers
from raygan.train.worker import all_reduce_sum, epoch_batches

SAMPLE_COLUMNS = 8  # z1s per sample grid: a negative row (z2 = 0) above a positive row, same z1s


@dataclass(frozen=True)
class GanLoopConfig:
    """Everything the worker loop needs; passed as `train_loop_config={"loop": GanLoopConfig(...)}`."""

    gan: GanConfig  # generator / discriminator shapes
    train: TrainConfig  # the recipe
    classifier_uri: str  # classifier spec directory, loaded on every worker
    out: str  # the run's output (bundle) URI: samples go to <out>/samples
    settings: storage.StorageSettings  # object-storage endpoint, passed explicitly (workers lack the driver's env)
    local_checkpoints: str | None = None  # local mode (workers = 0) keeps checkpoints here; None: Ray Train storage
    fail_once_at_epoch: int | None = None  # fault-tolerance test hook: the last rank raises once at this epoch
    fail_marker: str | None = None  # URI of the marker file that makes the hook fire only once
    target: int | None = None  # classifier output the GAN learns to switch on (z2) and off (z2 = 0); None: positive_index
    tracking: TrackingConfig | None = None  # TensorBoard / MLflow destinations, used by rank 0; None = none
    probe_uri: str | None = None  # test hook: every rank writes what each epoch trained on here (`write_probe`)


def sample_grid_png(generator: nn.Module, z1: torch.Tensor, z2: torch.Tensor) -> bytes:
    """PNG of G(z1, 0) (top row) above G(z1, z2) (bottom row): the class latent's effect per z1."""
    from PIL import Image
    from torchvision.utils import make_grid

    assert z1.shape[0] == z2.shape[0], (z1.shape, z2.shape)  # [K, z1_dim], [K, z2_dim]
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            negative = generator(z1, torch.zeros_like(z2))  # [K, C, S, S]
            positive = generator(z1, z2)  # [K, C, S, S]
    finally:
        generator.train(was_training)
    images = torch.cat([negative, positive]).float().cpu()  # [2K, C, S, S]
    grid = make_grid(images, nrow=z1.shape[0], padding=2, value_range=(-1, 1), normalize=True)
    array = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()  # [H, W, 3]
    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if generator.config.channels == 1 else array).save(buffer, format="PNG")
    return buffer.getvalue()


def _rank_local_buffers() -> dict[str, bool]:
    """DDP keyword that stops the per-forward buffer broadcast (renamed in torch 2.14; the GPU box has 2.11)."""
    from torch.nn.parallel import DistributedDataParallel

    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def gan_loop(config: dict[str, Any]) -> None:
    """Ray Train `train_loop_per_worker`: trains G and D against the frozen C (Eq. 1)."""
    import ray.train
    import ray.train.torch

    loop: GanLoopConfig = config["loop"]
    gan, train = loop.gan, loop.train

    # --- 1. context and seeds ---------------------------------------------------------------
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(train.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)

    # --- 2. models: G and D wrapped separately (one wrapper around both breaks DDP) ------------
    generator, discriminator = build_generator(gan), build_discriminator(gan)
    classifier = load_classifier(loop.classifier_uri, target=loop.target, settings=loop.settings)
    state = restore_state(local_root=loop.local_checkpoints, settings=loop.settings)
    start_epoch = 0
    if state is not None:
        if state["gan"] != asdict(gan):
            raise ValueError(
                f"the checkpoints under this output were trained with {state['gan']}, not {asdict(gan)}; "
                "use a new --out (or the same preset) to train this model"
            )
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        start_epoch = int(state["epoch"]) + 1
    models = configure_models(GanModels(generator, discriminator, classifier), train=train, device=device)
    G = ray.train.torch.prepare_model(models.generator)
    # D runs twice before one backward (real, fake): per-rank batch-norm buffers avoid DDP's
    # in-place buffer broadcast between those forwards.
    D = ray.train.torch.prepare_model(models.discriminator, parallel_strategy_kwargs=_rank_local_buffers())
    C = models.classifier  # frozen and identical everywhere: no DDP, just on the device
    models = GanModels(G, D, C)
    if train.compile and device.type == "cuda":
        models = compile_models(models)
        G, D = models.generator, models.discriminator
    opt_g, opt_d = make_optimizers(models, train)
    if state is not None:
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])

    # --- 3. fixed latents for the sample grid (the consistency metric draws its own from the seed)
    fixed = torch.Generator().manual_seed(train.seed + 1)
    grid_z1 = torch.randn(SAMPLE_COLUMNS, gan.z1_dim, generator=fixed).to(device)
    grid_z2 = torch.randn(SAMPLE_COLUMNS, gan.z2_dim, generator=fixed).to(device)
    shard = ray.train.get_dataset_shard("train")
    rng = torch.Generator(device=device)

    # --- 4. epochs ------------------------------------------------------------------------------
    # One bar for the stage, drawn by the driver (tqdm_ray) when this runs in a Ray worker.
    epochs = console.progress(desc="GAN epochs", total=train.epochs, initial=start_epoch, unit="epoch",
                              disable=rank != 0)
    tracker = Tracker(loop.tracking, settings=loop.settings, tags={"start_epoch": str(start_epoch)}) \
        if rank == 0 and loop.tracking is not None else None
    for epoch in range(start_epoch, train.epochs):
        _maybe_fail(loop, rank=rank, world=world, epoch=epoch)
        seed = epoch_seed(train.seed, rank=rank, epoch=epoch)
        torch.manual_seed(seed)  # D's dropout
        rng.manual_seed(seed)  # labels and latents
        started = time.perf_counter()
        batches = epoch_batches(shard, batch_size=train.batch_size, device=device, seed=seed)
        images_in = (b["image"] for b in batches)
        digests: list[str] = []  # the probe's record of this rank's images; stays empty without a probe
        if loop.probe_uri is not None:
            images_in = _digested(images_in, digests)
        # The per-batch update is the pure `gan_epoch` (gan_step per batch), shared with the Ray-free study.
        done = gan_epoch(models, opt_g, opt_d, images_in, train=train, rng=rng)
        means, images = done.means, done.images

        # --- 5. metrics (one host sync per epoch), samples and checkpoint --------------------------
        names = list(means.sums)
        steps_done = torch.tensor(float(means.steps), device=device)
        totals = all_reduce_sum(torch.stack([means.sums[n] for n in names] + [steps_done, images]).float())
        seconds = time.perf_counter() - started
        steps = max(float(totals[-2]), 1.0)
        metrics: dict[str, Any] = {n: float(totals[i]) / steps for i, n in enumerate(names)}
        metrics.update(epoch=epoch, start_epoch=start_epoch, epoch_seconds=seconds, images=int(totals[-1]),
                       images_per_s=float(totals[-1]) / max(seconds, 1e-9), workers=world)
        last = epoch == train.epochs - 1
        checkpoint_now = last or (epoch + 1) % train.checkpoint_every == 0
        new_state = None
        if rank == 0:
            consistency = class_consistency(bare(G), C, n_z1=train.consistency_samples, repeats=1, seed=train.seed)
            metrics.update(class_consistency=consistency.accuracy, negative_accuracy=consistency.negative_accuracy,
                           positive_accuracy=consistency.positive_accuracy)
            png = sample_grid_png(bare(G), grid_z1, grid_z2)
            grid_uri = storage.join(loop.out, "samples", f"epoch-{epoch:04d}.png")
            storage.write_bytes(grid_uri, png, settings=loop.settings)
            epochs.set_postfix({k: metrics[k] for k in ("d_loss", "g_adv", "g_class", "class_consistency")})
            if tracker is not None:
                tracker.log(metrics, step=epoch)
            if checkpoint_now:
                new_state = {
                    "epoch": epoch,
                    "generator": bare(G).state_dict(),
                    "discriminator": bare(D).state_dict(),
                    "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(),
                    "gan": asdict(gan),
                    "train": asdict(train),
                    "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                }
        if loop.probe_uri is not None:
            write_probe(loop.probe_uri, settings=loop.settings, rank=rank, world=world, epoch=epoch,
                        start_epoch=start_epoch, images=digests, generator=bare(G))
        report_epoch(metrics, state=new_state, rank=rank, local_root=loop.local_checkpoints, settings=loop.settings)
        epochs.update(1)
    epochs.close()
    if tracker is not None:
        tracker.close()


def image_digest(image: torch.Tensor) -> str:
    """SHA-1 of one decoded image's float32 bytes: names an image without its image_id (not in the shard)."""
    return hashlib.sha1(image.detach().cpu().contiguous().float().numpy().tobytes()).hexdigest()


def parameters_digest(model: nn.Module) -> str:
    """SHA-1 over a model's parameters in name order: equal on two ranks iff their weights are bitwise equal.
    (Buffers are left out: batch-norm running statistics are per rank by design.)"""
    sha = hashlib.sha1()
    for name, parameter in sorted(model.named_parameters()):
        sha.update(name.encode())
        sha.update(parameter.detach().cpu().float().contiguous().numpy().tobytes())
    return sha.hexdigest()


def _digested(images: Iterator[torch.Tensor], into: list[str]) -> Iterator[torch.Tensor]:
    """Pass the batches through unchanged, appending each image's digest to `into`."""
    for batch in images:  # [B, C, S, S]
        into.extend(image_digest(image) for image in batch)
        yield batch


def write_probe(uri: str, *, settings: storage.StorageSettings, rank: int, world: int, epoch: int,
                start_epoch: int, images: list[str], generator: nn.Module) -> None:
    """Test hook: `<uri>/epoch-NNNN-rank-R-<id>.json` with this rank's node, the digests of the images it
    trained on this epoch and of G's parameters after the epoch. The random id keeps a retried epoch's record
    beside the failed attempt's."""
    import ray

    record = {"rank": rank, "world": world, "epoch": epoch, "start_epoch": start_epoch,
              "node_id": ray.get_runtime_context().get_node_id(), "images": images,
              "generator": parameters_digest(generator), "time": time.time()}
    name = f"epoch-{epoch:04d}-rank-{rank}-{uuid.uuid4().hex[:8]}.json"
    storage.write_json(storage.join(uri, name), record, settings=settings)


def _maybe_fail(loop: GanLoopConfig, *, rank: int, world: int, epoch: int) -> None:
    """Test hook: the last rank raises once at `fail_once_at_epoch` (a marker file stops a repeat)."""
    if loop.fail_once_at_epoch != epoch or rank != world - 1:
        return
    if loop.fail_marker is None:
        raise ValueError("fail_once_at_epoch needs fail_marker (a URI) so the retry does not fail again")
    if storage.exists(loop.fail_marker, settings=loop.settings):
        return
    storage.write_text(loop.fail_marker, f"failed once at epoch {epoch} on rank {rank}\n", settings=loop.settings)
    raise RuntimeError(f"injected failure at epoch {epoch} on rank {rank} (fail_once_at_epoch test hook)")


__all__ = ["GanLoopConfig", "epoch_seed", "gan_loop", "image_digest", "parameters_digest",
           "sample_grid_png", "write_probe"]
