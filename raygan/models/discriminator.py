"""The real/fake discriminator D (separate from the classifier being explained).

With `GanConfig.d_condition = "classifier"` D is a projection discriminator (Miyato & Koyama
2018): D(x, c) = w . h(x) + e_c . h(x), where c is the class of the image as the frozen classifier
calls it (a real image's call by C, a generated image's class fed to G). D then asks G(z1, 0) to
look like the real images C calls negative and G(z1, z2) like those C calls positive, so the class
latent learns everything that separates the two in C's eyes, not only the first way found to move
C's output (the idea of Singla et al. 2020, a GAN conditioned on the classifier's decision).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from raygan.config import GanConfig
from raygan.models.generator import init_weights


class Discriminator(nn.Module):
    """D(x) -> one real/fake logit per image."""

    def __init__(self, config: GanConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        if config.arch == "acgan":
            # Authors' notebook: six 3x3 convs 16 -> 512, strides 2,1,2,1,2,1, LeakyReLU 0.2,
            # dropout 0.5, batch norm after the first; 128 -> 64 -> 62 -> 31 -> 29 -> 15 -> 13.
            widths = [config.channels, 16, 32, 64, 128, 256, 512]
            for i, (cin, cout) in enumerate(zip(widths, widths[1:])):
                stride = 2 if i % 2 == 0 else 1
                layers.append(nn.Conv2d(cin, cout, 3, stride, 1 if stride == 2 else 0, bias=i == 0))
                if i > 0:
                    layers.append(nn.BatchNorm2d(cout))
                layers += [nn.LeakyReLU(0.2, True), nn.Dropout(config.d_dropout)]
            side = config.image_size
            for i in range(6):
                side = (side + 2 - 3) // 2 + 1 if i % 2 == 0 else side - 2
            features = 512 * side * side
        else:
            # DCGAN mirror of the generator: k4 s2 convs down to 4x4.
            n_down = int(math.log2(config.image_size)) - 2
            width, cin = config.width, config.channels
            for i in range(n_down):
                layers.append(nn.Conv2d(cin, width, 4, 2, 1, bias=i == 0))
                if i > 0:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.LeakyReLU(0.2, True))
                if config.d_dropout > 0:
                    layers.append(nn.Dropout(config.d_dropout))
                cin, width = width, width * 2
            features = cin * 16
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(features, 1)
        self.embed = nn.Embedding(2, features) if config.d_condition == "classifier" else None
        self.apply(init_weights)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Real/fake logits [N]; a conditional D also needs `classes` [N] (0 = negative, 1 = positive)."""
        assert x.ndim == 4 and x.shape[1] == self.config.channels, x.shape  # [N, C, S, S]
        h = self.body(x).flatten(1)  # [N, F]
        logit = self.head(h).squeeze(1)  # [N]
        if self.embed is not None:
            assert classes is not None and classes.shape == (x.shape[0],), "a conditional D needs classes [N]"
            logit = logit + (self.embed(classes.long()) * h).sum(dim=1)
        return logit


def build_discriminator(config: GanConfig) -> Discriminator:
    """A freshly initialised discriminator for `config`."""
    return Discriminator(config)
