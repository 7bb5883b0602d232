"""Encoder E(x) -> (z1, z2): shapes per preset, batch independence, clear errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from raygan.config import PRESETS, EncoderConfig, preset
from raygan.models import build_encoder


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_encoder_shapes_per_preset(name: str) -> None:
    p = preset(name)
    e = build_encoder(p.gan, p.encoder).eval()
    x = torch.rand(2, p.gan.channels, p.gan.image_size, p.gan.image_size) * 2 - 1
    with torch.no_grad():
        z1, z2 = e(x)
    assert z1.shape == (2, p.gan.z1_dim) and z2.shape == (2, p.gan.z2_dim)
    assert torch.isfinite(z1).all() and torch.isfinite(z2).all()
    with pytest.raises(AssertionError):
        e(torch.zeros(2, p.gan.channels, p.gan.image_size // 2, p.gan.image_size // 2))


def test_one_image_alone_or_in_a_batch_gets_the_same_latents_in_either_mode() -> None:
    p = preset("tiny")
    torch.manual_seed(0)
    e = build_encoder(p.gan, p.encoder)
    with torch.no_grad():
        e.head.weight.normal_(0, 0.1)  # a non-trivial head so the latents differ per image
        x = torch.rand(5, 1, 32, 32) * 2 - 1
        for mode in (True, False):  # group norm: train mode is batch-independent too
            e.train(mode)
            batch, alone = e(x), e(x[3:4])
            torch.testing.assert_close(alone[0][0], batch[0][3], atol=1e-5, rtol=0)
            torch.testing.assert_close(alone[1][0], batch[1][3], atol=1e-5, rtol=0)
    assert batch[0].std() > 0


def test_bad_sizes_are_clear_errors() -> None:
    gan = preset("tiny").gan
    with pytest.raises(ValueError, match="power-of-two"):
        build_encoder(dataclasses.replace(gan, image_size=48), EncoderConfig())
    with pytest.raises(ValueError, match="width"):
        build_encoder(gan, EncoderConfig(width=64, max_width=32))
