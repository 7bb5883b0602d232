import math

import pytest
import torch

from raygan.metrics.frechet import classifier_frechet, frechet_distance


def test_zero_for_identical_sets_and_larger_for_shifted_ones():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(200, 8, generator=g)
    assert frechet_distance(real, real.clone()).value == pytest.approx(0.0, abs=1e-6)
    near = frechet_distance(real, real + 0.1).value
    far = frechet_distance(real, real + 1.0).value
    assert 0 < near < far
    assert far == pytest.approx(8 * 1.0, rel=1e-6)  # a pure shift adds |delta mu|^2 only


def test_matches_the_closed_form_for_1d_gaussians():
    g = torch.Generator().manual_seed(1)
    a = 2.0 + 0.5 * torch.randn(500, 1, generator=g)
    b = -1.0 + 2.0 * torch.randn(700, 1, generator=g)
    mu_a, mu_b = a.double().mean(), b.double().mean()
    sa, sb = a.double().std(), b.double().std()  # unbiased, like torch.cov
    expected = (mu_a - mu_b) ** 2 + sa**2 + sb**2 - 2 * sa * sb
    result = frechet_distance(a, b)
    assert result.value == pytest.approx(float(expected), rel=1e-9)
    assert (result.n_real, result.n_generated, result.dim) == (500, 700, 1)


def test_rank_deficient_covariances_and_empty_sets():
    g = torch.Generator().manual_seed(2)
    few = torch.randn(5, 16, generator=g)  # covariance of rank 4 in 16-d
    assert frechet_distance(few, few).value == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(frechet_distance(torch.zeros(0, 3), few[:, :3]).value)


def test_classifier_features_in_batches():
    proj = torch.randn(16, 4, generator=torch.Generator().manual_seed(3))

    def features(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ proj

    images = torch.rand(10, 1, 4, 4)
    result = classifier_frechet(features, images, images.clone(), batch_size=3)
    assert result.value == pytest.approx(0.0, abs=1e-6) and result.dim == 4
