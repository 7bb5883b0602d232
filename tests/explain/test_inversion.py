"""Inversion (Eq. 2): batch independence, the authors' recipe, restarts, early stopping, the loss terms."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from explain_helpers import SIZE

from raygan.config import AUTHORS_INVERSION, GanConfig, InversionConfig, preset
from raygan.explain.inversion import Abandoned, _learning_rate, image_key, initial_latents, invert, per_image_loss

TINY = preset("tiny").inversion
KEYS = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    "config",
    [
        dataclasses.replace(TINY, steps=8),
        dataclasses.replace(TINY, steps=8, restarts=2, early_stop_tol=0.05, early_stop_patience=2),
        dataclasses.replace(TINY, steps=8, counterfactual_weight=0.5, z1_prior_weight=0.1, schedule="cosine",
                            z1_init="normal"),
    ],
    ids=["plain", "restarts+early-stop", "all-terms"],
)
def test_one_image_alone_or_in_a_batch_gets_the_same_latents(tiny_generator, tiny_classifier, images, config):
    batch = invert(tiny_generator, tiny_classifier, images, config=config, keys=KEYS)
    alone = invert(tiny_generator, tiny_classifier, images[2:3], config=config, keys=KEYS[2:3])
    torch.testing.assert_close(alone.z1[0], batch.z1[2], atol=1e-5, rtol=0)
    torch.testing.assert_close(alone.z2[0], batch.z2[2], atol=1e-5, rtol=0)
    assert int(alone.steps_used[0]) == int(batch.steps_used[2])
    torch.testing.assert_close(alone.final_loss[0], batch.final_loss[2], atol=1e-5, rtol=0)


def test_without_keys_the_image_bytes_seed_the_start(tiny_generator, tiny_classifier, images):
    config = dataclasses.replace(TINY, steps=3)
    batch = invert(tiny_generator, tiny_classifier, images, config=config)
    alone = invert(tiny_generator, tiny_classifier, images[4:5].clone(), config=config)
    torch.testing.assert_close(alone.z2[0], batch.z2[4], atol=1e-5, rtol=0)
    assert image_key(images[0]) != image_key(images[1])


def test_result_shapes(tiny_generator, tiny_classifier, images):
    inv = invert(tiny_generator, tiny_classifier, images, config=dataclasses.replace(TINY, steps=4), keys=KEYS)
    assert inv.z1.shape == (5, 16) and inv.z2.shape == (5, 4)
    assert inv.loss_curve.shape == (5, 4) and torch.isfinite(inv.loss_curve).all()
    assert inv.steps_used.dtype == torch.int64 and inv.steps_used.tolist() == [4] * 5
    assert inv.final_loss.shape == (5,)


def test_authors_recipe_is_exact_and_runs(tiny_generator, tiny_classifier, images):
    a = AUTHORS_INVERSION
    assert (a.mse_weight, a.bce_weight, a.lr, a.steps) == (4.0, 1.0, 0.01, 5000)
    assert (a.z1_init, a.z2_init, a.schedule, a.restarts, a.precision) == ("zeros", "normal", "constant", 1, "fp32")
    assert a.counterfactual_weight == 0 and a.z1_prior_weight == 0 and a.early_stop_tol == 0
    z1, z2 = initial_latents(KEYS, z1_dim=16, z2_dim=4, config=a)
    assert (z1 == 0).all() and z2.std() > 0.3  # z1 = 0, z2 ~ N(0, I)
    config = dataclasses.replace(AUTHORS_INVERSION, steps=5)
    inv = invert(tiny_generator, tiny_classifier, images, config=config, keys=KEYS)
    assert inv.steps_used.tolist() == [5] * 5 and inv.loss_curve.shape == (5, 5)
    assert torch.isfinite(inv.final_loss).all()


def test_loss_decreases(tiny_generator, tiny_classifier, images):
    config = dataclasses.replace(TINY, steps=15, lr=0.05)
    inv = invert(tiny_generator, tiny_classifier, images, config=config, keys=KEYS)
    assert (inv.final_loss < inv.loss_curve[:, 0]).all()


def test_more_restarts_never_lose(tiny_generator, tiny_classifier, images):
    one = invert(tiny_generator, tiny_classifier, images, config=dataclasses.replace(TINY, steps=6), keys=KEYS)
    three = invert(tiny_generator, tiny_classifier, images, config=dataclasses.replace(TINY, steps=6, restarts=3),
                   keys=KEYS)
    # Start 0 of any restart count is the single start, so the best of three is at least as good.
    assert (three.final_loss <= one.final_loss + 1e-6).all()


def test_early_stopping_stops_images_and_freezes_their_latents(tiny_generator, tiny_classifier, images):
    # tol = 10: every step after the first counts as stalled, so each image stops at step 3
    # (3 stalled steps), after exactly 3 updates: its latents equal a plain 3-step run's.
    early = dataclasses.replace(TINY, steps=50, early_stop_tol=10.0, early_stop_patience=3)
    inv = invert(tiny_generator, tiny_classifier, images, config=early, keys=KEYS)
    assert inv.steps_used.tolist() == [3] * 5
    assert inv.loss_curve.shape == (5, 4)  # the loop ends once every image has stopped
    plain = invert(tiny_generator, tiny_classifier, images, config=dataclasses.replace(TINY, steps=3), keys=KEYS)
    torch.testing.assert_close(inv.z1, plain.z1, atol=1e-6, rtol=0)
    torch.testing.assert_close(inv.z2, plain.z2, atol=1e-6, rtol=0)


def test_early_stopping_marks_the_rest_of_the_curve_nan(tiny_generator, tiny_classifier, images):
    # A real tolerance: images stop at different steps while the loop runs on for the others.
    config = dataclasses.replace(TINY, steps=60, lr=0.05, early_stop_tol=2e-3, early_stop_patience=3)
    inv = invert(tiny_generator, tiny_classifier, images, config=config, keys=KEYS)
    assert (inv.steps_used < 60).any()
    for i, used in enumerate(inv.steps_used.tolist()):
        curve = inv.loss_curve[i]
        assert torch.isfinite(curve[: used + 1]).all()
        assert torch.isnan(curve[used + 1:]).all()


def test_callback_gets_per_image_loss(tiny_generator, tiny_classifier, images):
    calls = []
    config = dataclasses.replace(TINY, steps=6, restarts=2)
    invert(tiny_generator, tiny_classifier, images, config=config, keys=KEYS,
           callback=lambda step, loss: calls.append((step, loss)), callback_every=2)
    assert [s for s, _ in calls] == [2, 4, 6]
    assert all(loss.shape == (5,) and torch.isfinite(loss).all() for _, loss in calls)


def test_should_stop_ends_the_inversion_before_the_next_step(tiny_generator, tiny_classifier, images):
    asked, steps = [], []
    with pytest.raises(Abandoned, match="after 3 of 50 steps"):
        invert(tiny_generator, tiny_classifier, images, config=dataclasses.replace(TINY, steps=50), keys=KEYS,
               should_stop=lambda: asked.append(1) or len(asked) > 3,
               callback=lambda step, loss: steps.append(step), callback_every=1)
    assert steps == [1, 2, 3]  # three steps ran, the fourth was never taken
    done = invert(tiny_generator, tiny_classifier, images, config=dataclasses.replace(TINY, steps=4), keys=KEYS,
                  should_stop=lambda: False)
    assert done.loss_curve.shape == (5, 4)  # a caller that still waits gets the whole inversion


def test_cosine_schedule():
    config = InversionConfig(lr=0.1, steps=100, schedule="cosine")
    assert _learning_rate(config, 0) == pytest.approx(0.1)
    assert _learning_rate(config, 50) == pytest.approx(0.05)
    assert _learning_rate(config, 99) < 1e-3
    assert _learning_rate(InversionConfig(lr=0.1, steps=100), 99) == 0.1


def test_loss_terms(tiny_generator, tiny_classifier, images):
    z1, z2 = torch.randn(5, 16), torch.randn(5, 4)
    p_x = tiny_classifier.p_positive(images)
    base = dataclasses.replace(TINY, mse_weight=2.0, bce_weight=3.0)
    with torch.no_grad():
        g = tiny_generator(z1, z2)
        p_g = tiny_classifier.p_positive(g)
        mse = (g - images).pow(2).flatten(1).mean(1)
        bce = torch.nn.functional.binary_cross_entropy(p_g, p_x, reduction="none")
        torch.testing.assert_close(per_image_loss(tiny_generator, tiny_classifier, z1, z2, images, p_x, config=base),
                                   2 * mse + 3 * bce, atol=1e-4, rtol=1e-4)
        p_cf = tiny_classifier.p_positive(tiny_generator(z1, torch.zeros_like(z2)))
        extra = dataclasses.replace(base, counterfactual_weight=0.5, z1_prior_weight=0.25)
        expected = 2 * mse + 3 * bce + 0.5 * p_x * -torch.log(1 - p_cf) + 0.25 * z1.pow(2).mean(1)
        torch.testing.assert_close(per_image_loss(tiny_generator, tiny_classifier, z1, z2, images, p_x, config=extra),
                                   expected, atol=1e-4, rtol=1e-4)


def test_counterfactual_term_pushes_the_counterfactual_negative(intensity_classifier):
    # G's brightness is z2 . w + z1 . v: with only Eq. 2, nothing forces the class into z2; the
    # counterfactual term makes G(z1, 0) dark (negative), so z2 must carry the brightness.
    class Linear(torch.nn.Module):
        config = GanConfig(image_size=SIZE, arch="dcgan", z1_dim=16, z2_dim=4)

        def forward(self, z1, z2):
            level = torch.tanh(0.3 * z1[:, 0] + 0.3 * z2[:, 0])
            return level.view(-1, 1, 1, 1).expand(-1, 1, SIZE, SIZE)

    x = torch.full((1, 1, SIZE, SIZE), 0.6)  # bright: the classifier says positive
    g = Linear()
    plain = dataclasses.replace(TINY, steps=60, lr=0.05, z2_init="zeros")
    with_cf = dataclasses.replace(plain, counterfactual_weight=1.0)
    p_cf = {}
    for name, config in (("plain", plain), ("cf", with_cf)):
        inv = invert(g, intensity_classifier, x, config=config, keys=["x"])
        p_cf[name] = float(intensity_classifier.p_positive(g(inv.z1, torch.zeros_like(inv.z2))))
    assert p_cf["plain"] > 0.5 and p_cf["cf"] < p_cf["plain"] - 0.1
    assert not math.isnan(p_cf["cf"])


def test_rejects_bad_arguments(tiny_generator, tiny_classifier, images):
    with pytest.raises(ValueError, match="keys"):
        invert(tiny_generator, tiny_classifier, images, config=TINY, keys=["a"])
    with pytest.raises(AssertionError):
        invert(tiny_generator, tiny_classifier, images[0], config=TINY)


def test_works_under_a_callers_inference_mode(tiny_generator, tiny_classifier, images):
    config = dataclasses.replace(TINY, steps=2)
    with torch.inference_mode():
        inv = invert(tiny_generator, tiny_classifier, images[:2], config=config, keys=KEYS[:2])
    plain = invert(tiny_generator, tiny_classifier, images[:2], config=config, keys=KEYS[:2])
    torch.testing.assert_close(inv.z2, plain.z2)


def _encoder(seed: int = 3) -> torch.nn.Module:
    from raygan.models import build_encoder

    torch.manual_seed(seed)
    encoder = build_encoder(preset("tiny").gan, preset("tiny").encoder)
    with torch.no_grad():
        encoder.head.weight.normal_(0, 0.05)  # latents that differ per image
    return encoder


def test_encoder_only_returns_e_of_x_and_refinement_stays_within_k(tiny_generator, tiny_classifier, images):
    encoder = _encoder()
    with torch.no_grad():
        z1, z2 = encoder.eval()(images)
    only = invert(tiny_generator, tiny_classifier, images, config=dataclasses.replace(TINY, encoder_steps=0),
                  keys=KEYS, encoder=encoder)
    torch.testing.assert_close(only.z1, z1)
    torch.testing.assert_close(only.z2, z2)
    assert only.steps_used.tolist() == [0] * 5 and only.loss_curve.shape == (5, 0)
    config = dataclasses.replace(TINY, encoder_steps=6, restarts=3, early_stop_tol=0.05, early_stop_patience=2)
    refined = invert(tiny_generator, tiny_classifier, images, config=config, keys=KEYS, encoder=encoder)
    assert refined.loss_curve.shape[1] <= 6 and (refined.steps_used <= 6).all()  # K, not config.steps (20)
    torch.testing.assert_close(refined.loss_curve[:, 0], only.final_loss)  # the refinement starts at E(x)
    with pytest.raises(ValueError, match="encoder_steps"):
        invert(tiny_generator, tiny_classifier, images, config=dataclasses.replace(TINY, encoder_steps=-1),
               encoder=encoder)


def test_encoder_start_is_batch_independent(tiny_generator, tiny_classifier, images):
    encoder = _encoder()
    config = dataclasses.replace(TINY, encoder_steps=5, early_stop_tol=0.05, early_stop_patience=2,
                                 counterfactual_weight=0.5)
    batch = invert(tiny_generator, tiny_classifier, images, config=config, keys=KEYS, encoder=encoder)
    alone = invert(tiny_generator, tiny_classifier, images[1:2], config=config, keys=KEYS[1:2], encoder=encoder)
    torch.testing.assert_close(alone.z1[0], batch.z1[1], atol=1e-5, rtol=0)
    assert int(alone.steps_used[0]) == int(batch.steps_used[1])
