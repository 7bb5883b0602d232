"""Tiny in-process models for the explanation tests (no training code, no files)."""

from __future__ import annotations

import pytest
import torch
from explain_helpers import SIZE, MeanIntensityClassifier, identity_spec, small_cnn_spec
from torch import nn

from raygan.config import preset
from raygan.models import FrozenClassifier, build_classifier, build_generator


@pytest.fixture()
def tiny_generator() -> nn.Module:
    """The tiny preset's DCGAN generator with fixed random weights, in eval mode."""
    torch.manual_seed(0)
    return build_generator(preset("tiny").gan).eval()


@pytest.fixture()
def tiny_classifier() -> FrozenClassifier:
    """A random-weight small_cnn behind FrozenClassifier, spec format "factory"."""
    torch.manual_seed(1)
    return FrozenClassifier(build_classifier("small_cnn", image_size=SIZE), small_cnn_spec())


@pytest.fixture()
def images() -> torch.Tensor:
    """Five 32 px images in [-1, 1]."""
    g = torch.Generator().manual_seed(2)
    return torch.rand(5, 1, SIZE, SIZE, generator=g) * 2 - 1


@pytest.fixture()
def intensity_classifier() -> FrozenClassifier:
    return FrozenClassifier(MeanIntensityClassifier(), identity_spec())
