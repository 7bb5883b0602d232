"""The frozen-classifier wrapper and the classifier spec formats users bring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

from raygan.models import ClassifierSpec, FrozenClassifier, build_classifier, load_classifier, save_classifier
from raygan.models.classifier import factory_path
from raygan.models.frozen import spec_fingerprint


def _small_spec(**changes: object) -> ClassifierSpec:
    base = dict(format="factory", weights="weights.pt", factory=factory_path("small_cnn"),
                factory_kwargs={"image_size": 32, "channels": 1}, size=32)
    base.update(changes)
    return ClassifierSpec(**base)  # type: ignore[arg-type]


def test_frozen_classifier_never_trains_and_resizes() -> None:
    frozen = FrozenClassifier(build_classifier("small_cnn", image_size=32), _small_spec())
    frozen.train()
    assert not frozen.model.training
    assert all(not p.requires_grad for p in frozen.parameters())
    x = torch.rand(3, 1, 64, 64) * 2 - 1  # generator output at another size
    p = frozen.p_positive(x)
    assert p.shape == (3,) and torch.all((p >= 0) & (p <= 1))
    assert torch.allclose(frozen.log_p_positive(x).exp(), p, atol=1e-6)
    assert frozen.features(x).shape == (3, 64)


def test_gradients_flow_to_the_input_but_not_the_weights() -> None:
    frozen = FrozenClassifier(build_classifier("small_cnn", image_size=32), _small_spec())
    x = (torch.rand(2, 1, 32, 32) * 2 - 1).requires_grad_(True)
    frozen.log_p_positive(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in frozen.parameters())


def test_factory_spec_round_trip(tmp_path: Path) -> None:
    model = build_classifier("small_cnn", image_size=32)
    save_classifier(model, tmp_path / "clf", spec=_small_spec())
    loaded = load_classifier(tmp_path / "clf")
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    assert torch.allclose(loaded(x), FrozenClassifier(model, _small_spec())(x), atol=1e-6)
    doc = json.loads((tmp_path / "clf" / "classifier.json").read_text())
    assert doc["input"]["size"] == 32 and doc["format"] == "factory"
    assert len(spec_fingerprint(tmp_path / "clf")) == 16


def test_torchvision_spec_with_rgb_input(tmp_path: Path) -> None:
    model = torchvision.models.resnet18(weights=None, num_classes=2).eval()
    spec = ClassifierSpec(format="torchvision", arch="resnet18", weights="w.pt", size=64, channels=3,
                          mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    save_classifier(model, tmp_path, spec=spec)
    loaded = load_classifier(tmp_path)
    assert loaded.p_positive(torch.zeros(2, 1, 128, 128)).shape == (2,)


def test_torchscript_spec_with_probability_output(tmp_path: Path) -> None:
    model = torch.nn.Sequential(build_classifier("small_cnn", image_size=32), torch.nn.Softmax(dim=1)).eval()
    torch.jit.script(model).save(str(tmp_path / "model.ts"))
    spec = _small_spec(format="torchscript", weights="model.ts", factory=None, factory_kwargs={}, output="probabilities")
    (tmp_path / "classifier.json").write_text(json.dumps(spec.to_json()))
    loaded = load_classifier(tmp_path)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    assert torch.allclose(loaded.p_positive(x), model(x)[:, 1], atol=1e-5)


def test_bad_spec_gives_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "classifier.json").write_text(json.dumps({"format": "factory", "weights": "w.pt"}))
    with pytest.raises(ValueError, match="factory"):
        load_classifier(tmp_path)
    (tmp_path / "classifier.json").write_text(json.dumps({"format": "factory", "weights": "w.pt", "colour": 1}))
    with pytest.raises(ValueError, match="unknown keys"):
        load_classifier(tmp_path)
