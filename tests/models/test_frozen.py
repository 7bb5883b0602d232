"""The frozen-classifier wrapper and the classifier spec formats users bring."""

from __future__ import annotations

import dataclasses
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


# --- K classes, multi-label, names, and what TorchScript cannot do ------------------------------------


class _FixedLogits(torch.nn.Module):
    """Returns the same [N, K] scores for every image (plus a zero-weight conv so it has a layer)."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 1)
        self.head = torch.nn.Linear(1, len(scores))
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.head.weight.zero_()
            self.head.bias.copy_(torch.tensor(scores))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


def test_k_class_softmax_reads_one_class_against_the_rest() -> None:
    scores = [0.5, -1.0, 2.0]
    spec = _small_spec(classes=("normal", "pneumonia", "covid"), positive_index=2)
    frozen = FrozenClassifier(_FixedLogits(scores), spec)
    x = torch.zeros(2, 1, 32, 32)
    softmax = torch.softmax(torch.tensor(scores), 0)
    assert frozen.target == 2 and frozen.target_name == "covid"
    assert torch.allclose(frozen.p_positive(x), softmax[2].expand(2), atol=1e-6)
    other = frozen.with_target("pneumonia")
    assert other.target == 1 and other.model is frozen.model
    log_p, log_not_p = other.log_p_and_log_not_p(x)
    assert torch.allclose(log_p.exp(), softmax[1].expand(2), atol=1e-6)
    assert torch.allclose(log_p.exp() + log_not_p.exp(), torch.ones(2), atol=1e-6)
    assert spec.class_index("1") == 1 and spec.class_index(0) == 0
    with pytest.raises(ValueError, match="unknown class 'flu'"):
        spec.class_index("flu")
    with pytest.raises(ValueError, match="out of range"):
        spec.class_index(3)


def test_multi_label_sigmoid_reads_one_label() -> None:
    scores = [1.5, -0.5, 0.0]
    spec = _small_spec(activation="sigmoid", classes=("effusion", "nodule", "marker"), positive_index=0)
    frozen = FrozenClassifier(_FixedLogits(scores), spec, target=1)
    x = torch.zeros(3, 1, 32, 32)
    log_p, log_not_p = frozen.log_p_and_log_not_p(x)
    assert torch.allclose(log_p.exp(), torch.sigmoid(torch.tensor(-0.5)).expand(3), atol=1e-6)
    assert torch.allclose(log_not_p.exp(), torch.sigmoid(torch.tensor(0.5)).expand(3), atol=1e-6)
    # Probabilities out of a sigmoid model: read as they are.
    probs = FrozenClassifier(torch.nn.Sequential(_FixedLogits(scores), torch.nn.Sigmoid()),
                             dataclasses.replace(spec, output="probabilities"), target=0)
    assert torch.allclose(probs.p_positive(x), torch.sigmoid(torch.tensor(1.5)).expand(3), atol=1e-5)


def test_check_refuses_specs_that_do_not_match_the_model() -> None:
    with pytest.raises(ValueError, match="names 2 classes"):
        FrozenClassifier(_FixedLogits([0.0, 1.0, 2.0]), _small_spec(classes=("a", "b"))).check()
    with pytest.raises(ValueError, match="out of range"):
        FrozenClassifier(_FixedLogits([0.0, 1.0]), _small_spec(), target=5).check()
    with pytest.raises(ValueError, match="single-logit"):
        FrozenClassifier(_FixedLogits([0.3]), _small_spec(positive_index=0)).check()
    assert FrozenClassifier(_FixedLogits([0.3]), _small_spec(positive_index=0, activation="sigmoid")).check() == 1
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        _small_spec(channels=4)


def test_colour_stays_colour_for_an_rgb_model() -> None:
    spec = ClassifierSpec(format="torchvision", arch="resnet18", weights="w.pt", size=16, channels=3)
    frozen = FrozenClassifier(torchvision.models.resnet18(weights=None, num_classes=2), spec)
    rgb = torch.stack([torch.full((8, 8), -1.0), torch.zeros(8, 8), torch.ones(8, 8)])[None]  # [1, 3, 8, 8]
    prepared = frozen.prepare(rgb)  # [1, 3, 16, 16]: resized, never averaged to gray
    assert prepared.shape == (1, 3, 16, 16)
    assert torch.allclose(prepared[0, :, 0, 0], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-5)
    gray = frozen.prepare(torch.zeros(1, 1, 8, 8))  # a gray generator: the same gray on every channel
    assert torch.equal(gray[0, 0], gray[0, 2])
    to_gray = FrozenClassifier(build_classifier("small_cnn", image_size=32), _small_spec()).prepare(rgb)
    assert to_gray.shape == (1, 1, 32, 32)


def test_torchvision_gray_model_and_torchscript_limits(tmp_path: Path) -> None:
    gray = ClassifierSpec(format="torchvision", arch="resnet18", weights="w.pt", size=32, channels=1, num_classes=3)
    model = torchvision.models.resnet18(weights=None, num_classes=3)
    model.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    save_classifier(model, tmp_path / "gray", spec=gray)
    loaded = load_classifier(tmp_path / "gray", target=2)
    assert loaded.target == 2 and loaded.p_positive(torch.zeros(2, 1, 32, 32)).shape == (2,)
    assert loaded.unsupported() == {}

    script_spec = _small_spec(format="torchscript", weights="model.ts", factory=None, factory_kwargs={})
    save_classifier(build_classifier("small_cnn", image_size=32), tmp_path / "ts", spec=script_spec)
    scripted = load_classifier(tmp_path / "ts")
    assert scripted.is_scripted and set(scripted.unsupported()) == {"hooks", "reset_parameters", "features"}
    with pytest.raises(ValueError, match="TorchScript"):
        scripted.features(torch.zeros(1, 1, 32, 32))
