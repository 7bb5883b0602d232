"""The sweep objective on hand-made arrays with known answers (no models, no Ray)."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from raygan.tune.objective import Evaluation, ObjectiveWeights, Score, p_at_alpha, score


def _evaluation(**changes) -> Evaluation:
    """Two images, 5 frames at alpha 0..1: a clean positive and a clean negative-to-positive walk."""
    base = dict(
        p_input=torch.tensor([0.9, 0.1]),
        p_reconstruction=torch.tensor([0.9, 0.1]),
        p_counterfactual=torch.tensor([0.05, 0.05]),
        recon_mse=torch.tensor([0.0, 0.0]),
        recon_ssim=torch.tensor([1.0, 1.0]),
        alphas=torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]),
        probs=torch.tensor([[0.05, 0.25, 0.5, 0.75, 0.9], [0.05, 0.06, 0.07, 0.08, 0.1]]),
        steps_used=torch.tensor([500, 1500]),
    )
    base.update(changes)
    return Evaluation(**base)


def test_ideal_explanations_cost_only_jumps_and_steps() -> None:
    s = score(_evaluation())
    assert s.images == 2
    assert s.recon_mse == 0 and s.recon_ssim == 1 and s.prob_gap == pytest.approx(0)
    assert s.flip_rate == 1.0 and s.flip_eligible == 1
    assert s.monotone_share == 1.0 and s.start_share == 1.0 and s.start_p == pytest.approx(0.05)
    assert s.end_gap == pytest.approx(0, abs=1e-7)
    assert s.max_jump == pytest.approx((0.25 + 0.02) / 2)  # largest steps: 0.25 and 0.1 - 0.08
    assert s.boundary_frames == pytest.approx((3 + 0) / 2)  # 0.25, 0.5, 0.75 are in [0.2, 0.8]
    assert s.steps == 1000 and s.cost == pytest.approx(1000 / 5000)
    assert s.objective == pytest.approx(0.5 * 0.135 + 0.1 * 0.2)


def test_each_term_enters_with_its_weight() -> None:
    ideal = score(_evaluation()).objective
    bad_recon = score(_evaluation(recon_mse=torch.tensor([0.1, 0.3]), recon_ssim=torch.tensor([0.5, 0.7])))
    assert bad_recon.objective - ideal == pytest.approx(0.2 + 0.4)
    gap = score(_evaluation(p_reconstruction=torch.tensor([0.6, 0.1]),
                            probs=torch.tensor([[0.05, 0.25, 0.5, 0.75, 0.9], [0.05, 0.06, 0.07, 0.08, 0.1]])))
    # p_rec 0.6 vs p_input 0.9 (prob gap 0.15 on average) and vs the curve's 0.9 at alpha = 1 (end gap 0.15).
    assert gap.prob_gap == pytest.approx(0.15) and gap.end_gap == pytest.approx(0.15)
    assert gap.objective - ideal == pytest.approx(0.15 + 0.15)
    heavy = score(_evaluation(), weights=ObjectiveWeights(jump=0.0, cost=1.0))
    assert heavy.objective == pytest.approx(0.2)


def test_flip_rate_counts_positive_calls_only_and_drops_out_without_any() -> None:
    s = score(_evaluation(p_input=torch.tensor([0.9, 0.8]), p_reconstruction=torch.tensor([0.9, 0.8]),
                          p_counterfactual=torch.tensor([0.05, 0.6])))
    assert s.flip_eligible == 2 and s.flip_rate == 0.5
    none = score(_evaluation(p_input=torch.tensor([0.1, 0.2]), p_reconstruction=torch.tensor([0.1, 0.2])))
    assert none.flip_eligible == 0 and math.isnan(none.flip_rate) and math.isfinite(none.objective)


def test_monotone_tolerance_start_threshold_and_boundary_band() -> None:
    probs = torch.tensor([[0.3, 0.2995, 0.5, 0.9, 0.9], [0.1, 0.5, 0.498, 0.7, 0.9]])  # drops 5e-4 and 2e-3
    s = score(_evaluation(probs=probs, p_reconstruction=torch.tensor([0.9, 0.9]), p_input=torch.tensor([0.9, 0.9]),
                          p_counterfactual=probs[:, 0]))
    assert s.monotone_share == 0.5
    assert s.start_share == 0.5  # 0.3 is not a confident negative start, 0.1 is
    assert s.boundary_frames == pytest.approx((3 + 3) / 2)
    assert s.max_jump == pytest.approx((0.4 + 0.4) / 2)


def test_alpha_one_between_frames_is_interpolated() -> None:
    alphas = torch.arange(9, dtype=torch.float64) * 0.15  # 8 frames at lambda 0.15 reach 1.2
    probs = (alphas / 1.2).unsqueeze(0)  # p = alpha / 1.2
    assert float(p_at_alpha(alphas, probs, 1.0)[0]) == pytest.approx(1 / 1.2)
    assert float(p_at_alpha(alphas, probs, 0.0)[0]) == 0.0
    short = torch.tensor([0.0, 0.4, 0.8])  # stops short of alpha = 1: the last frame stands in
    assert float(p_at_alpha(short, torch.tensor([[0.1, 0.2, 0.3]]), 1.0)[0]) == pytest.approx(0.3)
    s = score(_evaluation(alphas=alphas.float(), probs=torch.stack([probs[0], probs[0]]).float(),
                          p_reconstruction=torch.tensor([1 / 1.2, 0.5]), p_input=torch.tensor([1 / 1.2, 0.5])))
    assert s.end_gap == pytest.approx((0 + abs(1 / 1.2 - 0.5)) / 2, abs=1e-6)


def test_end_gap_skips_traversals_that_walk_the_fallback_direction() -> None:
    # Image 2 inverted to z2 ~ 0 and walked the mean positive direction: its alpha = 1 frame (p 0.7)
    # is not its reconstruction (p 0.1), so it must not count against the settings.
    probs = torch.tensor([[0.05, 0.25, 0.5, 0.75, 0.9], [0.05, 0.1, 0.3, 0.5, 0.7]])
    s = score(_evaluation(probs=probs, used_fallback=torch.tensor([False, True])))
    assert s.end_gap == pytest.approx(0, abs=1e-7) and s.fallback_share == 0.5
    counted = score(_evaluation(probs=probs))
    assert counted.end_gap == pytest.approx(0.3) and counted.fallback_share == 0.0
    assert counted.objective - s.objective == pytest.approx(0.3)
    every = score(_evaluation(probs=probs, used_fallback=torch.tensor([True, True])))
    assert math.isnan(every.end_gap) and every.objective == pytest.approx(s.objective)


def test_shapes_are_checked() -> None:
    with pytest.raises(AssertionError):
        _evaluation(probs=torch.zeros(2, 4))
    with pytest.raises(AssertionError):
        _evaluation(p_input=torch.zeros(3))


def test_from_explanations_and_metrics_round_trip() -> None:
    e = _evaluation()
    explanations = [
        SimpleNamespace(
            p_input=float(e.p_input[i]), p_reconstruction=float(e.p_reconstruction[i]),
            p_counterfactual=float(e.p_counterfactual[i]), recon_mse=0.0, recon_ssim=1.0,
            traversal_alphas=e.alphas.tolist(), traversal_probs=e.probs[i].tolist(), steps_used=int(e.steps_used[i]),
            used_fallback=i == 1,
        )
        for i in range(2)
    ]
    stacked = Evaluation.from_explanations(explanations)
    assert stacked.used_fallback.tolist() == [False, True]
    s = score(stacked)
    expected = score(dataclasses.replace(e, used_fallback=torch.tensor([False, True])))
    assert s.objective == pytest.approx(expected.objective)
    metrics = s.metrics()
    assert set(metrics) == {f.name for f in dataclasses.fields(Score)}
    assert all(isinstance(v, float) for v in metrics.values())
