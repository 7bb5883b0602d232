"""What the classifier sees: its internal activations, captured during an ordinary forward pass.

The inversion's feature term (raygan.explain.inversion) asks the reconstruction to reproduce the
classifier's view of x, not only its output probability: the last convolution's feature map (where
in the image the evidence sits) and the penultimate features (what the decision reads). Matching
p alone lets the reconstruction reach the same probability through other pixels (lungs painted
darker instead of the burned-in marker the classifier actually reads); matching the view does not.

Forward hooks record the activations of the chosen layers whenever the classifier runs, so the
view costs no extra pass. Models without hookable layers (TorchScript) have no view: `layers` is
empty and the caller must say so.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def view_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose outputs make the view: the last Conv2d and the last Linear's input (its
    pre-hook input), when present. Empty for models without such modules (e.g. TorchScript)."""
    if isinstance(model, torch.jit.ScriptModule):
        return []
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return ([convs[-1]] if convs else []) + ([linears[-1]] if linears else [])


@contextmanager
def captured_view(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """While active, every forward of `model` appends its view ([N, F_l] per layer, flattened) to the
    yielded list, in layer order; the hooks are removed on exit."""
    layers = view_layers(model)
    found: list[torch.Tensor] = []
    handles = []
    for layer in layers:
        if isinstance(layer, nn.Linear):
            handles.append(layer.register_forward_pre_hook(lambda _m, args: found.append(args[0].flatten(1))))
        else:
            handles.append(layer.register_forward_hook(lambda _m, _args, out: found.append(out.flatten(1))))
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()


def view_distance(view: list[torch.Tensor], target: list[torch.Tensor]) -> torch.Tensor:
    """[M] mean over layers of ||v - t||^2 / ||t||^2 per row: scale-free, so every layer counts alike."""
    assert len(view) == len(target) and view, (len(view), len(target))
    terms = []
    for v, t in zip(view, target):
        assert v.shape == t.shape, (v.shape, t.shape)  # [M, F_l]
        terms.append((v.float() - t.float()).pow(2).sum(1) / t.float().pow(2).sum(1).clamp_min(1e-6))
    return torch.stack(terms).mean(0)


__all__ = ["captured_view", "view_distance", "view_layers"]
