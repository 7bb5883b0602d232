"""The pure encoder step (no Ray): E learns, the frozen G and C do not move, the loss is the inversion's."""

from __future__ import annotations

import dataclasses

import torch
from bundle_helpers import responsive

from raygan.config import preset
from raygan.explain.inversion import per_image_loss
from raygan.models import FrozenClassifier, build_classifier, build_encoder, build_generator
from raygan.models.classifier import factory_path
from raygan.models.frozen import ClassifierSpec
from raygan.models.generator import sample_latents
from raygan.train.encoder_step import (
    EncoderModels, encoder_epoch, encoder_step, make_encoder_optimizer, start_loss,
)

TINY = preset("tiny")
SIZE = TINY.gan.image_size


def _models(seed: int = 0) -> EncoderModels:
    torch.manual_seed(seed)
    generator = responsive(build_generator(TINY.gan)).requires_grad_(False)  # images that depend on z
    spec = ClassifierSpec(format="factory", weights="w.pt", factory=factory_path("small_cnn"),
                          factory_kwargs={"image_size": SIZE}, size=SIZE)
    classifier = FrozenClassifier(build_classifier("small_cnn", image_size=SIZE), spec)
    return EncoderModels(build_encoder(TINY.gan, TINY.encoder), generator, classifier)


def _real(n: int = 16) -> torch.Tensor:
    return torch.rand(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(5)) * 2 - 1


def test_only_the_encoder_moves_and_the_frozen_nets_stay_in_their_mode() -> None:
    models = _models()
    models.generator.train()  # the step must run G in eval mode and give the caller's mode back
    g0 = {k: v.clone() for k, v in models.generator.state_dict().items()}  # includes batch-norm buffers
    c0 = {k: v.clone() for k, v in models.classifier.state_dict().items()}
    e0 = [p.clone() for p in models.encoder.parameters()]
    opt = make_encoder_optimizer(models.encoder, TINY.encoder)
    inversion = dataclasses.replace(TINY.inversion, counterfactual_weight=0.5, z1_prior_weight=0.1, feature_weight=1.0)
    metrics = encoder_step(models, opt, _real(), config=TINY.encoder, inversion=inversion,
                           rng=torch.Generator().manual_seed(0))
    assert all(torch.isfinite(getattr(metrics, f.name)) for f in dataclasses.fields(metrics))
    assert models.generator.training and not models.classifier.training
    for k, v in models.generator.state_dict().items():
        assert torch.equal(v, g0[k]), k  # running statistics untouched: G ran in eval mode
    for k, v in models.classifier.state_dict().items():
        assert torch.equal(v, c0[k]), k
    assert all(p.grad is None for p in models.generator.parameters())
    assert all(p.grad is None for p in models.classifier.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(models.encoder.parameters(), e0))


def test_the_real_half_is_the_inversions_own_loss() -> None:
    models = _models()
    real = _real(4)
    z1, z2 = models.encoder.eval()(real)
    inversion = dataclasses.replace(TINY.inversion, counterfactual_weight=0.5)
    p_x = models.classifier.eval().p_positive(real)
    expected = per_image_loss(models.generator.eval(), models.classifier, z1, z2, real, p_x, config=inversion)
    torch.testing.assert_close(start_loss(models.generator, models.classifier, real, z1, z2, inversion=inversion),
                               expected.detach())
    # With only the real half weighted, the step's loss is the batch mean of that per-image loss.
    config = dataclasses.replace(TINY.encoder, latent_weight=0.0, image_weight=0.0, lr=0.0)
    step = encoder_step(models, make_encoder_optimizer(models.encoder, config), real, config=config,
                        inversion=inversion, rng=torch.Generator().manual_seed(0))
    torch.testing.assert_close(step.loss, expected.mean().detach(), rtol=1e-4, atol=1e-5)


def test_an_epoch_of_training_lowers_both_halves_of_the_loss() -> None:
    models = _models()
    real = _real(32)
    config = dataclasses.replace(TINY.encoder, lr=3e-3)
    opt = make_encoder_optimizer(models.encoder, config)
    rng = torch.Generator().manual_seed(1)
    held_out = sample_latents(torch.tensor([0, 1] * 16), z1_dim=TINY.gan.z1_dim, z2_dim=TINY.gan.z2_dim,
                              generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        fake = models.generator.eval()(*held_out)

    def scores() -> tuple[float, float]:
        with torch.no_grad():
            e1, e2 = models.encoder.eval()(fake)
            latent = float((e1 - held_out[0]).pow(2).mean() + (e2 - held_out[1]).pow(2).mean())
        z1, z2 = models.encoder(real)
        return latent, float(start_loss(models.generator, models.classifier, real, z1, z2,
                                        inversion=TINY.inversion).mean())

    before = scores()
    for _ in range(8):
        done = encoder_epoch(models, opt, [real[:16], real[16:]], config=config, inversion=TINY.inversion, rng=rng)
    after = scores()
    assert done.steps == 2 and done.images == 32 and set(done.means()) == {"loss", "latent_mse", "image_mse",
                                                                           "real_loss"}
    assert after[0] < 0.9 * before[0], (before, after)  # held-out generated images: latents recovered better
    assert after[1] < before[1], (before, after)  # real images: lower inversion loss at E(x)
