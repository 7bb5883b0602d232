"""One way to make the tiny test bundle (tiny-preset generator + untrained small_cnn), shared by the
serve, tune and bulk tests. Importable from any test: pytest puts tests/ on sys.path."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from raygan.bundle import save_bundle
from raygan.config import preset
from raygan.models.classifier import build_classifier, factory_path
from raygan.models.frozen import ClassifierSpec, save_classifier
from raygan.models.generator import build_generator

TINY = preset("tiny")


def responsive(generator: nn.Module) -> nn.Module:
    """An untrained G whose images depend on z (so inversions, trials and encoders have something to find).

    Fresh N(0, 0.02) weights with batch-norm running stats at (0, 1) make eval-mode outputs ~1e-4
    whatever z is: calibrate the running stats on random latents and widen the output layer.
    """
    norms = [m for m in generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = None  # cumulative average over the calibration batches
    generator.train()
    with torch.no_grad():
        for _ in range(4):
            generator(torch.randn(64, TINY.gan.z1_dim), torch.randn(64, TINY.gan.z2_dim))
        last = [m for m in generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)][-1]
        last.weight.mul_(8.0)
    for m in norms:
        m.momentum = 0.1
    return generator.eval()


def save_tiny_bundle(out: Path, *, steps: int, adjust: Callable[[nn.Module], nn.Module] | None = None) -> str:
    """Write `<out>/classifier` and `<out>/bundle` (inversion `steps`, seed 0); returns the bundle URI.

    `adjust` may change the fresh generator before it is saved (e.g. make its output depend on z).
    """
    torch.manual_seed(0)
    size = TINY.gan.image_size
    classifier = build_classifier("small_cnn", image_size=size)
    spec = ClassifierSpec(format="factory", weights="weights.pt", factory=factory_path("small_cnn"),
                          factory_kwargs={"image_size": size}, size=size)
    classifier_uri = save_classifier(classifier, out / "classifier", spec=spec)
    generator = build_generator(TINY.gan)
    generator = adjust(generator) if adjust is not None else generator.eval()
    save_bundle(str(out / "bundle"), generator=generator, classifier_uri=str(classifier_uri), train=TINY.train,
                inversion=dataclasses.replace(TINY.inversion, steps=steps), traversal=TINY.traversal)
    return str(out / "bundle")
