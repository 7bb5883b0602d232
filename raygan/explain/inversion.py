"""Inversion (Eq. 2): find the latents (z1, z2) whose image G(z1, z2) is a real image x.

Per image the loss is

    a * MSE(G(z), x) + b * BCE(p_C(G(z)), p_C(x))                                  (Eq. 2)
    + w_cf * p_C(x) * -log(1 - p_C(G(z1, 0)))      counterfactual term (raygan)
    + w_z1 * ||z1||^2 / dim(z1)                    prior term (raygan)
    + w_f * mean_l ||phi_l(G(z)) - phi_l(x)||^2 / ||phi_l(x)||^2    classifier-view term (raygan)

with MSE the mean over that image's pixels and p_C(x) computed once without gradient. The
counterfactual term asks that switching the class latent off (z2 = 0) gives an image the
classifier calls negative, which is what the paper's counterfactual promises; it is weighted by
p_C(x) (soft, so nothing jumps at p = 0.5): a clearly positive image gets the full term, a
clearly negative one (whose z2 should be ~0 anyway) almost none. The prior keeps z1 near the
shell G was trained on. The view term (phi_l: the classifier's last convolution and penultimate
features, `raygan.explain.classifier_view`) asks the reconstruction to show the classifier what x
shows it, where in the image included: the BCE term alone is met by any image with the same p,
e.g. one that paints the lungs instead of drawing the small marker the classifier reads. All
three default to 0 in the authors' recipe (`AUTHORS_INVERSION`).

Start: z1 = 0 (authors) or noise, seeded per image; or, given an encoder E (amortised inversion,
`raygan.models.encoder`), E(x), refined for `config.encoder_steps` steps (0: E(x) as it is) with
one start per image (every restart would start at the same point). Early stopping and the
cosine schedule work as from scratch, over that shorter budget.

Batch independence: per-image losses are summed (never averaged) over the batch, Adam works
element-wise, G and C run in eval mode (batch norm uses running statistics), each image's
random start is seeded from (config.seed, key, restart), and early stopping is decided per
image. So one image inverted alone or among others gets the same latents (up to floating-point
reduction order), and a whole data set can be inverted in big batches.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from raygan.config import InversionConfig
from raygan.explain.classifier_view import captured_view, view_distance
from raygan.models.frozen import FrozenClassifier

LossCallback = Callable[[int, torch.Tensor], None]


class Abandoned(RuntimeError):
    """Raised by `invert` (and `Explainer.explain`) when `should_stop()` says nobody waits for the result any more."""


@dataclass(frozen=True)
class Inversion:
    """The latents found for N images, and how the optimisation went."""

    z1: torch.Tensor  # [N, z1_dim] structure latents
    z2: torch.Tensor  # [N, z2_dim] class latents
    loss_curve: torch.Tensor  # [N, T] per-image loss at each step (T = steps the loop ran); nan after an image stopped
    steps_used: torch.Tensor  # [N] int64: optimiser updates applied to each image (< steps where it stopped early)
    final_loss: torch.Tensor  # [N] loss at the returned latents


def image_key(image: torch.Tensor) -> str:
    """A stable key for an image: sha256 of its float32 bytes (same image -> same random start)."""
    return hashlib.sha256(image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


def start_seed(seed: int, key: str, restart: int) -> int:
    """The 63-bit seed of one start of one image, from (config.seed, key, restart)."""
    digest = hashlib.sha256(f"{seed}:{key}:{restart}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def initial_latents(
    keys: Sequence[str], *, z1_dim: int, z2_dim: int, config: InversionConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Starting latents for len(keys) * restarts rows (row i * R + r = image i, start r), on the CPU.

    Both noise vectors are always drawn (z1 first), so z2's start does not depend on z1_init.
    """
    z1_rows, z2_rows = [], []
    for key in keys:
        for restart in range(config.restarts):
            rng = torch.Generator().manual_seed(start_seed(config.seed, key, restart))
            z1 = torch.randn(z1_dim, generator=rng)
            z2 = torch.randn(z2_dim, generator=rng)
            z1_rows.append(z1 if config.z1_init == "normal" else torch.zeros_like(z1))
            z2_rows.append(z2 if config.z2_init == "normal" else torch.zeros_like(z2))
    return torch.stack(z1_rows), torch.stack(z2_rows)  # [N * R, z1_dim], [N * R, z2_dim]


def log_p_and_log_not_p(classifier: FrozenClassifier, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(positive), log(1 - p(positive))) per image, [N] each: the classifier's target class against
    the rest (softmax over K classes, or one sigmoid label), stable for any number of classes."""
    return classifier.log_p_and_log_not_p(images)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when asked; fp32 everywhere else (CPU bf16 is slow and not what was tuned)."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Run `modules` in eval mode (batch norm on running statistics) and restore their mode after."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


def per_image_loss(
    generator: nn.Module,
    classifier: FrozenClassifier,
    z1: torch.Tensor,
    z2: torch.Tensor,
    x: torch.Tensor,
    p_x: torch.Tensor,
    *,
    config: InversionConfig,
    view_x: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """The inversion loss of each row, [M], in fp32 (the module docstring gives the terms).

    `view_x` is the classifier's view of x (`target_view`), needed when config.feature_weight > 0.
    """
    m = z1.shape[0]
    cf = config.counterfactual_weight > 0
    view = config.feature_weight > 0 and bool(view_x)
    with autocast(x.device, config.precision), (
            captured_view(classifier.model) if view else contextlib.nullcontext([])) as found:
        if cf:
            # One pass for G(z1, z2) and G(z1, 0): the counterfactual costs no extra launch.
            images = generator(torch.cat([z1, z1]), torch.cat([z2, torch.zeros_like(z2)]))  # [2M, C, S, S]
        else:
            images = generator(z1, z2)  # [M, C, S, S]
        log_p, log_not_p = log_p_and_log_not_p(classifier, images)  # [M] or [2M]
    recon = images[:m].float()
    mse = (recon - x).pow(2).flatten(1).mean(dim=1)  # [M]
    bce = -(p_x * log_p[:m] + (1 - p_x) * log_not_p[:m])  # [M]; log-space BCE on p_C
    loss = config.mse_weight * mse + config.bce_weight * bce
    if cf:
        loss = loss + config.counterfactual_weight * p_x * -log_not_p[m:]
    if config.z1_prior_weight > 0:
        loss = loss + config.z1_prior_weight * z1.float().pow(2).mean(dim=1)
    if view:
        assert view_x is not None
        loss = loss + config.feature_weight * view_distance([f[:m] for f in found], view_x)
    return loss


@torch.no_grad()
def target_view(classifier: FrozenClassifier, x: torch.Tensor) -> list[torch.Tensor]:
    """The classifier's view of images x [M, C, S, S] (empty when the model has no hookable layers)."""
    with captured_view(classifier.model) as found:
        classifier(x)
    return [f.float() for f in found]


def _learning_rate(config: InversionConfig, step: int, steps: int | None = None) -> float:
    """The learning rate at `step` of a budget of `steps` (default config.steps)."""
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * step / (steps or config.steps)))
    return config.lr


def invert(
    generator: nn.Module,
    classifier: FrozenClassifier,
    images: torch.Tensor,
    *,
    config: InversionConfig,
    keys: Sequence[str] | None = None,
    callback: LossCallback | None = None,
    callback_every: int = 50,
    encoder: nn.Module | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Inversion:
    """Eq. 2 by Adam on (z1, z2) for each image of `images` ([N, C, S, S] in [-1, 1]).

    `keys` (e.g. image_ids) seed each image's random start; without them the image's bytes do.
    `encoder` (E(x) -> (z1, z2), on the images' device): start at E(x) and run at most
    `config.encoder_steps` steps, one start per image; None: `config.steps` from the seeded start.
    `callback(step, loss [N])` is called every `callback_every` steps with each image's current
    loss (best over restarts; on the CPU), e.g. to report to Ray Tune. G, C and `images` must be
    on the same device; G and C run in eval mode and are not updated. `should_stop()`, asked before
    every step, True -> raise `Abandoned` (a service whose callers all gave up stops the work).
    """
    assert images.ndim == 4, images.shape  # [N, C, S, S]
    n = images.shape[0]
    if keys is not None and len(keys) != n:
        raise ValueError(f"got {len(keys)} keys for {n} images")
    if encoder is None and (config.steps < 1 or config.restarts < 1):
        raise ValueError(f"steps and restarts must be >= 1, got {config.steps} and {config.restarts}")
    if encoder is not None and config.encoder_steps < 0:
        raise ValueError(f"encoder_steps must be >= 0, got {config.encoder_steps}")
    gan = generator.config  # type: ignore[attr-defined]
    device = images.device
    r = 1 if encoder is not None else config.restarts
    budget = config.encoder_steps if encoder is not None else config.steps  # T: the most steps any image runs
    keys = list(keys) if keys is not None else [image_key(img) for img in images]
    m = n * r
    frozen_nets = (generator, classifier) if encoder is None else (generator, classifier, encoder)
    # Gradients on, whatever the caller's mode (a service may call this under no_grad / inference_mode).
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(*frozen_nets):
        if encoder is not None:
            with torch.no_grad():
                z1_0, z2_0 = encoder(images.float())  # [N, z1_dim], [N, z2_dim]: E(x), the amortised start
        else:
            z1_0, z2_0 = initial_latents(keys, z1_dim=gan.z1_dim, z2_dim=gan.z2_dim, config=config)
        z1 = z1_0.detach().float().to(device).requires_grad_(True)  # [M, z1_dim], M = N * R
        z2 = z2_0.detach().float().to(device).requires_grad_(True)  # [M, z2_dim]
        x = images.float().repeat_interleave(r, dim=0)  # [M, C, S, S]: the restarts of image i are rows i*R..i*R+R-1
        with torch.no_grad(), autocast(device, config.precision):
            p_x = classifier.p_positive(x).float()  # [M], the BCE target, computed once
        view_x = target_view(classifier, x) if config.feature_weight > 0 else None  # the view term's target
        if config.feature_weight > 0 and not view_x:
            raise ValueError("feature_weight > 0 needs a classifier with hookable Conv2d/Linear layers "
                             f"(format {classifier.spec.format!r} has none); set feature_weight = 0")
        optimiser = torch.optim.Adam([z1, z2], lr=config.lr)
        early = config.early_stop_tol > 0
        curve = torch.full((m, budget), float("nan"), device=device)
        current = torch.full((m,), float("inf"), device=device)  # last loss of each row
        stopped = torch.zeros(m, dtype=torch.bool, device=device)
        stall = torch.zeros(m, dtype=torch.long, device=device)
        steps_used = torch.full((m,), budget, dtype=torch.long, device=device)
        active = torch.arange(m, device=device)
        t_run = 0
        for t in range(budget):
            if should_stop is not None and should_stop():
                raise Abandoned(f"stopped after {t} of {budget} steps: nobody waits for the result")
            for group in optimiser.param_groups:
                group["lr"] = _learning_rate(config, t, budget)
            optimiser.zero_grad(set_to_none=True)
            loss = per_image_loss(generator, classifier, z1[active], z2[active], x[active], p_x[active], config=config,
                                  view_x=[v[active] for v in view_x] if view_x else None)
            loss_d = loss.detach()
            curve[active, t] = loss_d
            if early:
                # Stall = relative change below tol; an image stops after `patience` stalled steps,
                # at the latents whose loss was just measured (this step's update is not applied).
                previous = current[active]
                rel = (loss_d - previous).abs() / previous.abs().clamp_min(1e-12)
                stall[active] = torch.where(rel < config.early_stop_tol, stall[active] + 1, 0)
                newly = stall[active] >= config.early_stop_patience
                stopped[active] = newly
                steps_used[active] = torch.where(newly, t, steps_used[active])
            current[active] = loss_d
            loss.sum().backward(inputs=[z1, z2])  # sum: each image's gradient is its own loss's
            frozen = (z1.detach().clone(), z2.detach().clone()) if early else None
            optimiser.step()
            t_run = t + 1
            if frozen is not None:
                with torch.no_grad():
                    # Adam's momentum would move rows without gradient: put stopped rows back.
                    z1.copy_(torch.where(stopped[:, None], frozen[0], z1))
                    z2.copy_(torch.where(stopped[:, None], frozen[1], z2))
            if callback is not None and t_run % callback_every == 0:
                callback(t_run, current.view(n, r).min(dim=1).values.cpu())
            if early:
                if bool(stopped.all()):
                    break
                active = (~stopped).nonzero().squeeze(1)
        with torch.no_grad():
            final = per_image_loss(generator, classifier, z1, z2, x, p_x, config=config, view_x=view_x).view(n, r)  # [N, R]
    best = final.nan_to_num(float("inf")).argmin(dim=1)  # [N]
    rows = torch.arange(n, device=device) * r + best
    return Inversion(
        z1=z1.detach()[rows],
        z2=z2.detach()[rows],
        loss_curve=curve[rows, :t_run],
        steps_used=steps_used[rows],
        final_loss=final[torch.arange(n, device=device), best],
    )


__all__ = [
    "Abandoned", "Inversion", "LossCallback", "autocast", "eval_mode", "image_key", "initial_latents", "invert",
    "log_p_and_log_not_p", "per_image_loss", "start_seed", "target_view",
]
