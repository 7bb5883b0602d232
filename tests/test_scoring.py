"""The one scoring path: validity under C and an independent judge, monotone split, realism."""

from __future__ import annotations

import math

import pytest
import torch

from raygan.explain.explainer import Explanation
from raygan.models import ClassifierSpec, FrozenClassifier
from raygan.scoring import ExplanationArrays, per_image, realism, score


def _explanation(i: int, *, p_input: float, p_cf: float, probs: list[float], fallback: bool = False) -> Explanation:
    image = torch.full((1, 4, 4), 0.5)
    recon = image + 0.1 * (i + 1)  # MSE = (0.1 (i + 1))^2
    return Explanation(
        image_id=f"img-{i}", image=image, reconstruction=recon, counterfactual=recon - 0.2, z1=torch.zeros(3),
        z2=torch.zeros(2), p_input=p_input, p_reconstruction=p_input + 0.1, p_counterfactual=p_cf, recon_mse=0.0,
        recon_ssim=0.0, traversal_alphas=[0.0, 0.5, 1.0], traversal_probs=probs,
        traversal_frames=torch.zeros(3, 1, 4, 4), monotone=True, spearman=1.0, crossing_alpha=None, maps={},
        steps_used=10 * (i + 1), loss_curve=[], used_fallback=fallback,
    )




def _judge() -> FrozenClassifier:
    """A 4x4 judge that calls an image positive when its mean is above 0 on the [-1, 1] scale (a linear model,
    so its penultimate features are the pixels)."""
    linear = torch.nn.Linear(16, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.stack([-torch.ones(16), torch.ones(16)]) * 20 / 16)
        linear.bias.zero_()
    spec = ClassifierSpec(format="factory", weights="w.pt", factory="x:y", size=4, channels=1)
    return FrozenClassifier(torch.nn.Sequential(torch.nn.Flatten(), linear), spec)


def test_scores_follow_the_metric_definitions() -> None:
    explained = [
        _explanation(0, p_input=0.9, p_cf=0.2, probs=[0.2, 0.5, 0.9]),  # positive, flips, monotone
        _explanation(1, p_input=0.8, p_cf=0.7, probs=[0.7, 0.6, 0.8]),  # positive, no flip, not monotone
        _explanation(2, p_input=0.1, p_cf=0.05, probs=[0.05, 0.07, 0.1], fallback=True),  # negative, fallback
    ]
    scores = score(ExplanationArrays.of(explained))
    assert scores.images == 3 and scores.flip_eligible == 2
    assert scores.flip_rate == pytest.approx(0.5)
    assert scores.monotone_share == pytest.approx(2 / 3)
    assert scores.monotone_own == pytest.approx(0.5) and scores.own_count == 2
    assert scores.monotone_fallback == pytest.approx(1.0) and scores.fallback_count == 1
    assert scores.p_gap == pytest.approx(0.1)
    assert scores.recon_mse == pytest.approx((0.01 + 0.04 + 0.09) / 3)
    assert scores.proximity == pytest.approx(0.2)
    assert scores.fallback_share == pytest.approx(1 / 3) and scores.mean_steps == pytest.approx(20.0)
    assert math.isnan(scores.judge_flip_rate) and scores.realism is None  # no judge, no real images given

    negatives_only = score(ExplanationArrays.of(explained[2:]))
    assert math.isnan(negatives_only.flip_rate) and negatives_only.flip_eligible == 0


def test_per_image_values_average_to_the_scores() -> None:
    explained = [
        _explanation(0, p_input=0.9, p_cf=0.2, probs=[0.2, 0.5, 0.9]),
        _explanation(1, p_input=0.8, p_cf=0.7, probs=[0.7, 0.6, 0.8]),
        _explanation(2, p_input=0.1, p_cf=0.05, probs=[0.05, 0.07, 0.1], fallback=True),
    ]
    arrays = ExplanationArrays.of(explained)
    scores, values = score(arrays, judge=_judge()), per_image(arrays, judge=_judge())
    assert values.flipped.tolist()[:2] == [1.0, 0.0] and math.isnan(values.flipped[2])  # negative call: not counted
    assert values.monotone_own.tolist()[:2] == [1.0, 0.0] and math.isnan(values.monotone_own[2])  # fallback
    assert values.flipped.nanmean() == pytest.approx(scores.flip_rate)
    assert values.monotone_own.nanmean() == pytest.approx(scores.monotone_own)
    assert values.recon_mse.mean() == pytest.approx(scores.recon_mse)
    assert values.p_gap.mean() == pytest.approx(scores.p_gap)
    judged = values.judge_flipped[~values.judge_flipped.isnan()]
    assert judged.numel() == scores.judge_flip_eligible and judged.mean() == pytest.approx(scores.judge_flip_rate)
    assert per_image(arrays).judge_flipped.isnan().all()  # no judge: nothing counted


def test_an_independent_judge_can_disagree() -> None:
    """The explained classifier's flip rate is 1; a judge that sees every counterfactual as bright calls none flipped."""
    explained = [_explanation(i, p_input=0.9, p_cf=0.1, probs=[0.1, 0.5, 0.9]) for i in range(3)]  # images 0.5, cfs >= 0.4
    judged = score(ExplanationArrays.of(explained), judge=_judge())
    assert judged.flip_rate == pytest.approx(1.0)
    assert judged.judge_flip_eligible == 3 and judged.judge_flip_rate == pytest.approx(0.0)
    assert judged.judge_agreement == pytest.approx(1.0)


def test_realism_floor_and_gap() -> None:
    g = torch.Generator().manual_seed(0)
    negatives = torch.randn(40, 1, 4, 4, generator=g) * 0.1 - 0.5
    positives = torch.randn(20, 1, 4, 4, generator=g) * 0.1 + 0.5
    like_negatives = torch.randn(20, 1, 4, 4, generator=g) * 0.1 - 0.5
    r = realism(_judge(), like_negatives, negatives, positives)
    assert r.n == 20
    assert r.floor < r.gap and r.counterfactual_to_negative < r.gap
