"""Classifier training: a loadable spec with held-out metrics; the augmentation and the AUC."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from raygan.config import preset
from raygan.models.frozen import load_classifier
from raygan.train.classifier_loop import augment
from raygan.train.classifier_trainer import roc_auc, train_classifier

TINY = preset("tiny")


@pytest.mark.timeout(300)
def test_train_classifier_writes_a_loadable_spec(ray_session: None, phantom_shards: str, tmp_path: Path) -> None:
    config = dataclasses.replace(TINY.classifier, epochs=2, batch_size=8, workers=0)
    out = str(tmp_path / "classifier")
    result = train_classifier(phantom_shards, out, config=config)
    assert result.spec_uri == out and result.epochs == 2
    assert 0 <= result.test_accuracy <= 1 and result.test_samples > 0
    assert math.isnan(result.test_auc) or 0 <= result.test_auc <= 1

    classifier = load_classifier(out)
    assert classifier.spec.format == "factory" and classifier.spec.size == TINY.classifier.image_size
    x = torch.zeros(2, 1, 32, 32)
    # mean = std = 0.5: the [-1, 1] input reaches the model unchanged.
    assert torch.equal(classifier.prepare(x), x)
    assert classifier.p_positive(x).shape == (2,)

    metrics = json.loads((tmp_path / "classifier" / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["test"]["samples"] == result.test_samples
    assert {"accuracy", "auc", "samples"} <= set(metrics["val"])
    assert metrics["train"]["train_loss"] > 0


def test_roc_auc_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=40).astype(float)  # many ties
    labels = rng.integers(0, 2, size=40)
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert roc_auc(scores, labels) == pytest.approx(pairwise)
    assert roc_auc(np.array([0.1, 0.9]), np.array([0, 1])) == 1.0
    assert math.isnan(roc_auc(np.array([0.1, 0.9]), np.array([1, 1])))


def test_augment_keeps_shape_range_and_handedness() -> None:
    images = torch.linspace(-1, 1, 32).view(1, 1, 1, 32).expand(4, 1, 32, 32).contiguous()  # dark left, bright right
    out = augment(images, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.min() >= -1 and out.max() <= 1
    assert not torch.equal(out, images)
    # Small shifts only, never a flip: the left half stays darker than the right half.
    assert bool((out[..., :16].mean(dim=(1, 2, 3)) < out[..., 16:].mean(dim=(1, 2, 3))).all())
