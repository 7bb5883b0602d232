"""Latent traversal: frames G(z1, alpha * z2) for alpha = n * rate, n = 0..frames, with p_C per frame.

alpha = 0 is the counterfactual G(z1, 0), alpha = 1 the reconstruction; frames * rate > 1
extrapolates past it. The paper expects p_C to rise monotonically along the way.

Every image gets a negative-to-positive traversal. An image the classifier calls negative
usually inverts to z2 ~ 0, or to a z2 whose end of the walk is still negative, so walking along
its own z2 would show no crossing. Where ||z2|| < min_z2_norm * sqrt(dim), or where
p_C(G(z1, z2)) < 0.5, the walk follows the generator's mean positive direction for that z1
instead (see `mean_positive_direction`), and `used_fallback` says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from raygan.config import TraversalConfig
from raygan.explain.inversion import eval_mode, log_p_and_log_not_p
from raygan.metrics.monotone import monotone_flags
from raygan.metrics.stats import spearman_rows
from raygan.models.frozen import FrozenClassifier

FALLBACK_SAMPLES = 64  # K: z2 samples that estimate the mean positive direction
FALLBACK_SEED = 0  # fixed, so the fallback direction of a z1 never changes between runs


@dataclass(frozen=True)
class Traversal:
    """Traversals of N images, F = frames + 1 frames each; every tensor is on the CPU."""

    alphas: torch.Tensor  # [F] alpha = n * rate
    frames: torch.Tensor  # [N, F, C, S, S] G(z1, alpha * direction)
    probs: torch.Tensor  # [N, F] p_C(positive) of each frame
    monotone: torch.Tensor  # [N] bool: probs non-decreasing within 1e-3
    spearman: torch.Tensor  # [N] Spearman rho of probs against alphas (0 for a constant sequence)
    crossing_alpha: torch.Tensor  # [N] first alpha where p reaches 0.5 (linear interpolation); nan = never
    direction: torch.Tensor  # [N, z2_dim] the z2 walked along: the inverted z2, or the fallback direction
    used_fallback: torch.Tensor  # [N] bool: z2 ~0 or G(z1, z2) not positive, so the mean positive direction was walked


def spearman_rho(alphas: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """[N] Spearman rho (average ranks) of each row of probs [N, F] against alphas [F]; 0 where p is constant.

    A flat traversal shows no trend, so it scores 0 here (the metrics' `spearman_rows` says nan).
    """
    assert probs.ndim == 2 and alphas.shape == probs.shape[1:], (alphas.shape, probs.shape)  # [F], [N, F]
    if probs.shape[0] == 0:
        return probs.new_zeros(0)
    return spearman_rows(alphas.double(), probs.double()).nan_to_num(0.0).to(probs.dtype)


def crossing_alphas(alphas: torch.Tensor, probs: torch.Tensor, *, threshold: float = 0.5) -> torch.Tensor:
    """[N] first alpha where p reaches `threshold`, linearly interpolated between frames; nan if never."""
    assert probs.ndim == 2 and alphas.shape == probs.shape[1:], (alphas.shape, probs.shape)  # [F], [N, F]
    out = torch.full((probs.shape[0],), float("nan"), dtype=torch.float64)
    a, p = alphas.double().cpu(), probs.double().cpu()
    for i in range(p.shape[0]):
        hits = (p[i] >= threshold).nonzero()
        if len(hits) == 0:
            continue
        j = int(hits[0])
        if j == 0:
            out[i] = a[0]
            continue
        p0, p1 = p[i, j - 1], p[i, j]  # p0 < threshold <= p1
        out[i] = a[j - 1] + (threshold - p0) / (p1 - p0) * (a[j] - a[j - 1])
    return out.to(probs.dtype)


@torch.no_grad()
def mean_positive_direction(
    generator: nn.Module,
    classifier: FrozenClassifier,
    z1: torch.Tensor,
    *,
    samples: int = FALLBACK_SAMPLES,
    seed: int = FALLBACK_SEED,
) -> torch.Tensor:
    """The generator's mean positive direction in z2 for each z1 [N, z1_dim] -> [N, z2_dim].

    Draw K z2 samples s_k ~ N(0, I) (the same K for every z1, from a fixed seed), score each by
    the classifier's positive log-odds l_k = log p / (1 - p) of G(z1, s_k), and take
    v = sum_k (l_k - mean l) s_k. By Stein's identity (E[f(s) s] = E[grad f(s)] for s ~ N(0, I))
    this estimates the average gradient of the log-odds over the positive-class prior: the way
    the classifier's call moves towards positive. Log-odds rather than p, because p saturates
    near 1 on a well-trained G; centring only lowers the variance. v is rescaled to the typical
    norm of a positive z2, sqrt(dim). Where all scores are equal (v = 0) the plain mean of the
    samples is used, so the result is always defined.
    """
    assert z1.ndim == 2, z1.shape  # [N, z1_dim]
    n, dim = z1.shape[0], generator.config.z2_dim  # type: ignore[attr-defined]
    s = torch.randn(samples, dim, generator=torch.Generator().manual_seed(seed)).to(z1.device)  # [K, z2_dim]
    directions = []
    for i in range(n):
        log_p, log_not_p = log_p_and_log_not_p(classifier, generator(z1[i].expand(samples, -1), s))
        score = (log_p - log_not_p).double()  # [K]
        v = ((score - score.mean()).unsqueeze(1) * s.double()).sum(0)  # [z2_dim]
        if float(v.norm()) < 1e-12:
            v = s.double().mean(0)
        directions.append((v / v.norm() * math.sqrt(dim)).to(z1.dtype))
    return torch.stack(directions) if directions else z1.new_zeros(0, dim)


@torch.no_grad()
def traverse(
    generator: nn.Module,
    classifier: FrozenClassifier,
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    config: TraversalConfig,
) -> Traversal:
    """Frames G(z1, alpha * direction) and p_C per frame for N latent pairs (z1 [N, z1], z2 [N, z2]).

    direction = z2, or the mean positive direction where ||z2|| < min_z2_norm * sqrt(dim(z2)) or
    where G(z1, z2) is not called positive (the walk along z2 would never cross 0.5).
    """
    assert z1.ndim == 2 and z2.ndim == 2 and z1.shape[0] == z2.shape[0], (z1.shape, z2.shape)  # [N, z1], [N, z2]
    if config.frames < 1:
        raise ValueError(f"frames must be >= 1, got {config.frames}")
    dim = z2.shape[1]
    alphas = torch.arange(config.frames + 1, dtype=torch.float64) * config.rate  # [F]
    with eval_mode(generator, classifier):
        small = z2.norm(dim=1) < config.min_z2_norm * math.sqrt(dim)  # [N]
        used_fallback = small | (classifier.p_positive(generator(z1, z2)) < 0.5)  # [N]
        direction = z2.clone()
        if bool(used_fallback.any()):
            direction[used_fallback] = mean_positive_direction(generator, classifier, z1[used_fallback])
        frames, probs = [], []
        for alpha in alphas.tolist():  # one frame of every image per pass keeps memory at N images
            frame = generator(z1, alpha * direction)  # [N, C, S, S]
            frames.append(frame)
            probs.append(classifier.p_positive(frame))
    probs_t = torch.stack(probs, dim=1).float().cpu()  # [N, F]
    alphas_f = alphas.float()
    return Traversal(
        alphas=alphas_f,
        frames=torch.stack(frames, dim=1).float().cpu(),
        probs=probs_t,
        monotone=monotone_flags(probs_t),
        spearman=spearman_rho(alphas_f, probs_t),
        crossing_alpha=crossing_alphas(alphas_f, probs_t),
        direction=direction.cpu(),
        used_fallback=used_fallback.cpu(),
    )


__all__ = [
    "FALLBACK_SAMPLES", "Traversal", "crossing_alphas", "mean_positive_direction", "monotone_flags",
    "spearman_rho", "traverse",
]
