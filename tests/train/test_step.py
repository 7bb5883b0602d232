"""The pure GAN step (Eq. 1): what it updates, what it leaves frozen, and the latent rule it samples."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from raygan.config import preset
from raygan.models import FrozenClassifier, build_classifier, build_discriminator, build_generator
from raygan.models.classifier import factory_path
from raygan.models.frozen import ClassifierSpec
from raygan.train.step import GanModels, MetricMeans, bare, class_nll, gan_step, make_optimizers

TINY = preset("tiny")


def _classifier(*, positive_index: int = 1) -> FrozenClassifier:
    spec = ClassifierSpec(format="factory", weights="w.pt", factory=factory_path("small_cnn"),
                          factory_kwargs={"image_size": 32}, size=32, positive_index=positive_index)
    return FrozenClassifier(build_classifier("small_cnn", image_size=32), spec)


def _models() -> GanModels:
    torch.manual_seed(0)
    return GanModels(build_generator(TINY.gan), build_discriminator(TINY.gan), _classifier())


class _Recorder(nn.Module):
    """Wraps G and records the z2 it is fed."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.inner = generator
        self.config = generator.config
        self.z2: list[torch.Tensor] = []

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        self.z2.append(z2.detach().clone())
        return self.inner(z1, z2)


def _snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_one_step_updates_g_and_d_but_not_c() -> None:
    models = _models()
    opt_g, opt_d = make_optimizers(models, TINY.train)
    g0, d0, c0 = _snapshot(models.generator), _snapshot(models.discriminator), _snapshot(models.classifier)
    real = torch.rand(8, 1, 32, 32) * 2 - 1  # [N, C, S, S]
    metrics = gan_step(models, opt_g, opt_d, real, train=TINY.train, rng=torch.Generator().manual_seed(0))
    assert _changed(g0, models.generator) and _changed(d0, models.discriminator)
    assert not _changed(c0, models.classifier)
    values = metrics.as_floats()
    assert set(values) == {"d_loss", "g_adv", "g_class", "d_real", "d_fake"}
    assert all(math.isfinite(v) for v in values.values()), values
    assert 0 <= values["d_real"] <= 1 and 0 <= values["d_fake"] <= 1
    # Step results stay tensors (no host sync inside the step).
    assert isinstance(metrics.d_loss, torch.Tensor) and not metrics.d_loss.requires_grad


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_latents_follow_the_z2_rule(fraction: float) -> None:
    models = _models()
    recorder = _Recorder(models.generator)
    models = dataclasses.replace(models, generator=recorder)
    train = dataclasses.replace(TINY.train, positive_fraction=fraction)
    opt_g, opt_d = make_optimizers(models, train)
    gan_step(models, opt_g, opt_d, torch.rand(64, 1, 32, 32) * 2 - 1, train=train, rng=torch.Generator().manual_seed(1))
    (z2,) = recorder.z2  # one G forward per step: D and G steps share the fake batch
    zero_rows = (z2 == 0).all(dim=1)
    nonzero_rows = (z2 != 0).all(dim=1)
    assert bool((zero_rows | nonzero_rows).all()), "z2 rows are either all zero (negative) or N(0, I) (positive)"
    share_positive = nonzero_rows.float().mean().item()
    assert abs(share_positive - fraction) < 0.2


def test_same_rng_same_step() -> None:
    results = []
    for _ in range(2):
        models = _models()
        opt_g, opt_d = make_optimizers(models, TINY.train)
        torch.manual_seed(3)  # D's dropout / any global draws
        real = torch.linspace(-1, 1, 8 * 32 * 32).view(8, 1, 32, 32)
        metrics = gan_step(models, opt_g, opt_d, real, train=TINY.train, rng=torch.Generator().manual_seed(5))
        results.append(metrics.as_floats())
    assert results[0] == results[1]


def test_class_term_follows_the_positive_index() -> None:
    """-log p_C(y | x): a classifier whose positive class is output 0 flips which logit y = 1 targets."""
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    torch.manual_seed(0)
    c1 = _classifier(positive_index=1)
    c0 = _classifier(positive_index=0)
    c0.load_state_dict(c1.state_dict())
    ones = torch.ones(4, dtype=torch.long)
    assert torch.allclose(class_nll(c1, x, ones), class_nll(c0, x, 1 - ones))
    expected = -torch.log_softmax(c1(x), dim=1)[:, 1].mean()
    assert torch.allclose(class_nll(c1, x, ones), expected, atol=1e-6)


def test_metric_means_and_bare() -> None:
    models = _models()
    opt_g, opt_d = make_optimizers(models, TINY.train)
    means = MetricMeans()
    assert means.means()["d_loss"].item() == 0.0  # an epoch without steps still has every name
    for _ in range(2):
        means.add(gan_step(models, opt_g, opt_d, torch.rand(4, 1, 32, 32) * 2 - 1, train=TINY.train))
    assert means.steps == 2 and all(math.isfinite(v.item()) for v in means.means().values())
    assert bare(models.generator) is models.generator


def test_class_nll_is_target_against_the_rest_for_k_classes_and_labels() -> None:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 3))
    images = torch.rand(6, 1, 32, 32) * 2 - 1
    labels = torch.tensor([1, 0, 1, 0, 0, 1])
    for activation in ("softmax", "sigmoid"):
        spec = ClassifierSpec(format="factory", weights="w.pt", factory=factory_path("small_cnn"), size=32,
                              activation=activation, classes=("a", "b", "c"))
        frozen = FrozenClassifier(net, spec, target=2)
        logits = net(frozen.prepare(images))  # [6, 3]
        p = torch.softmax(logits, 1)[:, 2] if activation == "softmax" else torch.sigmoid(logits[:, 2])
        expected = -torch.where(labels == 1, p.log(), (1 - p).log()).mean()
        assert torch.allclose(class_nll(frozen, images, labels), expected, atol=1e-5)
