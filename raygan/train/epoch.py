"""One training epoch over batches of tensors, pure torch: the part of training that needs no Ray.

The Ray Train worker loops (`classifier_loop`, `gan_loop`) feed these functions the batches of
their Ray Data shard; the in-process study (`raygan.study`, run on a bare GPU box without Ray)
feeds them batches sliced from tensors already in memory (`batch_indices`). Either way the same
per-batch update runs, so a number measured by one path holds for the other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raygan.config import TrainConfig
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from raygan.train.step import GanModels, MetricMeans, bare, gan_step

MAX_SHIFT = 0.06  # random translation, as a fraction of the image side
MAX_GAIN = 0.1  # random contrast gain 1 +- this
MAX_OFFSET = 0.05  # random brightness offset +- this, on the [0, 1] scale


@dataclass(frozen=True)
class GanEpoch:
    """What one GAN epoch did, still on the device (one host sync per epoch, by the caller)."""

    means: MetricMeans  # running sums of the step metrics and the number of steps
    images: torch.Tensor  # 0-d float: real images seen


def epoch_seed(seed: int, *, rank: int, epoch: int) -> int:
    """Per-rank, per-epoch seed: a resumed epoch draws the same latents and dropout as the original
    run did, without storing RNG states in the checkpoint. It also seeds Ray Data's local shuffle,
    but that order is reproducible only for the same blocks arriving in the same order, which
    streaming execution does not promise (tests/train/test_worker.py)."""
    return (seed * 1_000_003 + rank * 10_007 + epoch) % 2**63


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


def classifier_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    rng: torch.Generator | None = None,
    bf16: bool = False,
    channels_last: bool = False,
) -> torch.Tensor:
    """Cross-entropy steps over (images [N, C, S, S] in [-1, 1], labels [N]) batches, augmented.

    Returns [3] on the model's device: summed loss, correct predictions, images (one host sync
    per epoch, by the caller; sums so that data-parallel workers can all-reduce them). `bf16`
    autocasts the forward pass (CUDA only); `channels_last` feeds NHWC images.
    """
    device = next(model.parameters()).device
    model.train()
    totals = torch.zeros(3, device=device)  # loss sum, correct, images
    cast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if bf16 and device.type == "cuda" \
        else contextlib.nullcontext()
    for images, labels in batches:
        assert images.ndim == 4, images.shape  # [N, C, S, S]
        assert labels.shape == (images.shape[0],), (labels.shape, images.shape)  # [N]
        images, labels = augment(images, generator=rng), labels.long()
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with cast:
            logits = model(images)  # [N, 2]
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        totals += torch.stack([loss.detach() * labels.shape[0], (logits.argmax(1) == labels).sum().float(),
                               torch.tensor(float(labels.shape[0]), device=device)])
    return totals


def ema_model(generator: nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of `generator` (weights and batch-norm buffers), or None when
    decay is 0. The average is what a bundle keeps: smoother samples than the last step's G."""
    if decay <= 0:
        return None
    return AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def gan_epoch(
    models: GanModels,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    batches: Iterable[torch.Tensor],
    *,
    train: TrainConfig,
    rng: torch.Generator | None = None,
    ema: AveragedModel | None = None,
) -> GanEpoch:
    """`gan_step` (Eq. 1) over every batch of real images [N, C, S, S] in [-1, 1]; `ema` follows G after each step."""
    device = next(models.generator.parameters()).device
    means = MetricMeans(device)
    images = torch.zeros((), device=device)
    for real in batches:
        means.add(gan_step(models, opt_g, opt_d, real, train=train, rng=rng))
        if ema is not None:
            ema.update_parameters(bare(models.generator))
        images += real.shape[0]
    return GanEpoch(means=means, images=images)


def batch_indices(
    n: int, *, batch_size: int, seed: int, device: torch.device | str = "cpu", drop_last: bool = True
) -> Iterator[torch.Tensor]:
    """Shuffled index batches [B] (int64, on `device`) over `n` in-memory rows, for slicing tensors.

    The order comes from a CPU generator seeded with `seed`, so it is the same on any device.
    `drop_last` skips a final short batch, as the Ray loops do (and a compiled step sees one shape).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


__all__ = ["GanEpoch", "augment", "batch_indices", "classifier_epoch", "ema_model", "epoch_seed", "gan_epoch"]
