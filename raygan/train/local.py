"""In-process training of the classifier, the GAN and the encoder on tensors already in memory, without Ray.

The same per-batch updates as the Ray Train loops (`raygan.train.epoch`), fed by `batch_indices`
over decoded tensors: what `raygan study` and the fidelity benchmark run on a bare GPU box or a
laptop core, where Ray's start-up would cost more than the training. Each fit stops after the
epoch that crosses its wall-clock cap, and says how many epochs it ran.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from raygan.config import ClassifierTrainConfig, EncoderConfig, GanConfig, InversionConfig, TrainConfig
from raygan.models.frozen import FrozenClassifier
from raygan.train.epoch import batch_indices, classifier_epoch, ema_model, epoch_seed, gan_epoch

Log = Callable[[str], None]
LOG_LINES = 25  # a long run prints about this many epoch lines (the first, every k-th, the last)


@dataclass(frozen=True)
class Fit:
    """What one in-process training run did."""

    epochs: int  # epochs run (fewer than planned when the wall-clock cap stopped training)
    planned: int  # epochs asked for
    seconds: float  # wall time of the training
    final: dict[str, float]  # the last epoch's means (losses, accuracy or D outputs, consistency, images/s)


def _quiet(_: str) -> None:
    return None


def _stop(started: float, cap_s: float, epoch: int, epochs: int, log: Log) -> bool:
    """True when the cap is crossed before the last epoch (the epoch that crossed it is kept)."""
    if time.perf_counter() - started >= cap_s and epoch + 1 < epochs:
        log(f"    wall-clock cap of {cap_s:.0f} s reached: stopping after {epoch + 1} of {epochs} epochs")
        return True
    return False


def fit_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    config: ClassifierTrainConfig,
    cap_s: float = math.inf,
    log: Log = _quiet,
    name: str = "classifier",
) -> Fit:
    """Train `model` (on its device) with AdamW and cross-entropy on images [N, C, S, S] in [-1, 1], labels [N]."""
    assert images.ndim == 4 and labels.shape == (images.shape[0],), (images.shape, labels.shape)  # [N, C, S, S], [N]
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    images, labels = images.to(device), labels.to(device)
    rng = torch.Generator(device=device)
    started, epochs_run, last = time.perf_counter(), 0, {"train_loss": math.nan, "train_accuracy": math.nan}
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        seed = epoch_seed(config.seed, rank=0, epoch=epoch)
        torch.manual_seed(seed)  # dropout
        rng.manual_seed(seed)  # augmentation
        batches = ((images[i], labels[i]) for i in batch_indices(images.shape[0], batch_size=config.batch_size,
                                                                 seed=seed, device=device))
        totals = classifier_epoch(model, optimizer, batches, rng=rng, bf16=cuda, channels_last=cuda).tolist()
        seen = max(totals[2], 1.0)
        epochs_run = epoch + 1
        last = {"train_loss": totals[0] / seen, "train_accuracy": totals[1] / seen,
                "images_per_s": totals[2] / max(time.perf_counter() - t0, 1e-9)}
        log(f"{name} epoch {epoch + 1}/{config.epochs}: loss {last['train_loss']:.4f} accuracy "
            f"{last['train_accuracy']:.3f} ({last['images_per_s']:.0f} img/s, {time.perf_counter() - started:.0f} s)")
        if _stop(started, cap_s, epoch, config.epochs, log):
            break
    if cuda:
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    return Fit(epochs=epochs_run, planned=config.epochs, seconds=time.perf_counter() - started, final=last)


def fit_gan(
    real: torch.Tensor,
    classifier: FrozenClassifier,
    *,
    gan: GanConfig,
    train: TrainConfig,
    cap_s: float = math.inf,
    log: Log = _quiet,
) -> tuple[nn.Module, Fit]:
    """Train a fresh G (and D) by Eq. 1 against the frozen `classifier` on real images [N, C, S, S].

    Everything runs on the classifier's device. Returns the bare generator in eval mode.
    """
    from raygan.metrics.class_consistency import class_consistency
    from raygan.models.discriminator import build_discriminator
    from raygan.models.generator import build_generator
    from raygan.train.step import GanModels, bare, compile_models, configure_models, make_optimizers

    assert real.ndim == 4, real.shape  # [N, C, S, S]
    device = classifier.mean.device  # the wrapper's normalisation buffer sits where the classifier does
    real = real.to(device)
    torch.manual_seed(train.seed)
    models = configure_models(GanModels(build_generator(gan), build_discriminator(gan), classifier), train=train,
                              device=device)
    # The per-epoch consistency check reads C through its uncompiled network: a compiled C would be
    # recompiled for no_grad fp32 calls, which costs more than the check itself.
    monitor = FrozenClassifier(models.classifier.model, models.classifier.spec).to(device)
    if train.compile and device.type == "cuda":
        models = compile_models(models)
    opt_g, opt_d = make_optimizers(models, train)
    ema = ema_model(bare(models.generator), train.ema_decay)
    rng = torch.Generator(device=device)
    every = max(1, train.epochs // LOG_LINES)
    started, epochs_run, last = time.perf_counter(), 0, {}
    for epoch in range(train.epochs):
        t0 = time.perf_counter()
        seed = epoch_seed(train.seed, rank=0, epoch=epoch)
        torch.manual_seed(seed)  # D's dropout
        rng.manual_seed(seed)  # labels and latents
        batches = (real[i] for i in batch_indices(real.shape[0], batch_size=train.batch_size, seed=seed, device=device))
        done = gan_epoch(models, opt_g, opt_d, batches, train=train, rng=rng, ema=ema)
        means = {k: float(v) for k, v in done.means.means().items()}
        seconds = time.perf_counter() - t0
        shown = ema.module if ema is not None else bare(models.generator)
        consistency = class_consistency(shown, monitor, n_z1=train.consistency_samples, seed=train.seed).accuracy
        epochs_run = epoch + 1
        last = {**means, "class_consistency": consistency, "images_per_s": float(done.images) / max(seconds, 1e-9)}
        stop = _stop(started, cap_s, epoch, train.epochs, log)
        if epoch == 0 or stop or (epoch + 1) % every == 0 or epoch + 1 == train.epochs:
            log(f"gan epoch {epoch + 1}/{train.epochs}: d {means['d_loss']:.3f} g_adv {means['g_adv']:.3f} "
                f"g_class {means['g_class']:.3f} consistency {consistency:.3f} ({last['images_per_s']:.0f} img/s, "
                f"{time.perf_counter() - started:.0f} s)")
        if stop:
            break
    generator = (ema.module if ema is not None else bare(models.generator)).eval()
    return generator, Fit(epochs=epochs_run, planned=train.epochs, seconds=time.perf_counter() - started, final=last)


def fit_encoder(
    real: torch.Tensor,
    generator: nn.Module,
    classifier: FrozenClassifier,
    *,
    config: EncoderConfig,
    inversion: InversionConfig,
    positive_fraction: float = 0.5,
    cap_s: float = math.inf,
    log: Log = _quiet,
) -> tuple[nn.Module, Fit]:
    """Train a fresh encoder E(x) -> (z1, z2) against the frozen G and C on real images [N, C, S, S]
    (the per-batch update of `raygan train-encoder`: `raygan.train.encoder_step.encoder_epoch`).

    Runs on the classifier's device; returns E in eval mode.
    """
    from raygan.models.encoder import build_encoder
    from raygan.train.encoder_step import EncoderModels, encoder_epoch, make_encoder_optimizer

    assert real.ndim == 4, real.shape  # [N, C, S, S]
    device = classifier.mean.device
    real = real.to(device)
    torch.manual_seed(config.seed)
    encoder = build_encoder(generator.config, config).to(device)  # type: ignore[arg-type]
    optimizer = make_encoder_optimizer(encoder, config)
    models = EncoderModels(encoder, generator.to(device).eval(), classifier)
    rng = torch.Generator(device=device)
    every = max(1, config.epochs // LOG_LINES)
    started, epochs_run, last = time.perf_counter(), 0, {}
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        seed = epoch_seed(config.seed, rank=0, epoch=epoch)
        rng.manual_seed(seed)  # labels and latents of the generated half
        batches = (real[i] for i in batch_indices(real.shape[0], batch_size=config.batch_size, seed=seed, device=device))
        done = encoder_epoch(models, optimizer, batches, config=config, inversion=inversion,
                             positive_fraction=positive_fraction, rng=rng)
        last = done.means()
        last["images_per_s"] = done.images / max(time.perf_counter() - t0, 1e-9)
        epochs_run = epoch + 1
        stop = _stop(started, cap_s, epoch, config.epochs, log)
        if epoch == 0 or stop or (epoch + 1) % every == 0 or epoch + 1 == config.epochs:
            log(f"encoder epoch {epoch + 1}/{config.epochs}: loss {last.get('loss', math.nan):.4f} "
                f"({last['images_per_s']:.0f} img/s, {time.perf_counter() - started:.0f} s)")
        if stop:
            break
    return encoder.eval(), Fit(epochs=epochs_run, planned=config.epochs, seconds=time.perf_counter() - started,
                               final=last)


__all__ = ["Fit", "fit_classifier", "fit_encoder", "fit_gan"]
