"""The quality gate: when an explanation must carry a warning, and what measure_quality measures."""

from __future__ import annotations

import pytest
import torch

from raygan.config import preset
from raygan.models import FrozenClassifier, build_classifier, build_generator
from raygan.models.classifier import factory_path
from raygan.models.frozen import ClassifierSpec
from raygan.quality import CONSISTENCY_THRESHOLD, Quality, measure_quality

TINY = preset("tiny")


def test_warning_below_the_threshold_and_when_unmeasured() -> None:
    good = Quality(class_consistency=0.93, consistency_samples=400, frechet=1.5, frechet_samples=64)
    weak = Quality(class_consistency=0.75, consistency_samples=400, frechet=9.0, frechet_samples=64)
    assert CONSISTENCY_THRESHOLD == 0.9
    assert good.passed and good.warning is None and "passes" in good.describe()
    assert not weak.passed and "0.750 is below 0.9" in weak.warning and "WARNING" in weak.describe()
    assert not Quality.unmeasured().passed and "no generator class consistency" in Quality.unmeasured().warning
    assert Quality.from_json(weak.to_json()) == weak
    assert Quality.from_json(None) == Quality.unmeasured()
    assert weak.to_json()["warning"] == weak.warning


@pytest.mark.parametrize("scripted", [False, True])
def test_measure_quality(tmp_path, scripted: bool) -> None:
    torch.manual_seed(0)
    spec = ClassifierSpec(format="factory", weights="w.pt", factory=factory_path("small_cnn"), size=32)
    model = build_classifier("small_cnn", image_size=32).eval()
    classifier = FrozenClassifier(torch.jit.script(model) if scripted else model, spec)
    real = torch.rand(10, 1, 32, 32) * 2 - 1
    quality = measure_quality(build_generator(TINY.gan), classifier, real, n_z1=4)
    assert 0 <= quality.class_consistency <= 1 and quality.consistency_samples == 16
    if scripted:
        assert quality.frechet is None and "TorchScript" in quality.frechet_note
    else:
        assert quality.frechet is not None and quality.frechet >= 0 and quality.frechet_samples == 10
