"""Attribution maps shown beside the traversal: the paper's difference map, Grad-CAM and Integrated Gradients.

Every map is [N, 1, H, W], non-negative, scaled to [0, 1] by its own maximum (an all-zero map
stays zero). Grad-CAM and IG come from captum, imported inside the functions (the bare GPU
machine has no captum). Both explain the positive class through the FrozenClassifier, so the
classifier's own resizing and normalisation are part of what is differentiated; the score they
attribute is the positive class's log-odds, log p / (1 - p) (for two logits, the logit
difference), because the positive logit alone can rise with the negative one and say nothing
about the decision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raygan.explain.inversion import eval_mode, log_p_and_log_not_p
from raygan.models.frozen import FrozenClassifier

MAP_NAMES = ("diff", "gradcam", "ig")
PATH_MAP = "path"  # raygan's traversal attribution (`path_attribution`), beside the three above


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """Per-image max-normalisation of non-negative maps [N, 1, H, W] to [0, 1]."""
    assert maps.ndim == 4 and maps.shape[1] == 1, maps.shape  # [N, 1, H, W]
    peak = maps.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    return torch.where(peak > 0, maps / peak.clamp_min(1e-12), torch.zeros_like(maps))


def difference_map(reconstruction: torch.Tensor, counterfactual: torch.Tensor) -> torch.Tensor:
    """The paper's explanation map |G(z1, z2) - G(z1, 0)|, channel mean -> [N, 1, H, W] in [0, 1]."""
    assert reconstruction.ndim == 4 and reconstruction.shape == counterfactual.shape, (
        reconstruction.shape, counterfactual.shape)  # [N, C, H, W] both
    return normalise((reconstruction.float() - counterfactual.float()).abs().mean(dim=1, keepdim=True))


class PositiveLogOdds(nn.Module):
    """x -> log p(positive | x) / (1 - p(positive | x)), [N]: the score Grad-CAM and IG attribute."""

    def __init__(self, classifier: FrozenClassifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_p, log_not_p = log_p_and_log_not_p(self.classifier, x)
        return log_p - log_not_p


def last_conv(classifier: FrozenClassifier) -> nn.Conv2d:
    """The classifier's last Conv2d (the layer Grad-CAM reads), with a clear error when there is none."""
    convs = [m for m in classifier.model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(
            "Grad-CAM needs an nn.Conv2d inside the classifier; none found "
            f"(format {classifier.spec.format!r}; TorchScript models hide their layers)"
        )
    return convs[-1]


def gradcam(classifier: FrozenClassifier, images: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (captum LayerGradCam on the last Conv2d) of the positive class -> [N, 1, H, W] in [0, 1].

    The layer map is upsampled bilinearly to the image size, then ReLU'd (only evidence for the
    positive class) and normalised.
    """
    from captum.attr import LayerAttribution, LayerGradCam

    assert images.ndim == 4, images.shape  # [N, C, H, W]
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(classifier):
        score = PositiveLogOdds(classifier)
        cam = LayerGradCam(score, last_conv(classifier)).attribute(images.float().clone().requires_grad_(True))
    cam = LayerAttribution.interpolate(cam.detach(), tuple(images.shape[-2:]), interpolate_mode="bilinear")
    return normalise(F.relu(cam.float()))  # [N, 1, H, W]


def path_attribution(classifier: FrozenClassifier, frames: torch.Tensor) -> torch.Tensor:
    """Integrated gradients along the latent traversal: which of the pixels the traversal changes moved C.

    frames [N, F, C, H, W] are G(z1, alpha_n * d) from the counterfactual (alpha = 0) to the walked
    end (alpha = 1). Per pixel, sum_n (frame_{n+1} - frame_n) * (g_n + g_{n+1}) / 2 with g_n the
    gradient of C's positive log-odds at frame n (the trapezoid rule of the path integral), so the
    map's total is the log-odds change along the walk (completeness, Sundararajan et al. 2017) and a
    pixel scores only where the generator changed it AND the classifier's decision responded to
    that change. The path stays on the generator's image manifold, unlike IG's straight line from
    a black image. Absolute value, summed over channels, normalised -> [N, 1, H, W] in [0, 1].
    """
    assert frames.ndim == 5 and frames.shape[1] >= 2, frames.shape  # [N, F, C, H, W]
    n, f = frames.shape[:2]
    flat = frames.reshape(n * f, *frames.shape[2:]).float().detach().clone().requires_grad_(True)
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(classifier):
        log_p, log_not_p = log_p_and_log_not_p(classifier, flat)
        (grads,) = torch.autograd.grad((log_p - log_not_p).sum(), flat)
    g = grads.view(n, f, *frames.shape[2:])  # [N, F, C, H, W]
    steps = frames[:, 1:].float() - frames[:, :-1].float()  # [N, F-1, C, H, W]
    total = (steps * (g[:, 1:] + g[:, :-1]) / 2).sum(dim=1)  # [N, C, H, W]
    return normalise(total.abs().sum(dim=1, keepdim=True))


def integrated_gradients(classifier: FrozenClassifier, images: torch.Tensor, *, steps: int = 32) -> torch.Tensor:
    """Integrated Gradients (captum) of the positive class from the all-black image (-1) -> [N, 1, H, W] in [0, 1].

    Absolute attributions, summed over channels, normalised.
    """
    from captum.attr import IntegratedGradients

    assert images.ndim == 4, images.shape  # [N, C, H, W]
    x = images.float()
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(classifier):
        ig = IntegratedGradients(PositiveLogOdds(classifier))
        attr = ig.attribute(x, baselines=torch.full_like(x, -1.0), n_steps=steps,
                            internal_batch_size=max(1, x.shape[0]) * min(steps, 8))
    return normalise(attr.detach().abs().sum(dim=1, keepdim=True).float())  # [N, 1, H, W]


__all__ = [
    "MAP_NAMES", "PATH_MAP", "PositiveLogOdds", "difference_map", "gradcam", "integrated_gradients", "last_conv",
    "normalise", "path_attribution",
]
