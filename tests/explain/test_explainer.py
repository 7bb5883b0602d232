"""The Explainer: one Explanation per image with every field the results contract needs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from explain_helpers import SIZE

from raygan.config import preset
from raygan.explain import MAP_NAMES, Explainer
from raygan.explain.attribution import PATH_MAP, SWAP_MAP

TINY = preset("tiny")


@pytest.fixture()
def explainer(tiny_generator, tiny_classifier) -> Explainer:
    return Explainer(tiny_generator, tiny_classifier, inversion=dataclasses.replace(TINY.inversion, steps=4),
                     traversal=TINY.traversal, bundle_id="b1", device="cpu")


def test_explain_fills_every_field(explainer, images):
    out = explainer.explain(images[:3], image_ids=["x", "y", "z"])
    assert [e.image_id for e in out] == ["x", "y", "z"]
    assert explainer.image_size == SIZE and explainer.channels == 1 and explainer.bundle_id == "b1"
    e = out[1]
    torch.testing.assert_close(e.image, images[1])
    assert e.reconstruction.shape == e.counterfactual.shape == (1, SIZE, SIZE)
    assert e.z1.shape == (16,) and e.z2.shape == (4,)
    for p in (e.p_input, e.p_reconstruction, e.p_counterfactual):
        assert isinstance(p, float) and 0 <= p <= 1
    assert e.recon_mse >= 0 and -1 <= e.recon_ssim <= 1
    assert e.traversal_alphas == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert len(e.traversal_probs) == 5 and e.traversal_frames.shape == (5, 1, SIZE, SIZE)
    torch.testing.assert_close(e.traversal_frames[-1], e.reconstruction)
    torch.testing.assert_close(e.traversal_frames[0], e.counterfactual)
    assert isinstance(e.monotone, bool) and isinstance(e.spearman, float)
    assert e.crossing_alpha is None or 0 <= e.crossing_alpha <= 1
    assert tuple(e.maps) == (*MAP_NAMES, PATH_MAP, SWAP_MAP)  # raygan's own two come with the attributions
    for m in e.maps.values():
        assert m.shape == (1, SIZE, SIZE) and m.min() >= 0 and m.max() <= 1
    assert e.steps_used == 4 and len(e.loss_curve) == 4


def test_explanations_do_not_depend_on_the_batch(explainer, images):
    together = explainer.explain(images[:3], image_ids=["x", "y", "z"])
    alone = explainer.explain(images[1:2], image_ids=["y"])
    torch.testing.assert_close(alone[0].z2, together[1].z2, atol=1e-5, rtol=0)
    assert alone[0].p_counterfactual == pytest.approx(together[1].p_counterfactual, abs=1e-5)


def test_without_attributions_only_the_difference_map(tiny_generator, tiny_classifier, images):
    e = Explainer(tiny_generator, tiny_classifier, inversion=dataclasses.replace(TINY.inversion, steps=2),
                  traversal=TINY.traversal, attributions=False, device="cpu")
    assert tuple(e.explain(images[:1], image_ids=["a"])[0].maps) == ("diff",)
    assert e.explain(images[:0], image_ids=[]) == []


def test_a_perfect_reconstruction_scores_ssim_one(explainer, tiny_generator):
    with torch.no_grad():
        x = tiny_generator(torch.zeros(1, 16), torch.zeros(1, 4))  # G(0, 0) is exactly reachable
    e = Explainer(explainer.generator, explainer.classifier, traversal=TINY.traversal,
                  inversion=dataclasses.replace(TINY.inversion, steps=1, lr=0.0, z2_init="zeros"), device="cpu")
    out = e.explain(x, image_ids=["g"])[0]
    assert out.recon_mse == pytest.approx(0.0, abs=1e-10) and out.recon_ssim == pytest.approx(1.0, abs=1e-5)


def test_an_abandoned_explanation_stops_before_its_maps(tiny_generator, tiny_classifier, images):
    from raygan.explain.inversion import Abandoned

    steps = 4  # no early stopping: the inversion asks before each of its 4 steps, the maps once after them
    explainer = Explainer(tiny_generator, tiny_classifier, device="cpu", traversal=TINY.traversal,
                          inversion=dataclasses.replace(TINY.inversion, steps=steps, early_stop_tol=0.0))
    asked: list[int] = []
    with pytest.raises(Abandoned, match="before the attribution maps"):
        explainer.explain(images[:2], image_ids=["a", "b"], should_stop=lambda: asked.append(1) or len(asked) > steps)
    assert len(asked) == steps + 1


def test_wrong_size_is_refused(explainer):
    with pytest.raises(AssertionError):
        explainer.explain(torch.zeros(1, 1, 64, 64), image_ids=["big"])


def test_the_signed_forms_come_with_the_maps_and_match_a_recomputation(explainer, tiny_classifier, images):
    """The Explainer keeps the signed forms of the swap map, the traversal attribution and IG from the same
    computation as the maps; `signed_maps` returns those, equal to recomputing them from the explanations."""
    from raygan.explain.attribution import SIGNED_MAPS, signed_attributions
    from raygan.explain.explainer import signed_maps

    out = explainer.explain(images[:2], image_ids=["x", "y"])
    assert set(out[0].signed) == set(SIGNED_MAPS)
    for name, m in out[0].signed.items():
        assert m.shape == (1, SIZE, SIZE) and m.min() >= -1 and m.max() <= 1
        if name != SWAP_MAP:  # one channel: the magnitude of the signed form is the map
            torch.testing.assert_close(m.abs(), out[0].maps[name])
    kept = signed_maps(tiny_classifier, out)
    again = signed_attributions(tiny_classifier, torch.stack([e.image for e in out]),
                                counterfactuals=torch.stack([e.counterfactual for e in out]),
                                frames=torch.stack([e.traversal_frames for e in out]), ig=True)
    assert set(kept) == set(again) == set(SIGNED_MAPS)
    for name in SIGNED_MAPS:
        torch.testing.assert_close(kept[name], again[name], atol=1e-5, rtol=0)
    bare = [dataclasses.replace(e, signed={}) for e in out]  # e.g. explanations made without attributions
    torch.testing.assert_close(signed_maps(tiny_classifier, bare)[SWAP_MAP], kept[SWAP_MAP], atol=1e-5, rtol=0)
