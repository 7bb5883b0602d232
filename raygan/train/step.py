"""One GAN training step (Eq. 1), pure torch: usable without Ray, benchmarked on a bare GPU box.

Eq. 1 of the paper: the usual GAN min-max between G and D, plus for G the term
-log p_C(y | G(z1, y)) so that generated images carry the class as the frozen classifier C sees
it. The class enters G only through the latent rule of `sample_latents`: z2 = 0 for the negative
class, z2 ~ N(0, I) for the positive one. One D step per G step (authors' notebook).

Two options of raygan's (both off in the authors' recipe):
- a classifier-conditional D (`GanConfig.d_condition = "classifier"`): real images enter D with
  the class C calls them, generated ones with the class fed to G (see `raygan.models.discriminator`);
- a minimal-change term (`TrainConfig.change_weight`): w * mean |G(z1, z2) - G(z1, 0)| over the
  positive samples, with G(z1, 0) held fixed, so z2 adds only what the positive class needs and
  the explanation map G(z1, z2) - G(z1, 0) shows that and little else. The batch is then drawn
  in pairs (each z1 once with z2 = 0 and once with z2 ~ N(0, I)), so both images come out of the
  same forward pass and batch norm sees the usual half-and-half batch.

The step returns detached tensors, never Python floats: converting would force a host sync per
step on a GPU. Convert with `StepMetrics.as_floats()` only when logging.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from raygan.config import TrainConfig
from raygan.models.frozen import FrozenClassifier
from raygan.models.generator import sample_latents


@dataclass(frozen=True)
class GanModels:
    """The three networks of Eq. 1 (G and D may be wrapped by DDP or torch.compile)."""

    generator: nn.Module  # G(z1, z2) -> [N, C, S, S] in [-1, 1]; trained
    discriminator: nn.Module  # D(x) -> [N] real/fake logits; trained
    classifier: FrozenClassifier  # C, frozen: only its gradient w.r.t. the image reaches G


@dataclass(frozen=True)
class StepMetrics:
    """Losses and D outputs of one step: 0-d detached tensors on the step's device (or floats)."""

    d_loss: torch.Tensor | float  # BCE(D(x), 1) + BCE(D(G(z)), 0)
    g_adv: torch.Tensor | float  # BCE(D(G(z)), 1), G's adversarial term
    g_class: torch.Tensor | float  # CE(C(G(z1, y)), y), the classifier term of Eq. 1 (unweighted)
    d_real: torch.Tensor | float  # mean sigmoid(D(x)) on real images, before D's update
    d_fake: torch.Tensor | float  # mean sigmoid(D(G(z))) on generated images, before D's update

    def as_floats(self) -> dict[str, float]:
        """The metrics as Python floats (one host sync per tensor: call when logging, not per step)."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


def bare(module: nn.Module) -> nn.Module:
    """The plain module under DDP (`.module`) / torch.compile (`._orig_mod`) wrappers, for saving
    and for single-rank evaluation (a DDP forward on one rank alone would wait for the others)."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif isinstance(module._modules.get("_orig_mod"), nn.Module):  # torch.compile (no torch._dynamo import)
            module = module._modules["_orig_mod"]
        else:
            return module


def _no_sync(module: nn.Module) -> contextlib.AbstractContextManager[None]:
    """DDP's no_sync() when `module` is DDP: G's backward through D must not all-reduce D's grads."""
    return module.no_sync() if hasattr(module, "no_sync") else contextlib.nullcontext()


def use_bf16(train: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast only on CUDA when configured; the CPU always runs fp32."""
    return train.precision == "bf16" and device.type == "cuda"


def use_channels_last(train: TrainConfig, device: torch.device) -> bool:
    """NHWC memory format only on CUDA when configured (it slows CPU convolutions)."""
    return train.channels_last and device.type == "cuda"


def configure_models(models: GanModels, *, train: TrainConfig, device: torch.device) -> GanModels:
    """Move the three networks to `device` and apply channels_last where configured (before DDP)."""
    memory_format = torch.channels_last if use_channels_last(train, device) else torch.contiguous_format
    moved = [m.to(device=device, memory_format=memory_format) for m in (models.generator, models.discriminator)]
    classifier = models.classifier.to(device=device, memory_format=memory_format)
    return GanModels(generator=moved[0], discriminator=moved[1], classifier=classifier)


def compile_models(models: GanModels) -> GanModels:
    """torch.compile G, D and the classifier's network (C's wrapper stays, so its spec and
    input mapping still apply). C is compiled in place: the frozen wrapper is not copied."""
    models.classifier.model = torch.compile(models.classifier.model)
    return GanModels(torch.compile(models.generator), torch.compile(models.discriminator), models.classifier)


def make_optimizers(models: GanModels, train: TrainConfig) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for G and for D with the recipe's learning rates and betas (authors: 2e-4, (0.5, 0.999))."""
    opt_g = torch.optim.Adam(models.generator.parameters(), lr=train.lr_g, betas=train.betas)
    opt_d = torch.optim.Adam(models.discriminator.parameters(), lr=train.lr_d, betas=train.betas)
    return opt_g, opt_d


def sample_labels(
    n: int, *, positive_fraction: float, device: torch.device, rng: torch.Generator | None
) -> torch.Tensor:
    """Class labels y ~ Bernoulli(positive_fraction), [n] int64 (1 = positive)."""
    return (torch.rand(n, device=device, generator=rng) < positive_fraction).long()


def paired_latents(
    n: int, *, z1_dim: int, z2_dim: int, device: torch.device, rng: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(labels [n], z1 [n, z1_dim], z2 [n, z2_dim]): rows i and n // 2 + i share z1, the first with
    z2 = 0 (negative), the second with z2 ~ N(0, I) (positive); an odd last row is a lone negative."""
    half = n // 2
    z1_half = torch.randn(half, z1_dim, device=device, generator=rng)
    z1_rest = torch.randn(n - 2 * half, z1_dim, device=device, generator=rng)
    z1 = torch.cat([z1_half, z1_half, z1_rest])
    z2 = torch.cat([torch.zeros(half, z2_dim, device=device), torch.randn(half, z2_dim, device=device, generator=rng),
                    torch.zeros(n - 2 * half, z2_dim, device=device)])
    labels = torch.cat([torch.zeros(half, dtype=torch.long, device=device),
                        torch.ones(half, dtype=torch.long, device=device),
                        torch.zeros(n - 2 * half, dtype=torch.long, device=device)])
    return labels, z1, z2


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """BCE-with-logits of [N] logits against a constant target, in fp32 (logits may be bf16)."""
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits, target, dtype=torch.float32))


def class_nll(classifier: FrozenClassifier, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-log p_C(y | x) averaged over the batch; y = 1 means the classifier's target class, y = 0 the rest
    (a K-class softmax model's other classes pooled, or a multi-label model's label being absent)."""
    assert images.ndim == 4 and labels.shape == (images.shape[0],), (images.shape, labels.shape)  # [N, C, S, S], [N]
    log_p, log_not_p = classifier.log_p_and_log_not_p(images)  # [N] each
    return -torch.where(labels == 1, log_p, log_not_p).mean()


def gan_step(
    models: GanModels,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    real: torch.Tensor,
    *,
    train: TrainConfig,
    rng: torch.Generator | None = None,
) -> StepMetrics:
    """One D step then one G step on a batch of real images [N, C, S, S] in [-1, 1].

    `rng` (on the same device as `real`) draws the labels and latents; None uses torch's global RNG.
    """
    assert real.ndim == 4, real.shape  # [N, C, S, S]
    device, n = real.device, real.shape[0]
    G, D, C = models.generator, models.discriminator, models.classifier
    gen = bare(G)
    bf16 = use_bf16(train, device)
    if use_channels_last(train, device):
        real = real.contiguous(memory_format=torch.channels_last)

    # Latents by the paper's rule: y ~ Bernoulli, z1 ~ N(0, I), z2 = 0 for y = 0 else N(0, I);
    # paired (each z1 negative then positive) when the minimal-change term needs both images.
    paired = train.change_weight > 0
    if paired:
        labels, z1, z2 = paired_latents(n, z1_dim=gen.config.z1_dim, z2_dim=gen.config.z2_dim, device=device, rng=rng)
    else:
        labels = sample_labels(n, positive_fraction=train.positive_fraction, device=device, rng=rng)  # [N]
        z1, z2 = sample_latents(labels, z1_dim=gen.config.z1_dim, z2_dim=gen.config.z2_dim, generator=rng)

    conditional = getattr(bare(D), "embed", None) is not None
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        fake = G(z1, z2)  # [N, C, S, S]
        if conditional:
            with torch.no_grad():
                real_class = (C.p_positive(real) > 0.5).long()  # [N] the class C calls each real image
        real_args, fake_args = ((real_class,), (labels,)) if conditional else ((), ())

        # D step: BCE(D(x), 1) + BCE(D(G(z)), 0); G's output is detached so only D learns here.
        logit_real = D(real, *real_args)  # [N]
        logit_fake = D(fake.detach(), *fake_args)  # [N]
        d_loss = _bce(logit_real, 1.0) + _bce(logit_fake, 0.0)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()

    # G step: fool the updated D, and make C see class y in G(z1, y) (Eq. 1's -log p_C(y | G)).
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16), _no_sync(D):
        logit_gen = D(fake, *fake_args)  # [N]
        g_adv = _bce(logit_gen, 1.0)
        g_class = class_nll(C, fake, labels)
        g_loss = g_adv + train.class_weight * g_class
        if paired:
            half = n // 2  # rows i and half + i share z1: G(z1, 0) and G(z1, z2)
            change = (fake[half:2 * half].float() - fake[:half].detach().float()).abs().mean()
            g_loss = g_loss + train.change_weight * change
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()

    return StepMetrics(
        d_loss=d_loss.detach(),
        g_adv=g_adv.detach(),
        g_class=g_class.detach(),
        d_real=torch.sigmoid(logit_real.detach().float()).mean(),
        d_fake=torch.sigmoid(logit_fake.detach().float()).mean(),
    )


class MetricMeans:
    """Running sums of StepMetrics on the device: one host sync per epoch, not per step."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        # Every metric starts at zero, so an epoch without steps still has all names (and the
        # same tensor shapes on every rank for an all-reduce).
        self.sums: dict[str, torch.Tensor] = {f.name: torch.zeros((), device=device) for f in fields(StepMetrics)}
        self.steps = 0

    def add(self, metrics: StepMetrics) -> None:
        for name in self.sums:
            self.sums[name] = self.sums[name] + getattr(metrics, name)
        self.steps += 1

    def means(self) -> dict[str, torch.Tensor]:
        """Mean of each metric over the steps added so far (still on the device)."""
        return {name: total / max(self.steps, 1) for name, total in self.sums.items()}


__all__ = [
    "GanModels", "MetricMeans", "StepMetrics", "bare", "class_nll", "compile_models", "configure_models", "gan_step",
    "make_optimizers", "paired_latents", "sample_labels", "use_bf16", "use_channels_last",
]
