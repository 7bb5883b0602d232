"""One fidelity cell: the ground-truth scoring of maps, and a tiny cell end to end."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from raygan.config import preset
from raygan.data.phantoms import world_config
from raygan.fidelity.cell import ENCODER, PRIMARY, CellConfig, map_scores, run_cell
from raygan.fidelity.phantom_set import render_split, stratified
from raygan.fidelity.summary import cell_rows
from raygan.fidelity.verdict import verdict


@pytest.fixture(scope="module")
def phantoms():
    world = world_config("mixed", n=120, size=32, seed=2)
    return render_split(world, "train", limit=40)


def test_map_scores_reward_the_true_cue(phantoms) -> None:
    """A map that is exactly the shortcut puts all its mass there; one on the lesions scores AUPRC 1."""
    on_shortcut = phantoms.shortcut_masks.float()
    on_lesions = phantoms.lesion_masks.float()
    s = map_scores(on_shortcut, phantoms)
    carriers = phantoms.has_shortcut.tolist()
    assert any(carriers) and not all(carriers)
    for i, carries in enumerate(carriers):
        assert math.isnan(s["shortcut_mass"][i]) != carries  # scored exactly on the carriers
        if carries:
            assert s["shortcut_mass"][i] == pytest.approx(1.0)
            assert s["shortcut_chance"][i] == pytest.approx(float(phantoms.shortcut_masks[i].float().mean()))
            assert s["twin_shortcut"][i] > 0.5
    lesions = map_scores(on_lesions, phantoms)
    for i, has in enumerate(phantoms.has_lesions.tolist()):
        if has:
            assert lesions["lesion_auprc"][i] == pytest.approx(1.0)
            assert lesions["lesion_auprc"][i] > 10 * lesions["lesion_chance"][i]
    flat = map_scores(torch.ones_like(on_shortcut), phantoms)  # a uniform map scores its chance
    for i, carries in enumerate(carriers):
        if carries:
            assert flat["shortcut_mass"][i] == pytest.approx(flat["shortcut_chance"][i])
            assert flat["shortcut_net"][i] == flat["shortcut_mass"][i]  # no signed map: the net share is the mass
    # A signed map: + on the shortcut, - on the lesions; its net share on the shortcut is its signed sum there
    # over the sum of magnitudes, whatever the (unsigned) map shown beside it.
    signed = map_scores(on_shortcut, phantoms, signed=on_shortcut - on_lesions)
    for i, carries in enumerate(carriers):
        if carries:
            area_s, area_l = float(on_shortcut[i].sum()), float(on_lesions[i].sum())
            assert signed["shortcut_net"][i] == pytest.approx(area_s / (area_s + area_l))
    against = map_scores(on_shortcut, phantoms, signed=-on_shortcut)
    assert all(v == pytest.approx(-1.0) for v, c in zip(against["shortcut_net"], carriers) if c)


def test_stratified_sample_is_half_carriers(phantoms) -> None:
    chosen = stratified(phantoms, 10)
    assert chosen.numel() == 10 and bool((chosen.diff() > 0).all())
    assert int(phantoms.has_shortcut[chosen].sum()) == 5


def test_tiny_cell_end_to_end() -> None:
    """Classifiers, reliance by twins, GAN, explanations (with the ablation) and every score, at the tiny preset."""
    torch.set_num_threads(1)
    config = CellConfig(world="shortcut_only", shortcut_kind="stamp", seed=0, phantoms=160, explain=8,
                        classifier_epochs=1, gan_epochs=1, batch=8)
    tiny = preset("tiny")
    method = dataclasses.replace(tiny, inversion=dataclasses.replace(tiny.inversion, counterfactual_weight=0.5))
    result = run_cell(config, preset=method, log=lambda _: None)
    assert result.sizes["explained"] == 8 and result.sizes["explained_with_shortcut"] == 4
    assert set(result.per_image) == {"raygan", "raygan_path", "raygan_swap", "gradcam", "ig", "raygan_no_cf",
                                      "raygan_swap_no_cf"}
    # The ablation's rows stand beside the maps they ablate, with the removal by the same (term-off) counterfactuals.
    rows = cell_rows(result, ratio=3.0)
    assert set(r["method"] for r in rows) == set(result.per_image)
    for r in rows:  # the verdict reads the net share of the signed map (the mass for maps without a sign)
        assert r["verdict"] == verdict(r["shortcut_net_share"], r["shortcut_chance"], ratio=3.0)
        if r["method"] in ("gradcam", "raygan", "raygan_no_cf"):
            assert r["shortcut_net_share"] == r["shortcut_mass"]
    signed = [v for m in ("raygan_swap", "raygan_path", "ig") for v in result.per_image[m]["shortcut_net"]]
    assert all(-1.0 <= v <= 1.0 for v in signed if not math.isnan(v))
    removal = {m: torch.tensor(result.per_image[m]["cf_removes_shortcut"])
               for m in ("raygan_no_cf", "raygan_swap_no_cf")}
    assert torch.equal(removal["raygan_no_cf"].isnan(), removal["raygan_swap_no_cf"].isnan())
    assert torch.equal(removal["raygan_no_cf"].nan_to_num(-1), removal["raygan_swap_no_cf"].nan_to_num(-1))
    for method, values in result.per_image.items():
        assert all(len(v) == 8 for v in values.values()), method
        masses = [m for m in values["shortcut_mass"] if not math.isnan(m)]
        assert len(masses) == 4 and all(0.0 <= m <= 1.0 for m in masses)
    assert result.reliance["shortcut"]["count"] == result.sizes["test_with_shortcut"]
    assert set(result.scores) == {"raygan", "raygan_no_cf"}
    assert result.scores["raygan"]["images"] == 8 and result.scores["raygan"]["realism"] is not None
    assert 0 <= result.accuracy["judge"] <= 1 and result.epochs == {"classifier": 1, "judge": 1, "gan": 1}


def test_tiny_cell_with_the_encoder_explains_the_same_phantoms_from_e_of_x() -> None:
    """Issue 14's fidelity rows: the encoder trained on the cell's training phantoms, the same sample explained
    from E(x) + K steps, scored by the same map and counterfactual scores as the shipped optimisation's."""
    torch.set_num_threads(1)
    config = CellConfig(world="mixed", shortcut_kind="marker", seed=1, phantoms=160, explain=8, classifier_epochs=1,
                        gan_epochs=1, batch=8, ablation=False, encoder_epochs=1, encoder_steps=2)
    result = run_cell(config, preset=preset("tiny"), log=lambda _: None)
    assert ENCODER in result.per_image and set(result.scores) == {"raygan", "raygan_encoder"}
    assert set(result.per_image[ENCODER]) == set(result.per_image[PRIMARY])  # the same scores, paired by image
    assert all(len(v) == 8 for v in result.per_image[ENCODER].values())
    assert result.scores["raygan_encoder"]["encoder_steps"] == 2
    assert result.scores["raygan_encoder"]["mean_steps"] <= 2 < result.scores["raygan"]["mean_steps"]
    assert result.epochs["encoder"] == 1 and result.seconds["explain_encoder"] > 0
