"""Tiny phantom shards and a random tiny classifier spec for the training tests."""

from __future__ import annotations

import pytest
import torch

from raygan.config import preset
from raygan.data.phantoms import PhantomConfig, write_phantoms
from raygan.models.classifier import build_classifier, factory_path
from raygan.models.frozen import ClassifierSpec, save_classifier

TINY = preset("tiny")


@pytest.fixture(scope="session")
def phantom_shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    """48 phantoms at 32 px in two shards (about 38 in the training split, 5 each in val and test)."""
    out = str(tmp_path_factory.mktemp("train-data") / "phantoms")
    write_phantoms(PhantomConfig(n=48, size=TINY.gan.image_size, seed=0, rows_per_shard=24), out)
    return out


@pytest.fixture(scope="session")
def classifier_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random-weight small_cnn classifier spec directory at the tiny size."""
    torch.manual_seed(0)
    size = TINY.gan.image_size
    spec = ClassifierSpec(format="factory", weights="model.pt", factory=factory_path("small_cnn"),
                          factory_kwargs={"image_size": size, "channels": 1}, size=size)
    out = tmp_path_factory.mktemp("train-classifier") / "spec"
    return save_classifier(build_classifier("small_cnn", image_size=size), out, spec=spec)
