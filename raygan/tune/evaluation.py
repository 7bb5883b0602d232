"""Turn latents (or settings) into the `Evaluation` arrays the sweep objective scores.

The same code scores every trial, every intermediate report and every row of the results
table, so their numbers compare. No Ray here: `raygan.tune.trial` and `raygan.tune.sweep` call
it from inside Ray tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from raygan.config import InversionConfig, TraversalConfig
from raygan.explain.inversion import LossCallback, eval_mode, invert
from raygan.explain.traversal import traverse
from raygan.metrics.reconstruction import per_image_mse, per_image_ssim
from raygan.models.frozen import FrozenClassifier
from raygan.tune.objective import Evaluation


@torch.no_grad()
def evaluate_latents(
    generator: nn.Module,
    classifier: FrozenClassifier,
    images: torch.Tensor,
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    traversal: TraversalConfig,
    steps_used: torch.Tensor,
    p_input: torch.Tensor | None = None,
) -> Evaluation:
    """Reconstruction, counterfactual and traversal arrays for latents z1 [N, z1], z2 [N, z2] of
    `images` [N, C, S, S] (all on one device); `p_input` [N] saves recomputing p_C(x)."""
    assert images.ndim == 4 and z1.shape[0] == z2.shape[0] == images.shape[0], (images.shape, z1.shape, z2.shape)
    assert steps_used.shape == (images.shape[0],), steps_used.shape  # [N]
    with eval_mode(generator, classifier):
        if p_input is None:
            p_input = classifier.p_positive(images)  # [N]
        reconstruction = generator(z1, z2)  # [N, C, S, S]
        counterfactual = generator(z1, torch.zeros_like(z2))  # [N, C, S, S]
        p_rec = classifier.p_positive(reconstruction)  # [N]
        p_cf = classifier.p_positive(counterfactual)  # [N]
        walk = traverse(generator, classifier, z1, z2, config=traversal)
    cpu = {"device": "cpu", "dtype": torch.float64}
    return Evaluation(
        p_input=p_input.to(**cpu),
        p_reconstruction=p_rec.to(**cpu),
        p_counterfactual=p_cf.to(**cpu),
        recon_mse=per_image_mse(reconstruction, images).to(**cpu),
        recon_ssim=per_image_ssim(reconstruction, images).to(**cpu),
        alphas=walk.alphas.to(**cpu),
        probs=walk.probs.to(**cpu),
        steps_used=steps_used.to(**cpu),
        used_fallback=walk.used_fallback.cpu(),
    )


def invert_and_evaluate(
    generator: nn.Module,
    classifier: FrozenClassifier,
    images: torch.Tensor,
    *,
    image_ids: Sequence[str],
    inversion: InversionConfig,
    traversal: TraversalConfig,
    callback: LossCallback | None = None,
    callback_every: int = 50,
) -> Evaluation:
    """Invert `images` [N, C, S, S] with `inversion` (batched; inversion is batch-independent)
    and evaluate the result with `traversal`."""
    result = invert(
        generator, classifier, images, config=inversion, keys=list(image_ids),
        callback=callback, callback_every=callback_every,
    )
    return evaluate_latents(
        generator, classifier, images, result.z1, result.z2, traversal=traversal, steps_used=result.steps_used
    )


__all__ = ["evaluate_latents", "invert_and_evaluate"]
