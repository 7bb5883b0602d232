"""A tiny bundle (tiny-preset generator + small_cnn classifier, untrained) and tiny phantom shards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from raygan.config import preset
from raygan.data.phantoms import PhantomConfig, write_phantoms

TINY = preset("tiny")


def _responsive(generator: torch.nn.Module) -> torch.nn.Module:
    """An untrained G whose images depend on z, so trials differ and ASHA has something to rank.

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


@pytest.fixture()
def tiny_bundle(tmp_path: Path) -> str:
    """A fresh bundle directory (function scope: the sweep rewrites its settings)."""
    from bundle_helpers import save_tiny_bundle

    return save_tiny_bundle(tmp_path, steps=8, adjust=_responsive)


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    """40 phantoms at 32 px: 4 in the val split, 8 in test."""
    out = str(tmp_path_factory.mktemp("tune-data") / "phantoms")
    write_phantoms(PhantomConfig(n=40, size=TINY.gan.image_size, seed=0), out)
    return out
