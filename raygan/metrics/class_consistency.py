"""Generator class consistency, the paper's protocol (91.15% in the paper).

Per structure latent z1: one negative sample (z2 = 0) and three positive samples (z2 ~ N(0, I)),
so positives are 3/4 of the images; the frozen classifier C labels each one (p > 0.5 means
positive) and consistency is the share where C agrees with the class fed to G. The whole draw is
repeated `repeats` times with fresh latents; the mean and the standard deviation over repeats
are reported (the paper used 1000 z1s and 1000 repeats).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from raygan.models.frozen import FrozenClassifier

POSITIVES_PER_Z1 = 3  # the paper's protocol: 1 negative + 3 positive samples per z1


@dataclass(frozen=True)
class ClassConsistency:
    """How often C agrees with the class G was asked for."""

    accuracy: float  # mean over repeats of the share of samples C labels as the class fed in
    std: float  # standard deviation of the per-repeat accuracy (0 with one repeat)
    negative_accuracy: float  # share of z2 = 0 samples C calls negative (all repeats pooled)
    positive_accuracy: float  # share of z2 ~ N(0, I) samples C calls positive (all repeats pooled)
    samples: int  # images generated in all: repeats * n_z1 * 4

    @property
    def value(self) -> float:
        """The headline number (accuracy), for the metrics registry."""
        return self.accuracy


@torch.no_grad()
def class_consistency(
    generator: nn.Module,
    classifier: FrozenClassifier,
    *,
    n_z1: int = 1000,
    repeats: int = 1,
    batch_size: int = 256,
    seed: int = 0,
) -> ClassConsistency:
    """Class consistency of `generator` under `classifier` (G in eval mode, restored afterwards).

    Latents are drawn on the CPU from `seed`, so the same seed gives the same samples on any device
    (the training loop uses this as its fixed per-epoch latent set).
    """
    if n_z1 < 1 or repeats < 1 or batch_size < 1:
        raise ValueError(f"n_z1, repeats and batch_size must be >= 1, got {n_z1}, {repeats}, {batch_size}")
    z1_dim, z2_dim = generator.config.z1_dim, generator.config.z2_dim
    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    per_z1 = 1 + POSITIVES_PER_Z1
    was_training = generator.training
    generator.eval()
    try:
        correct_per_repeat = []
        neg_correct = pos_correct = 0
        for _ in range(repeats):
            # [n_z1 * 4] classes: for each z1, one negative then three positives.
            labels = torch.tensor([0] + [1] * POSITIVES_PER_Z1).repeat(n_z1)
            z1 = torch.randn(n_z1, z1_dim, generator=rng).repeat_interleave(per_z1, dim=0)  # [n_z1 * 4, z1_dim]
            z2 = torch.randn(n_z1 * per_z1, z2_dim, generator=rng) * labels.unsqueeze(1).float()  # [n_z1 * 4, z2_dim]
            chunks = [
                classifier.p_positive(generator(z1[i:i + batch_size].to(device), z2[i:i + batch_size].to(device))).cpu()
                for i in range(0, labels.shape[0], batch_size)
            ]
            predicted = (torch.cat(chunks) > 0.5).long()  # [n_z1 * 4]
            agree = predicted == labels
            correct_per_repeat.append(agree.float().mean())
            neg_correct += int(agree[labels == 0].sum())
            pos_correct += int(agree[labels == 1].sum())
    finally:
        generator.train(was_training)
    accuracies = torch.stack(correct_per_repeat)  # [repeats]
    return ClassConsistency(
        accuracy=float(accuracies.mean()),
        std=float(accuracies.std(unbiased=False)) if repeats > 1 else 0.0,
        negative_accuracy=neg_correct / (repeats * n_z1),
        positive_accuracy=pos_correct / (repeats * n_z1 * POSITIVES_PER_Z1),
        samples=repeats * n_z1 * per_z1,
    )


__all__ = ["ClassConsistency", "POSITIVES_PER_Z1", "class_consistency"]
