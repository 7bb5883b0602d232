"""A tiny bundle (tiny-preset generator + small_cnn classifier, untrained) and tiny phantom shards."""

from __future__ import annotations

from pathlib import Path

import pytest

from raygan.config import preset
from raygan.data.phantoms import PhantomConfig, write_phantoms

TINY = preset("tiny")


@pytest.fixture()
def tiny_bundle(tmp_path: Path) -> str:
    """A fresh bundle directory (function scope: the sweep rewrites its settings)."""
    from bundle_helpers import responsive, save_tiny_bundle

    return save_tiny_bundle(tmp_path, steps=8, adjust=responsive)


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    """40 phantoms at 32 px: 4 in the val split, 8 in test."""
    out = str(tmp_path_factory.mktemp("tune-data") / "phantoms")
    write_phantoms(PhantomConfig(n=40, size=TINY.gan.image_size, seed=0), out)
    return out
