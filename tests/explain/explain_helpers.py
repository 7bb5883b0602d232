"""Constructed models whose behaviour is known in closed form, for the explanation tests."""

from __future__ import annotations

import torch
from torch import nn

from raygan.config import GanConfig
from raygan.models import ClassifierSpec
from raygan.models.classifier import factory_path

SIZE = 32


def small_cnn_spec(size: int = SIZE) -> ClassifierSpec:
    """The spec of a raygan small_cnn at `size` px (in-memory; weights file name only)."""
    return ClassifierSpec(format="factory", weights="weights.pt", factory=factory_path("small_cnn"),
                          factory_kwargs={"image_size": size}, size=size)


class MeanIntensityClassifier(nn.Module):
    """Logits [0, k * mean(x)]: p(positive) = sigmoid(k * mean intensity), a known function."""

    def __init__(self, k: float = 8.0) -> None:
        super().__init__()
        self.k = k
        self.conv = nn.Conv2d(1, 1, 1)  # identity 1x1 conv, so Grad-CAM has a layer to read
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.conv(x).mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(m), self.k * m], dim=1)


class DirectionalGenerator(nn.Module):
    """G(z1, z2) = tanh(scale * (z2 . w) - offset) everywhere: brighter along w; z1 adds a faint pattern."""

    def __init__(self, w: torch.Tensor, *, scale: float = 1.0, offset: float = 0.0) -> None:
        super().__init__()
        self.config = GanConfig(image_size=SIZE, arch="dcgan", width=8, z1_dim=16, z2_dim=w.numel())
        self.register_buffer("w", w.float())
        self.scale, self.offset = scale, offset

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        level = torch.tanh(self.scale * (z2 @ self.w) - self.offset)  # [N]
        return level.view(-1, 1, 1, 1).expand(-1, 1, SIZE, SIZE) + 0.0 * z1.sum()


class NormGenerator(nn.Module):
    """G(z1, z2) = tanh(||z2|| - 1) everywhere: mean intensity grows with ||z2||."""

    def __init__(self, z2_dim: int = 4) -> None:
        super().__init__()
        self.config = GanConfig(image_size=SIZE, arch="dcgan", width=8, z1_dim=16, z2_dim=z2_dim)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        level = torch.tanh(z2.norm(dim=1) - 1.0)  # [N]
        return level.view(-1, 1, 1, 1).expand(-1, 1, SIZE, SIZE) + 0.0 * z1.sum()


def identity_spec() -> ClassifierSpec:
    """A spec whose input mapping is the identity on [-1, 1] at 32 px."""
    return ClassifierSpec(format="factory", weights="weights.pt", factory=factory_path("small_cnn"), size=SIZE)
