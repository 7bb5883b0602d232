"""Attribution maps shown beside the traversal: the paper's difference map, raygan's traversal attribution and
counterfactual swap map, Grad-CAM and Integrated Gradients.

Every map is [N, 1, H, W], non-negative, scaled to [0, 1] by its own maximum (an all-zero map
stays zero). The maps that carry a sign in their own definition (the swap map's window drops, IG's and
the traversal attribution's contributions to the log-odds) can also be asked for `signed=True`:
[N, 1, H, W] in [-1, 1], scaled by the largest magnitude, negative where a pixel's change speaks
against the target (their `*_both` forms give the map and its signed form from one computation). The
shortcut verdicts read those, because reliance is a signed mean (a cue that raises the call in one
image and lowers it in the next is not relied on). Grad-CAM and IG come from captum, imported inside
the functions (the bare GPU machine has no captum; it is the optional `raygan[attributions]`). Both
explain the target class through the FrozenClassifier, so the classifier's own resizing and
normalisation are part of what is differentiated; the score they attribute is the target's log-odds, log p / (1 - p) (for
two logits, the logit difference), because the target logit alone can rise with the others and
say nothing about the decision.

Not every model allows every map: Grad-CAM needs a forward hook on a convolutional layer, which
TorchScript modules refuse. `unavailable_maps` says which maps cannot run and why, so the
Explainer skips them with that message instead of failing.

Grad-CAM's layer is `classifier.json`'s `gradcam_layer` when given; otherwise the last module, in
forward order, that contains the model's last Conv2d and still outputs a spatial map (H, W > 1):
the last convolution of a plain CNN, the last residual stage of a ResNet (`layer4`, where the
skip connection has been added), the `features` block of VGG or DenseNet, the layers
pytorch-grad-cam recommends for those families.
"""

from __future__ import annotations

import importlib.util
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from raygan.explain.inversion import eval_mode, log_p_and_log_not_p
from raygan.models.frozen import FrozenClassifier

MAP_NAMES = ("diff", "gradcam", "ig")
CAPTUM_MISSING = "needs captum, which is not installed: pip install 'raygan[attributions]'"
PATH_MAP = "path"  # raygan's traversal attribution (`path_attribution`), beside the three above
SWAP_MAP = "swap"  # raygan's counterfactual swap map (`swap_attribution`)


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """Per-image max-normalisation of non-negative maps [N, 1, H, W] to [0, 1]."""
    assert maps.ndim == 4 and maps.shape[1] == 1, maps.shape  # [N, 1, H, W]
    peak = maps.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    return torch.where(peak > 0, maps / peak.clamp_min(1e-12), torch.zeros_like(maps))


def normalise_signed(maps: torch.Tensor) -> torch.Tensor:
    """Per-image scaling of signed maps [N, 1, H, W] to [-1, 1] by their largest magnitude (zero stays zero)."""
    assert maps.ndim == 4 and maps.shape[1] == 1, maps.shape  # [N, 1, H, W]
    peak = maps.flatten(1).abs().amax(dim=1).view(-1, 1, 1, 1)
    return torch.where(peak > 0, maps / peak.clamp_min(1e-12), torch.zeros_like(maps))


class Attributions(NamedTuple):
    """One attribution method's two forms for the same images, from one computation."""

    map: torch.Tensor  # [N, 1, H, W] in [0, 1]: what is shown (magnitudes, or evidence for the target)
    signed: torch.Tensor  # [N, 1, H, W] in [-1, 1]: negative where a pixel speaks against the target


def difference_map(reconstruction: torch.Tensor, counterfactual: torch.Tensor) -> torch.Tensor:
    """The paper's explanation map |G(z1, z2) - G(z1, 0)|, channel mean -> [N, 1, H, W] in [0, 1]."""
    assert reconstruction.ndim == 4 and reconstruction.shape == counterfactual.shape, (
        reconstruction.shape, counterfactual.shape)  # [N, C, S, S] both
    return normalise((reconstruction.float() - counterfactual.float()).abs().mean(dim=1, keepdim=True))


class PositiveLogOdds(nn.Module):
    """x -> log p(target | x) / (1 - p(target | x)), [N]: the score Grad-CAM and IG attribute."""

    def __init__(self, classifier: FrozenClassifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_p, log_not_p = log_p_and_log_not_p(self.classifier, x)
        return log_p - log_not_p


class GradCamUnavailable(ValueError):
    """Grad-CAM cannot run on this classifier; the message says why."""


def _automatic_layer(model: nn.Module, size: int, channels: int) -> tuple[str, nn.Module]:
    """The module class docstring's rule picks: found by one blank forward pass with shape hooks."""
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise GradCamUnavailable("Grad-CAM needs a convolutional layer and the classifier has no nn.Conv2d; "
                                 "name one in classifier.json ('gradcam_layer')")
    last = convs[-1][0]
    # The last conv and every module above it (a module contains it when its name prefixes it).
    candidates = {name: m for name, m in model.named_modules() if name and (name == last or last.startswith(name + "."))}
    finished: list[str] = []  # candidate names in the order their forward passes ended
    hooks = []
    for name, module in candidates.items():
        def record(_m: nn.Module, _args: object, out: object, name: str = name) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] > 1 and out.shape[-2] > 1:
                finished.append(name)
        hooks.append(module.register_forward_hook(record))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad(), eval_mode(model):
            model(torch.zeros(1, channels, size, size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    name = finished[-1] if finished else last
    return name, candidates[name]


def gradcam_layer(classifier: FrozenClassifier) -> tuple[str, nn.Module]:
    """(name, module) of the layer Grad-CAM reads: the spec's `gradcam_layer`, else chosen automatically."""
    reason = classifier.unsupported().get("hooks")
    if reason is not None:
        raise GradCamUnavailable(f"Grad-CAM needs a forward hook on a layer: {reason}")
    cached = getattr(classifier, "_gradcam_layer", None)
    if cached is not None:
        return cached
    name = classifier.spec.gradcam_layer
    if name:
        try:
            chosen = (name, classifier.model.get_submodule(name))
        except AttributeError as e:
            convs = [n for n, m in classifier.model.named_modules() if isinstance(m, nn.Conv2d)][-3:]
            raise GradCamUnavailable(f"classifier.json names gradcam_layer {name!r}, which the model does not "
                                     f"have (its last convolutions: {convs})") from e
    else:
        chosen = _automatic_layer(classifier.model, classifier.spec.size, classifier.spec.channels)
    object.__setattr__(classifier, "_gradcam_layer", chosen)  # plain attribute, not a registered submodule
    return chosen


def unavailable_maps(classifier: FrozenClassifier) -> dict[str, str]:
    """{map name: why it cannot be computed for this classifier} for "gradcam" and "ig" (empty: both run)."""
    out: dict[str, str] = {}
    if importlib.util.find_spec("captum") is None:
        return {"gradcam": f"Grad-CAM {CAPTUM_MISSING}", "ig": f"Integrated Gradients {CAPTUM_MISSING}"}
    try:
        gradcam_layer(classifier)
    except GradCamUnavailable as e:
        out["gradcam"] = str(e)
    return out


def gradcam(classifier: FrozenClassifier, images: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (captum LayerGradCam on `gradcam_layer`) of the target class -> [N, 1, H, W] in [0, 1].

    The layer map is upsampled bilinearly to the image size, then ReLU'd (only evidence for the
    target) and normalised. Raises GradCamUnavailable where the model allows no Grad-CAM.
    """
    from captum.attr import LayerAttribution, LayerGradCam

    assert images.ndim == 4, images.shape  # [N, C, H, W]
    _, layer = gradcam_layer(classifier)
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(classifier):
        score = PositiveLogOdds(classifier)
        cam = LayerGradCam(score, layer).attribute(images.float().clone().requires_grad_(True))
    if cam.ndim != 4:
        raise GradCamUnavailable(f"Grad-CAM's layer must output [N, C, H, W] maps, got shape {tuple(cam.shape)}")
    cam = LayerAttribution.interpolate(cam.detach(), tuple(images.shape[-2:]), interpolate_mode="bilinear")
    return normalise(F.relu(cam.float().sum(dim=1, keepdim=True)))  # [N, 1, H, W]


def path_attribution(classifier: FrozenClassifier, frames: torch.Tensor, *, signed: bool = False) -> torch.Tensor:
    """Integrated gradients along the latent traversal: which of the pixels the traversal changes moved C.

    frames [N, F, C, H, W] are G(z1, alpha_n * d) from the counterfactual (alpha = 0) to the walked
    end (alpha = 1). Per pixel, sum_n (frame_{n+1} - frame_n) * (g_n + g_{n+1}) / 2 with g_n the
    gradient of C's positive log-odds at frame n (the trapezoid rule of the path integral), so the
    map's total is the log-odds change along the walk (completeness, Sundararajan et al. 2017) and a
    pixel scores only where the generator changed it AND the classifier's decision responded to
    that change. The path stays on the generator's image manifold, unlike IG's straight line from
    a black image. Absolute value, summed over channels, normalised -> [N, 1, H, W] in [0, 1]
    (`signed`: summed over channels without the absolute value -> [-1, 1]). Both forms at once:
    `path_attribution_both`.
    """
    pair = path_attribution_both(classifier, frames)
    return pair.signed if signed else pair.map


def path_attribution_both(classifier: FrozenClassifier, frames: torch.Tensor) -> Attributions:
    """`path_attribution`'s map and its signed form from one set of gradients."""
    assert frames.ndim == 5 and frames.shape[1] >= 2, frames.shape  # [N, F, C, H, W]
    n, f = frames.shape[:2]
    flat = frames.reshape(n * f, *frames.shape[2:]).float().detach().clone().requires_grad_(True)
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(classifier):
        log_p, log_not_p = log_p_and_log_not_p(classifier, flat)
        (grads,) = torch.autograd.grad((log_p - log_not_p).sum(), flat)
    g = grads.view(n, f, *frames.shape[2:])  # [N, F, C, H, W]
    steps = frames[:, 1:].float() - frames[:, :-1].float()  # [N, F-1, C, H, W]
    total = (steps * (g[:, 1:] + g[:, :-1]) / 2).sum(dim=1)  # [N, C, H, W]
    return Attributions(map=normalise(total.abs().sum(dim=1, keepdim=True)),
                        signed=normalise_signed(total.sum(dim=1, keepdim=True)))


def _windows(size: int, grid: int) -> tuple[int, int]:
    """(window, stride) laying about `grid` x `grid` half-overlapping square windows over a side of `size`."""
    stride = max(1, math.ceil(size / grid))
    return min(size, 2 * stride), stride


def swap_attribution(classifier: FrozenClassifier, images: torch.Tensor, counterfactuals: torch.Tensor, *,
                     grid: int = 16, chunk: int = 256, signed: bool = False) -> torch.Tensor:
    """Which parts of the image the decision rests on, by swapping them for the counterfactual's.

    For every window w of a grid of about grid x grid half-overlapping squares, x_w is x with w's pixels replaced by
    the counterfactual G(z1, 0)'s, and drop_w = s(x) - s(x_w) is how much C's target log-odds s falls
    (an intervention, like the fidelity benchmark's twins, with the generator's negative rendering of
    the same anatomy as the replacement: the GAN-infill occlusion of Chang et al. 2019). Each
    window's drop (its positive part: evidence for the target) is shared among its pixels in
    proportion to how much the swap changed each, |x - G(z1, 0)| summed over channels, so the map
    keeps a window's effect on the pixels that carried it and sums to the total drop. Unlike the
    difference map it scores only the changes C responds to, and unlike Grad-CAM or IG it needs only
    forward passes (any model, TorchScript included): about grid^2 of them per image (225 at 64 px); per
    image, so the result does not depend on the batch. -> [N, 1, H, W] in [0, 1].

    `signed`: every window's drop is shared as it is, negative where the swap raises the log-odds
    (the window held evidence against the target) -> [N, 1, H, W] in [-1, 1]. Its net share on a region
    is what the fidelity verdict reads: a cue whose removal lowers the call in some images and raises it
    in others nets out, where the positive map would count only the first. Both forms from one set of
    forward passes: `swap_attribution_both`.
    """
    pair = swap_attribution_both(classifier, images, counterfactuals, grid=grid, chunk=chunk)
    return pair.signed if signed else pair.map


def swap_attribution_both(classifier: FrozenClassifier, images: torch.Tensor, counterfactuals: torch.Tensor, *,
                          grid: int = 16, chunk: int = 256) -> Attributions:
    """`swap_attribution`'s map and its signed form from one set of forward passes."""
    assert images.ndim == 4 and images.shape == counterfactuals.shape, (
        images.shape, counterfactuals.shape)  # [N, C, H, W] both
    n, _, h, w = images.shape
    assert h == w, images.shape
    window, stride = _windows(h, grid)
    x, cf = images.float(), counterfactuals.float().to(images.device)
    starts = list(range(0, h - window + 1, stride))
    if starts[-1] != h - window:
        starts.append(h - window)  # the last row and column of windows reach the border
    boxes = [(r, c) for r in starts for c in starts]
    masks = torch.zeros(len(boxes), 1, h, w, device=x.device)  # [L, 1, H, W]
    for k, (r, c) in enumerate(boxes):
        masks[k, :, r:r + window, c:c + window] = 1.0
    change = (x - cf).abs().sum(dim=1, keepdim=True)  # [N, 1, H, W]
    out = torch.zeros(n, 1, h, w, device=x.device)
    out_signed = torch.zeros(n, 1, h, w, device=x.device)
    with torch.no_grad(), eval_mode(classifier):
        base_lp, base_lnp = log_p_and_log_not_p(classifier, x)
        base = base_lp - base_lnp  # [N]
        for i in range(n):
            drops = []
            for lo in range(0, len(boxes), chunk):
                m = masks[lo:lo + chunk]  # [B, 1, H, W]
                swapped = x[i:i + 1] * (1 - m) + cf[i:i + 1] * m  # [B, C, H, W]
                lp, lnp = log_p_and_log_not_p(classifier, swapped)
                drops.append(base[i] - (lp - lnp))
            drop = torch.cat(drops).float()  # [L]
            share = masks * change[i:i + 1]  # [L, 1, H, W]: each window's changed pixels
            share = share / share.flatten(1).sum(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            out[i] = (share * drop.clamp_min(0).view(-1, 1, 1, 1)).sum(dim=0)  # evidence for the target only
            out_signed[i] = (share * drop.view(-1, 1, 1, 1)).sum(dim=0)
    return Attributions(map=normalise(out), signed=normalise_signed(out_signed))


def integrated_gradients(classifier: FrozenClassifier, images: torch.Tensor, *, steps: int = 32,
                         signed: bool = False) -> torch.Tensor:
    """Integrated Gradients (captum) of the target class from the all-black image (-1) -> [N, 1, H, W] in [0, 1].

    Absolute attributions, summed over channels, normalised (`signed`: captum's signed attributions
    summed over channels -> [-1, 1]). Needs only input gradients, so it runs on TorchScript models too.
    Both forms at once: `integrated_gradients_both`.
    """
    pair = integrated_gradients_both(classifier, images, steps=steps)
    return pair.signed if signed else pair.map


def integrated_gradients_both(classifier: FrozenClassifier, images: torch.Tensor, *, steps: int = 32) -> Attributions:
    """`integrated_gradients`' map and its signed form from one attribution."""
    from captum.attr import IntegratedGradients

    assert images.ndim == 4, images.shape  # [N, C, H, W]
    x = images.float()
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(classifier):
        ig = IntegratedGradients(PositiveLogOdds(classifier))
        attr = ig.attribute(x, baselines=torch.full_like(x, -1.0), n_steps=steps,
                            internal_batch_size=max(1, x.shape[0]) * min(steps, 8))
    attr = attr.detach().float()  # [N, C, H, W]
    return Attributions(map=normalise(attr.abs().sum(dim=1, keepdim=True)),
                        signed=normalise_signed(attr.sum(dim=1, keepdim=True)))


SIGNED_MAPS = (SWAP_MAP, PATH_MAP, "ig")  # the maps whose attribution carries a sign


def signed_attributions(classifier: FrozenClassifier, images: torch.Tensor, *,
                        counterfactuals: torch.Tensor | None = None, frames: torch.Tensor | None = None,
                        ig: bool = False) -> dict[str, torch.Tensor]:
    """Map name -> the signed form of that map for images [N, C, S, S] ([N, 1, S, S] in [-1, 1], on the CPU):
    the swap map where `counterfactuals` [N, C, S, S] are given, the traversal attribution where the
    traversal `frames` [N, F, C, S, S] are, IG where `ig` (needs captum). What the shortcut verdicts read
    (the net share on a region); Grad-CAM (ReLU'd by definition) and the difference map (a magnitude) have
    no signed form. Runs on the classifier's device."""
    device = classifier.mean.device
    x = images.to(device)
    out = {}
    if counterfactuals is not None:
        out[SWAP_MAP] = swap_attribution(classifier, x, counterfactuals.to(device), signed=True).cpu()
    if frames is not None:
        out[PATH_MAP] = path_attribution(classifier, frames.to(device), signed=True).cpu()
    if ig:
        out["ig"] = integrated_gradients(classifier, x, signed=True).cpu()
    return out


def last_conv(classifier: FrozenClassifier) -> nn.Module:
    """The layer Grad-CAM reads (kept under its former name; see `gradcam_layer`)."""
    return gradcam_layer(classifier)[1]


__all__ = [
    "Attributions", "CAPTUM_MISSING", "GradCamUnavailable", "MAP_NAMES", "PATH_MAP", "PositiveLogOdds", "SIGNED_MAPS",
    "SWAP_MAP", "difference_map", "gradcam", "gradcam_layer", "integrated_gradients", "integrated_gradients_both",
    "last_conv", "normalise", "normalise_signed", "path_attribution", "path_attribution_both", "signed_attributions",
    "swap_attribution", "swap_attribution_both", "unavailable_maps",
]
