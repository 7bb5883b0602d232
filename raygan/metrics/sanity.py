"""Model-randomisation sanity check (Adebayo et al., "Sanity Checks for Saliency Maps", 2018).

A map that explains the model must change when the model's weights are destroyed. We copy the
classifier, re-initialise its parameterised layers (each layer's own `reset_parameters`, seeded)
and recompute the map with the same map function; then compare the original and randomised maps
per image by Spearman rank correlation and SSIM. High similarity = the map ignores the model
(like an edge detector); a faithful map scores low.

Which layers: the cascading variant of the paper, counted from the output. `layers = k`
re-initialises the top k parameterised layers (modules with parameters of their own: linear,
convolution and batch-norm layers, in registration order) and leaves the rest trained;
`layers = None` (the default) re-initialises all of them, the end of the cascade. Call it with
k = 1, 2, ... to trace the whole cascade. The original classifier is never modified.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from raygan.metrics.reconstruction import per_image_ssim
from raygan.metrics.stats import finite_count, nanmean, spearman_rows

# (classifier, images [N, C, H, W]) -> maps [N, 1, H, W]
MapFunction = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Sanity:
    """Similarity between maps of the trained and the randomised classifier (low = passes)."""

    spearman: float  # mean over images of Spearman rho between original and randomised maps (nan-ignoring)
    ssim: float  # mean over images of SSIM between original and randomised maps (maps in [0, 1])
    layers: int  # parameterised layers re-initialised, counted from the output
    total_layers: int  # parameterised layers the classifier has
    count: int  # images with a defined rho (neither map constant)


def parameterised_layers(model: nn.Module) -> list[nn.Module]:
    """Modules holding parameters of their own, input to output (registration order)."""
    return [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]


def randomised_copy(classifier: nn.Module, *, layers: int | None = None, seed: int = 0) -> nn.Module:
    """A deep copy of `classifier` with its top `layers` parameterised layers re-initialised (None: all)."""
    clone = copy.deepcopy(classifier)
    found = parameterised_layers(clone)
    if layers is not None and not 0 <= layers <= len(found):
        raise ValueError(f"layers must be in [0, {len(found)}], got {layers}")
    chosen = found if layers is None else found[len(found) - layers :]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in reversed(chosen):
            reset = getattr(module, "reset_parameters", None)
            if reset is None:
                raise TypeError(
                    f"cannot randomise {type(module).__name__}: it has no reset_parameters() "
                    "(TorchScript classifiers cannot be sanity-checked this way)"
                )
            reset()
    return clone


def model_randomisation(
    classifier: nn.Module,
    images: torch.Tensor,
    map_fn: MapFunction,
    *,
    layers: int | None = None,
    seed: int = 0,
    original: torch.Tensor | None = None,
) -> Sanity:
    """Compare `map_fn(classifier, images)` with `map_fn(randomised classifier, images)`.

    `map_fn` is any callable (classifier, images [N, C, H, W]) -> maps [N, 1, H, W]: Grad-CAM,
    Integrated Gradients, or the difference map (a closure that also holds the generator and
    re-runs the inversion). `original` skips recomputing the trained classifier's maps.
    """
    assert images.ndim == 4, images.shape  # [N, C, H, W]
    total = len(parameterised_layers(classifier))
    if original is None:
        original = map_fn(classifier, images)
    randomised = map_fn(randomised_copy(classifier, layers=layers, seed=seed), images)
    assert original.ndim == 4 and original.shape[1] == 1 and original.shape == randomised.shape, (
        original.shape, randomised.shape)  # [N, 1, H, W]
    original, randomised = original.detach().float().cpu(), randomised.detach().float().cpu()
    rho = spearman_rows(original.flatten(1), randomised.flatten(1))
    ssim = per_image_ssim(_unit_to_signed(original), _unit_to_signed(randomised))
    return Sanity(
        spearman=nanmean(rho), ssim=nanmean(ssim), layers=total if layers is None else layers,
        total_layers=total, count=finite_count(rho),
    )


def _unit_to_signed(maps: torch.Tensor) -> torch.Tensor:
    """Per-image max-normalised maps in [0, 1] -> the [-1, 1] scale `per_image_ssim` expects."""
    peak = maps.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return (maps.clamp_min(0) / peak) * 2 - 1


__all__ = ["MapFunction", "Sanity", "model_randomisation", "parameterised_layers", "randomised_copy"]
