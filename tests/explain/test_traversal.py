"""Latent traversal: frames and alphas, monotone flag, Spearman rho, crossing alpha, fallback direction."""

from __future__ import annotations

import math

import pytest
import torch
from explain_helpers import SIZE, DirectionalGenerator, NormGenerator

from raygan.config import TraversalConfig
from raygan.explain.traversal import crossing_alphas, mean_positive_direction, monotone_flags, spearman_rho, traverse


def test_frames_and_alphas(tiny_generator, tiny_classifier):
    z1, z2 = torch.randn(3, 16), torch.randn(3, 4) * 2
    trav = traverse(tiny_generator, tiny_classifier, z1, z2, config=TraversalConfig(frames=4, rate=0.25))
    assert trav.alphas.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert trav.frames.shape == (3, 5, 1, SIZE, SIZE) and trav.probs.shape == (3, 5)
    with torch.no_grad():  # alpha = 0 is the counterfactual, alpha = 1 the end of the walk
        torch.testing.assert_close(trav.frames[:, 0], tiny_generator(z1, torch.zeros_like(z2)))
        torch.testing.assert_close(trav.frames[:, -1], tiny_generator(z1, trav.direction))
    own = ~trav.used_fallback  # where z2 itself is walked, alpha = 1 is the reconstruction
    assert torch.equal(trav.direction[own], z2[own])
    extrapolated = traverse(tiny_generator, tiny_classifier, z1, z2, config=TraversalConfig(frames=6, rate=0.25))
    assert extrapolated.alphas[-1] == 1.5 and extrapolated.frames.shape[1] == 7


def test_constructed_monotone_case_and_crossing(intensity_classifier):
    # Brightness tanh(||alpha z2|| - 1), p = sigmoid(8 * brightness): p rises with alpha and is
    # exactly 0.5 where alpha ||z2|| = 1, i.e. alpha = 0.5 for ||z2|| = 2.
    z1, z2 = torch.zeros(3, 16), torch.tensor([[2.0, 0, 0, 0], [0, 0, 0, 4.0], [0, 0, 0, 0.8]])
    config = TraversalConfig(frames=4, rate=0.25, min_z2_norm=0.1)
    trav = traverse(NormGenerator(), intensity_classifier, z1, z2, config=config)
    assert trav.monotone.tolist() == [True, True, True]
    assert trav.spearman.tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert trav.crossing_alpha[:2].tolist() == pytest.approx([0.5, 0.25], abs=1e-6)
    # ||z2|| = 0.8 < 1: walking z2 never reaches 0.5, so the fallback direction (norm 2) is walked
    assert trav.used_fallback.tolist() == [False, False, True]
    assert float(trav.direction[2].norm()) == pytest.approx(2.0)
    assert float(trav.crossing_alpha[2]) == pytest.approx(0.5, abs=1e-6)


def test_monotone_flags_tolerance():
    probs = torch.tensor([[0.1, 0.2, 0.3], [0.1, 0.3, 0.2995], [0.1, 0.3, 0.25], [0.5, 0.5, 0.5]])
    assert monotone_flags(probs).tolist() == [True, True, False, True]


def test_spearman_with_ties_and_constants():
    alphas = torch.tensor([0.0, 0.5, 1.0, 1.5])
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.3, 0.3, 0.3, 0.3], [0.1, 0.2, 0.2, 0.4]])
    rho = spearman_rho(alphas, probs)
    assert rho[:3].tolist() == pytest.approx([1.0, -1.0, 0.0])
    # ranks 1, 2.5, 2.5, 4 against 1, 2, 3, 4: rho = 4.5 / sqrt(5 * 4.5)
    assert float(rho[3]) == pytest.approx(4.5 / math.sqrt(5 * 4.5))


def test_crossing_alphas_interpolates():
    alphas = torch.tensor([0.0, 0.5, 1.0])
    probs = torch.tensor([[0.2, 0.4, 0.8], [0.6, 0.7, 0.8], [0.1, 0.2, 0.3], [0.1, 0.5, 0.4]])
    crossing = crossing_alphas(alphas, probs)
    assert float(crossing[0]) == pytest.approx(0.5 + 0.5 * 0.25)
    assert float(crossing[1]) == 0.0
    assert math.isnan(float(crossing[2]))
    assert float(crossing[3]) == pytest.approx(0.5)


def test_zero_z2_walks_the_mean_positive_direction(intensity_classifier):
    w = torch.tensor([1.0, -2.0, 0.5, 0.0])
    g = DirectionalGenerator(w, scale=0.6)
    z1, z2 = torch.zeros(2, 16), torch.tensor([[0.0, 0, 0, 0], [1.0, -2.0, 0.5, 0.0]])
    trav = traverse(g, intensity_classifier, z1, z2, config=TraversalConfig(frames=5, rate=0.2))
    assert trav.used_fallback.tolist() == [True, False]
    d = trav.direction[0]
    assert float(d.norm()) == pytest.approx(2.0)  # sqrt(z2_dim)
    assert float(torch.nn.functional.cosine_similarity(d, w, dim=0)) > 0.9
    assert bool(trav.monotone[0]) and float(trav.probs[0, -1]) > float(trav.probs[0, 0]) + 0.2
    # deterministic: the same z1 gets the same direction
    torch.testing.assert_close(mean_positive_direction(g, intensity_classifier, z1[:1]), d.unsqueeze(0))


def test_a_z2_that_leads_away_from_positive_is_replaced(intensity_classifier):
    w = torch.tensor([1.0, -2.0, 0.5, 0.0])
    g = DirectionalGenerator(w, scale=0.6)
    trav = traverse(g, intensity_classifier, torch.zeros(1, 16), -w.unsqueeze(0), config=TraversalConfig())
    assert bool(trav.used_fallback[0])
    assert float(torch.nn.functional.cosine_similarity(trav.direction[0], w, dim=0)) > 0.9
    assert float(trav.probs[0, -1]) > 0.5


def test_fallback_direction_is_defined_when_the_classifier_is_indifferent(intensity_classifier):
    g = DirectionalGenerator(torch.zeros(4))  # constant images: every sample scores the same
    d = mean_positive_direction(g, intensity_classifier, torch.zeros(1, 16))
    assert torch.isfinite(d).all() and float(d.norm()) == pytest.approx(2.0)
