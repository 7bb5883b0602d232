"""The class-conditional generator G(z1, z2) and the paper's latent sampling rule."""

from __future__ import annotations

import math

import torch
from torch import nn

from raygan.config import GanConfig


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) init of convolutions and linears, N(1, 0.02) of batch-norm scales (authors' notebook)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def doubling(cin: int, cout: int, upsample: str, *, bias: bool) -> nn.Module:
    """A layer that doubles the map's side: a k4 s2 transposed conv, or a nearest-neighbour resize and a k3 conv.

    A strided transposed conv gives even and odd output pixels different kernel taps, so it paints
    checkerboard artifacts, which the counterfactual then carries into every map; resize + conv
    does not (Odena et al. 2016).
    """
    if upsample == "resize":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1, bias=bias))
    if upsample == "transposed":
        return nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=bias)
    raise ValueError(f"upsample must be 'transposed' or 'resize', got {upsample!r}")


class Generator(nn.Module):
    """G(z1, z2) -> image in [-1, 1]; z1 carries structure, z2 the class (zero = negative)."""

    def __init__(self, config: GanConfig) -> None:
        super().__init__()
        self.config = config
        z_dim = config.z1_dim + config.z2_dim
        if config.arch == "acgan":
            # Authors' notebook (an ACGAN-style net): Linear(110 -> 768) on a 1x1 map, then
            # transposed convs 768 -> 384 -> 256 -> 192 -> 64 (k5, s2: 1 -> 5 -> 13 -> 29 -> 61)
            # and 64 -> C (k8, s2: 61 -> 128).
            if config.image_size != 128:
                raise ValueError("the 'acgan' (paper) generator produces 128x128 images only")
            self.stem = nn.Sequential(nn.Linear(z_dim, 768))
            self.start = (768, 1, 1)
            widths = [768, 384, 256, 192, 64]
            blocks: list[nn.Module] = []
            for cin, cout in zip(widths, widths[1:]):
                blocks += [nn.ConvTranspose2d(cin, cout, 5, 2, 0, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
            blocks += [nn.ConvTranspose2d(64, config.channels, 8, 2, 0), nn.Tanh()]
        else:
            # DCGAN: a 4x4 map doubled up to image_size (k4 s2 transposed convs, or resize + k3 conv).
            n_up = int(math.log2(config.image_size)) - 2
            if 4 * 2**n_up != config.image_size or n_up < 1:
                raise ValueError(f"'dcgan' needs a power-of-two image_size >= 8, got {config.image_size}")
            top = config.width * 2 ** (n_up - 1)
            self.stem = nn.Sequential(nn.Linear(z_dim, top * 16, bias=False), nn.BatchNorm1d(top * 16), nn.ReLU(True))
            self.start = (top, 4, 4)
            blocks = []
            width = top
            for _ in range(n_up - 1):
                blocks += [doubling(width, width // 2, config.upsample, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU(True)]
                width //= 2
            blocks += [doubling(width, config.channels, config.upsample, bias=True), nn.Tanh()]
        self.body = nn.Sequential(*blocks)
        self.apply(init_weights)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        assert z1.ndim == 2 and z1.shape[1] == self.config.z1_dim, z1.shape  # [N, z1_dim]
        assert z2.shape == (z1.shape[0], self.config.z2_dim), z2.shape  # [N, z2_dim]
        h = self.stem(torch.cat([z1, z2], dim=1))
        return self.body(h.view(-1, *self.start))  # [N, C, S, S]


def build_generator(config: GanConfig) -> Generator:
    """A freshly initialised generator for `config`."""
    return Generator(config)


def sample_latents(
    labels: torch.Tensor, *, z1_dim: int, z2_dim: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's rule: z1 ~ N(0, I); z2 = 0 for the negative class, z2 ~ N(0, I) for the positive.

    `labels` is [N] of 0/1; returns (z1 [N, z1_dim], z2 [N, z2_dim]) on the labels' device.
    """
    assert labels.ndim == 1, labels.shape  # [N]
    n, device = labels.shape[0], labels.device
    z1 = torch.randn(n, z1_dim, generator=generator, device=device)
    z2 = torch.randn(n, z2_dim, generator=generator, device=device)
    return z1, z2 * labels.to(z2.dtype).unsqueeze(1)
