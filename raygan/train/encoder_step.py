"""One encoder training step and epoch, pure torch (no Ray): E learns to invert the FROZEN G and C.

Two halves per step, each with as many images as the real batch:

(a) generated images with known latents, drawn by the GAN's own rule (`sample_latents`: z2 = 0
    for the negative class, z2 ~ N(0, I) for the positive): x = G(z1, z2), and
        latent_weight * MSE(E(x), (z1, z2)) + image_weight * MSE(G(E(x)), x)
    The latent term is what an encoder can learn from without any real data; the image term
    weighs the latent errors by what they change in the picture.
(b) real training images through the reconstruction and the classifier's view of it: the mean
    over the batch of the inversion's own per-image loss at E(x)
    (`raygan.explain.inversion.per_image_loss`: a * MSE + b * BCE of p_C, plus the
    counterfactual, prior and classifier-view terms as the bundle's InversionConfig sets them),
    so the encoder minimises exactly the objective of the optimisation it replaces (one scoring
    path), and the refinement that follows starts where that objective is already low.

G and C stay frozen: both run in eval mode (batch norm on running statistics, as in the
inversion), and the backward pass asks for gradients of E's parameters only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import torch
from torch import nn

from raygan.config import EncoderConfig, InversionConfig
from raygan.explain.inversion import autocast, eval_mode, per_image_loss, target_view
from raygan.models.frozen import FrozenClassifier
from raygan.models.generator import sample_latents
from raygan.train.step import bare, sample_labels


@dataclass(frozen=True)
class EncoderModels:
    """The encoder being trained and the frozen networks it inverts."""

    encoder: nn.Module  # E(x) -> (z1, z2); trained (may be wrapped by DDP)
    generator: nn.Module  # G, frozen
    classifier: FrozenClassifier  # C, frozen


@dataclass(frozen=True)
class EncoderStepMetrics:
    """Losses of one step: 0-d detached tensors on the step's device (no host sync per step)."""

    loss: torch.Tensor  # the weighted total that was minimised
    latent_mse: torch.Tensor  # MSE(E(G(z)), z) on generated images
    image_mse: torch.Tensor  # MSE(G(E(G(z))), G(z)) on generated images
    real_loss: torch.Tensor  # mean inversion loss per_image_loss at E(x) on real images


@dataclass(frozen=True)
class EncoderEpoch:
    """Means of the step metrics over one epoch and the images seen, still on the device."""

    sums: dict[str, torch.Tensor]  # metric name -> sum over steps (0-d); sums so workers can all-reduce them
    steps: int  # steps run
    images: int  # real images seen

    def means(self) -> dict[str, float]:
        """Mean of each metric over the epoch's steps (one host sync per metric)."""
        return {name: float(total) / max(self.steps, 1) for name, total in self.sums.items()}


def make_encoder_optimizer(encoder: nn.Module, config: EncoderConfig) -> torch.optim.Adam:
    """Adam on E's parameters only."""
    return torch.optim.Adam(encoder.parameters(), lr=config.lr)


def encoder_step(
    models: EncoderModels,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    *,
    config: EncoderConfig,
    inversion: InversionConfig,
    positive_fraction: float = 0.5,
    rng: torch.Generator | None = None,
) -> EncoderStepMetrics:
    """One Adam step of E on a batch of real images [N, C, S, S] in [-1, 1] (and N generated ones).

    `rng` (on the device of `real`) draws the generated half's labels and latents; `positive_fraction`
    is the share of positive samples (the GAN's own, `TrainConfig.positive_fraction`).
    """
    assert real.ndim == 4, real.shape  # [N, C, S, S]
    E, G, C = models.encoder, models.generator, models.classifier
    gan = bare(G).config  # type: ignore[attr-defined]
    device, n = real.device, real.shape[0]
    params = [p for p in E.parameters() if p.requires_grad]
    E.train()
    with eval_mode(G, C):
        # (a) generated images with known latents, by the GAN's latent rule.
        labels = sample_labels(n, positive_fraction=positive_fraction, device=device, rng=rng)  # [N]
        z1, z2 = sample_latents(labels, z1_dim=gan.z1_dim, z2_dim=gan.z2_dim, generator=rng)  # [N, z1], [N, z2]
        with torch.no_grad(), autocast(device, inversion.precision):
            fake = G(z1, z2).float()  # [N, C, S, S]
            p_real = C.p_positive(real).float()  # [N], the BCE target of the inversion loss
        view_real = target_view(C, real) if inversion.feature_weight > 0 else None
        e1, e2 = E(torch.cat([fake, real]))  # [2N, z1_dim], [2N, z2_dim]: one pass for both halves
        latent_mse = (e1[:n] - z1).pow(2).mean() + (e2[:n] - z2).pow(2).mean()
        with autocast(device, inversion.precision):
            regenerated = G(e1[:n], e2[:n]).float()  # [N, C, S, S]
        image_mse = (regenerated - fake).pow(2).mean()
        # (b) real images: the inversion's own per-image loss at E(x) (one scoring path).
        real_loss = per_image_loss(G, C, e1[n:], e2[n:], real.float(), p_real, config=inversion,
                                   view_x=view_real).mean()
        loss = config.latent_weight * latent_mse + config.image_weight * image_mse + config.real_weight * real_loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=params)  # E's parameters only: nothing accumulates on the frozen G and C
    optimizer.step()
    return EncoderStepMetrics(loss=loss.detach(), latent_mse=latent_mse.detach(), image_mse=image_mse.detach(),
                              real_loss=real_loss.detach())


def encoder_epoch(
    models: EncoderModels,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[torch.Tensor],
    *,
    config: EncoderConfig,
    inversion: InversionConfig,
    positive_fraction: float = 0.5,
    rng: torch.Generator | None = None,
) -> EncoderEpoch:
    """`encoder_step` over every batch of real images [N, C, S, S] in [-1, 1]."""
    device = next(models.encoder.parameters()).device
    sums = {f.name: torch.zeros((), device=device) for f in fields(EncoderStepMetrics)}
    steps = images = 0
    for real in batches:
        metrics = encoder_step(models, optimizer, real, config=config, inversion=inversion,
                               positive_fraction=positive_fraction, rng=rng)
        for name in sums:
            sums[name] = sums[name] + getattr(metrics, name)
        steps += 1
        images += real.shape[0]
    return EncoderEpoch(sums=sums, steps=steps, images=images)


@torch.no_grad()
def start_loss(
    generator: nn.Module,
    classifier: FrozenClassifier,
    images: torch.Tensor,
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    inversion: InversionConfig,
) -> torch.Tensor:
    """The inversion loss per image [N] at latents z1, z2 (e.g. E(x), or the from-scratch start); G, C in eval mode."""
    assert images.ndim == 4 and z1.shape[0] == images.shape[0] == z2.shape[0], (images.shape, z1.shape, z2.shape)
    with eval_mode(generator, classifier), autocast(images.device, inversion.precision):
        p_x = classifier.p_positive(images).float()
    view_x = target_view(classifier, images) if inversion.feature_weight > 0 else None
    with eval_mode(generator, classifier):
        return per_image_loss(generator, classifier, z1, z2, images.float(), p_x, config=inversion, view_x=view_x)


__all__ = [
    "EncoderEpoch", "EncoderModels", "EncoderStepMetrics", "encoder_epoch", "encoder_step",
    "make_encoder_optimizer", "start_loss",
]
