import warnings

import pytest
import torch

from raygan.metrics.reconstruction import per_image_ssim, proximity, reconstruction_quality, ssim_window


def test_perfect_reconstruction():
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    result = reconstruction_quality(x, x.clone(), p_input=torch.tensor([0.2, 0.5, 0.9]),
                                    p_reconstruction=torch.tensor([0.3, 0.5, 0.5]))
    assert result.mse == 0.0 and result.ssim == pytest.approx(1.0)
    assert result.p_gap == pytest.approx((0.1 + 0.0 + 0.4) / 3)
    assert result.count == 3


def test_ssim_orders_quality_and_handles_small_images():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    slight = (x + 0.05 * torch.randn_like(x)).clamp(-1, 1)
    heavy = (x + 0.5 * torch.randn_like(x)).clamp(-1, 1)
    assert (per_image_ssim(x, slight) > per_image_ssim(x, heavy)).all()
    assert (per_image_ssim(x, -x) < 0).all()  # inverted contrast is dissimilar, not "similar"
    assert ssim_window(8, 8) == 7 and ssim_window(128, 128) == 11 and ssim_window(6, 9) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pytorch_msssim warns when it has to skip smoothing
        assert per_image_ssim(x[:, :, :8, :8], x[:, :, :8, :8]).allclose(torch.ones(2))


def test_proximity_is_mean_absolute_change():
    recon = torch.zeros(2, 1, 4, 4)
    cf = torch.zeros(2, 1, 4, 4)
    cf[0, 0, :2] = 1.0  # half of image 0 changes by 1
    result = proximity(recon, cf)
    assert result.value == pytest.approx(0.25) and result.count == 2
