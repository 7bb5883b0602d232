"""Generator / discriminator / classifier shapes per preset, the z2 rule, and the paper's layer facts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from raygan.config import PRESETS, preset
from raygan.models import build_classifier, build_discriminator, build_generator, sample_latents


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_generator_and_discriminator_shapes(name: str) -> None:
    p = preset(name)
    g, d = build_generator(p.gan).eval(), build_discriminator(p.gan).eval()
    labels = torch.tensor([0, 1, 1])
    z1, z2 = sample_latents(labels, z1_dim=p.gan.z1_dim, z2_dim=p.gan.z2_dim)
    with torch.no_grad():
        x = g(z1, z2)
        assert x.shape == (3, p.gan.channels, p.gan.image_size, p.gan.image_size)
        assert x.min() >= -1 and x.max() <= 1  # tanh output
        if p.gan.d_condition == "classifier":  # the projection D scores (image, class) pairs
            assert d(x, labels).shape == (3,)
            with pytest.raises(AssertionError, match="needs classes"):
                d(x)
        else:
            assert d(x).shape == (3,)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_classifier_shapes(name: str) -> None:
    p = preset(name)
    c = build_classifier(p.classifier.arch, image_size=p.classifier.image_size).eval()
    with torch.no_grad():
        assert c(torch.zeros(2, 1, p.classifier.image_size, p.classifier.image_size)).shape == (2, 2)


def test_z2_rule_zero_for_negatives_gaussian_for_positives() -> None:
    labels = torch.tensor([0, 1] * 500)
    z1, z2 = sample_latents(labels, z1_dim=100, z2_dim=10, generator=torch.Generator().manual_seed(0))
    assert torch.all(z2[labels == 0] == 0)
    positives = z2[labels == 1]
    assert positives.abs().sum(dim=1).min() > 0
    assert abs(positives.mean().item()) < 0.05 and abs(positives.std().item() - 1) < 0.05
    assert abs(z1.std().item() - 1) < 0.05


def test_paper_generator_follows_the_authors_layers() -> None:
    g = build_generator(preset("paper").gan)
    linear = g.stem[0]
    assert isinstance(linear, nn.Linear) and (linear.in_features, linear.out_features) == (110, 768)
    convs = [m for m in g.body if isinstance(m, nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (768, 384, 5, 2), (384, 256, 5, 2), (256, 192, 5, 2), (192, 64, 5, 2), (64, 1, 8, 2),
    ]


def test_paper_discriminator_follows_the_authors_layers() -> None:
    d = build_discriminator(preset("paper").gan)
    convs = [m for m in d.body if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128, 256, 512]
    assert [c.stride[0] for c in convs] == [2, 1, 2, 1, 2, 1]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert d.head.in_features == 512 * 13 * 13
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in d.body)


def test_dcgan_rejects_non_power_of_two() -> None:
    from raygan.config import GanConfig

    with pytest.raises(ValueError, match="power-of-two"):
        build_generator(GanConfig(image_size=48, arch="dcgan"))


@pytest.mark.parametrize("upsample", ["transposed", "resize"])
def test_resize_doubling_paints_no_checkerboard(upsample: str) -> None:
    """A flat feature map stays flat through resize + conv (away from the zero-padded border); a k4 s2
    transposed conv gives even and odd output pixels different kernel taps, a period-2 pattern."""
    from raygan.models.generator import doubling

    torch.manual_seed(0)
    layer = doubling(4, 1, upsample, bias=False)
    with torch.no_grad():
        out = layer(torch.ones(1, 4, 8, 8))[0, 0, 2:-2, 2:-2]  # [12, 12] interior
    assert out.shape == (12, 12)
    spread = float(out.max() - out.min())
    if upsample == "resize":
        assert spread < 1e-5, spread
    else:
        assert spread > 1e-3 and torch.allclose(out[::2, ::2], out[2::2, 2::2].new_full((), float(out[0, 0]))), out


def test_small_preset_generator_doubles_by_resize() -> None:
    g = build_generator(preset("small").gan)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in g.modules())
    assert sum(isinstance(m, nn.Upsample) for m in g.modules()) == 4  # 4 -> 8 -> 16 -> 32 -> 64
