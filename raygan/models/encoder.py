"""The encoder E(x) -> (z1, z2): amortised inversion, one forward pass instead of an optimisation.

Encoder-based GAN inversion (pSp, e4e, ReStyle in the literature) maps an image straight to the
latents whose image is close to it; `raygan.explain.inversion.invert` then starts there and
refines for a few steps (`InversionConfig.encoder_steps`) instead of starting from z1 = 0.

Shape: k4 s2 convolutions halve the side down to 4x4 (the generator's "dcgan" body in reverse),
then one linear layer gives z1 and z2. Group norm, not batch norm: E(x) of an image does not
depend on the other images of the batch in either mode, so an inversion that starts at E(x)
stays batch-independent, and training on small per-worker batches has no running statistics to
drift.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from raygan.config import EncoderConfig, GanConfig
from raygan.models.generator import init_weights


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class Encoder(nn.Module):
    """E(x) -> (z1, z2) for images x [N, C, S, S] in [-1, 1], at the generator's size and channels."""

    def __init__(self, gan: GanConfig, config: EncoderConfig) -> None:
        super().__init__()
        self.gan = gan
        self.config = config
        n_down = int(math.log2(gan.image_size)) - 2
        if 4 * 2**n_down != gan.image_size or n_down < 1:
            raise ValueError(f"the encoder needs a power-of-two image_size >= 8, got {gan.image_size}")
        if config.width < 1 or config.max_width < config.width:
            raise ValueError(f"the encoder needs 1 <= width <= max_width, got {config.width} and {config.max_width}")
        layers: list[nn.Module] = []
        cin, width = gan.channels, config.width
        for i in range(n_down):
            layers.append(nn.Conv2d(cin, width, 4, 2, 1, bias=i == 0))
            if i > 0:  # no norm on the first layer (as in the discriminator): it sees raw pixels
                layers.append(_norm(width))
            layers.append(nn.LeakyReLU(0.2, True))
            cin, width = width, min(width * 2, config.max_width)
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin * 16, gan.z1_dim + gan.z2_dim)
        self.apply(init_weights)
        # A near-zero head: an untrained encoder starts every image at z ~ 0, the authors' z1 = 0.
        nn.init.normal_(self.head.weight, 0.0, 1e-3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert x.ndim == 4 and tuple(x.shape[1:]) == (self.gan.channels, self.gan.image_size, self.gan.image_size), (
            x.shape, self.gan.channels, self.gan.image_size)  # [N, C, S, S]
        z = self.head(self.body(x).flatten(1))  # [N, z1_dim + z2_dim]
        return z[:, :self.gan.z1_dim], z[:, self.gan.z1_dim:]  # [N, z1_dim], [N, z2_dim]


def build_encoder(gan: GanConfig, config: EncoderConfig) -> Encoder:
    """A freshly initialised encoder for the generator of `gan`."""
    return Encoder(gan, config)


__all__ = ["Encoder", "build_encoder"]
