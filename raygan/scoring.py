"""One scoring path for explanations: what `raygan evaluate`, the study, the Tune objective, the
benchmarks and the fidelity benchmark all report about a set of explained images.

Honest by construction (DESIGN.md, "Metric definitions"):
- validity judged twice: the flip rate under the explained classifier C, whose probabilities the
  inversion optimised, and under an independent judge (another architecture and seed trained on
  the same split), which nothing optimised;
- monotone share split into traversals that walk their own z2 and fallback traversals that walk
  the generator's mean positive direction (those say little about this image's own latents);
- counterfactual realism: the Frechet distance of the counterfactuals to real negatives in C's
  penultimate features, beside the real-vs-real floor and the real positive-vs-negative gap at
  the same sample sizes (the estimate is biased upwards for small samples, so only equal-size
  numbers compare);
- the counterfactual-term ablation is a second set of explanations of the same images, scored by
  the same function, so both rows come from one path.

`ExplanationArrays` stacks the per-image results once; `score` is pure over arrays and the
models it is handed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from raygan.metrics.flip_rate import flip_rate
from raygan.metrics.monotone import monotone_flags
from raygan.metrics.reconstruction import per_image_mse, per_image_ssim
from raygan.metrics.stats import nanmean, spearman_rows

if TYPE_CHECKING:
    from raygan.explain.explainer import Explanation
    from raygan.models.frozen import FrozenClassifier


@dataclass(frozen=True)
class ExplanationArrays:
    """The per-image results of N explanations (CPU tensors; one traversal grid for all)."""

    images: torch.Tensor  # [N, C, S, S] x
    reconstructions: torch.Tensor  # [N, C, S, S] G(z1, z2)
    counterfactuals: torch.Tensor  # [N, C, S, S] G(z1, 0)
    p_input: torch.Tensor  # [N] p_C(x)
    p_reconstruction: torch.Tensor  # [N] p_C(G(z1, z2))
    p_counterfactual: torch.Tensor  # [N] p_C(G(z1, 0))
    alphas: torch.Tensor  # [F] alpha per traversal frame
    probs: torch.Tensor  # [N, F] p_C per traversal frame
    used_fallback: torch.Tensor  # [N] bool: the traversal walked the mean positive direction
    steps_used: torch.Tensor  # [N] inversion steps run
    final_loss: torch.Tensor  # [N] final inversion loss

    def __post_init__(self) -> None:
        n = self.p_input.shape[0]
        assert self.images.ndim == 4 and self.images.shape[0] == n, self.images.shape  # [N, C, S, S]
        assert self.reconstructions.shape == self.counterfactuals.shape == self.images.shape
        for name in ("p_reconstruction", "p_counterfactual", "used_fallback", "steps_used", "final_loss"):
            assert getattr(self, name).shape == (n,), (name, getattr(self, name).shape)  # [N]
        assert self.probs.shape == (n, self.alphas.shape[0]), (self.probs.shape, self.alphas.shape)  # [N, F]

    @classmethod
    def of(cls, explanations: Sequence[Explanation]) -> ExplanationArrays:
        """Stack `Explanation`s (all from one Explainer, so one traversal grid)."""
        assert explanations, "no explanations to stack"

        def stack(name: str) -> torch.Tensor:
            return torch.stack([getattr(e, name) for e in explanations]).float()

        def scalars(name: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
            return torch.tensor([getattr(e, name) for e in explanations], dtype=dtype)

        return cls(
            images=stack("image"), reconstructions=stack("reconstruction"), counterfactuals=stack("counterfactual"),
            p_input=scalars("p_input"), p_reconstruction=scalars("p_reconstruction"),
            p_counterfactual=scalars("p_counterfactual"),
            alphas=torch.tensor(explanations[0].traversal_alphas, dtype=torch.float64),
            probs=torch.tensor([list(e.traversal_probs) for e in explanations], dtype=torch.float64),
            used_fallback=scalars("used_fallback", torch.bool), steps_used=scalars("steps_used"),
            final_loss=torch.tensor([e.extras.get("final_loss", math.nan) for e in explanations], dtype=torch.float64),
        )


@dataclass(frozen=True)
class Realism:
    """Frechet distances in the explained classifier's penultimate features, at equal sample sizes."""

    counterfactual_to_negative: float  # counterfactuals G(z1, 0) vs real negatives (lower = more realistic)
    floor: float  # real negatives vs other real negatives: what "indistinguishable" scores at this size
    gap: float  # real positives vs real negatives: how far apart the two classes are at this size
    n: int  # images on each side of every distance


@dataclass(frozen=True)
class ExplanationScores:
    """Everything reported about one set of explanations (one recipe on one set of images)."""

    images: int  # N, images explained
    flip_rate: float  # share of C's positive calls whose counterfactual C calls negative (nan: none)
    flip_eligible: int  # images C calls positive
    judge_flip_rate: float  # the same judged by the independent classifier (nan: no judge or no eligible image)
    judge_flip_eligible: int  # images the judge calls positive
    judge_agreement: float  # share of inputs on which the judge and C make the same call (nan: no judge)
    monotone_share: float  # share of all traversals non-decreasing within 1e-3
    mean_spearman: float  # mean Spearman rho of p against alpha (over traversals where p is not constant)
    monotone_own: float  # the same over traversals that walk their own z2 (nan: none)
    own_count: int  # traversals that walk their own z2
    monotone_fallback: float  # the same over fallback traversals (nan: none)
    fallback_count: int  # traversals that walk the mean positive direction
    recon_mse: float  # mean MSE of G(z1, z2) vs x ([-1, 1] scale)
    recon_ssim: float  # mean SSIM of G(z1, z2) vs x
    p_gap: float  # mean |p_C(G(z1, z2)) - p_C(x)|
    proximity: float  # mean |G(z1, 0) - G(z1, z2)|: how much the counterfactual repaints
    fallback_share: float  # share of traversals that walked the mean positive direction
    mean_steps: float  # mean inversion steps run per image
    realism: Realism | None  # counterfactual realism (None without real images to compare with)


def _nan_mean(values: torch.Tensor) -> float:
    return float(values.double().mean()) if values.numel() else math.nan


@dataclass(frozen=True)
class MonotoneSplit:
    """Monotone share over all traversals, over those along their own z2, and over fallback ones."""

    share: float  # all traversals (nan: none)
    own: float  # traversals that walk their own z2 (nan: none)
    own_count: int  # how many walk their own z2
    fallback: float  # traversals that walk the mean positive direction (nan: none)
    fallback_count: int  # how many fell back


def monotone_split(probs: torch.Tensor, used_fallback: torch.Tensor) -> MonotoneSplit:
    """Monotone share of traversals probs [N, F], split by `used_fallback` [N] bool."""
    assert probs.ndim == 2 and used_fallback.shape == (probs.shape[0],), (probs.shape, used_fallback.shape)
    mono = monotone_flags(probs)
    own = ~used_fallback.bool().cpu()
    mono = mono.cpu()
    return MonotoneSplit(share=_nan_mean(mono), own=_nan_mean(mono[own]), own_count=int(own.sum()),
                         fallback=_nan_mean(mono[~own]), fallback_count=int((~own).sum()))


@torch.no_grad()
def probabilities(classifier: FrozenClassifier, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """p(positive) [N] float64 on the CPU of images [N, C, S, S], `batch` at a time on the classifier's device."""
    device = classifier.mean.device
    return torch.cat([classifier.p_positive(images[i:i + batch].to(device)).double().cpu()
                      for i in range(0, images.shape[0], batch)]) if images.shape[0] else torch.zeros(0)


@torch.no_grad()
def realism(
    classifier: FrozenClassifier,
    counterfactuals: torch.Tensor,
    negatives: torch.Tensor,
    positives: torch.Tensor,
    *,
    seed: int = 0,
) -> Realism:
    """Frechet distances at one sample size n = min(len(cf), len(neg) // 2, len(pos)): counterfactuals
    vs negatives, negatives vs disjoint negatives (the floor), positives vs negatives (the gap)."""
    from raygan.metrics.frechet import batched_features, frechet_distance

    n = min(counterfactuals.shape[0], negatives.shape[0] // 2, positives.shape[0])
    if n < 2:
        return Realism(math.nan, math.nan, math.nan, n)
    rng = torch.Generator().manual_seed(seed)
    neg = negatives[torch.randperm(negatives.shape[0], generator=rng)]
    pos = positives[torch.randperm(positives.shape[0], generator=rng)[:n]]
    cf = counterfactuals[torch.randperm(counterfactuals.shape[0], generator=rng)[:n]]
    device = classifier.mean.device

    def feats(x: torch.Tensor) -> torch.Tensor:
        return batched_features(lambda b: classifier.features(b.to(device)), x)

    f_neg_a, f_neg_b = feats(neg[:n]), feats(neg[n:2 * n])
    return Realism(
        counterfactual_to_negative=frechet_distance(feats(cf), f_neg_a).value,
        floor=frechet_distance(f_neg_b, f_neg_a).value,
        gap=frechet_distance(feats(pos), f_neg_a).value,
        n=n,
    )


@dataclass(frozen=True)
class PerImage:
    """The per-image values behind `ExplanationScores`' means (nan where an image does not count),
    for paired intervals between two recipes on the same images (`raygan.metrics.bootstrap`)."""

    recon_mse: torch.Tensor  # [N] MSE of G(z1, z2) vs x
    p_gap: torch.Tensor  # [N] |p_C(G(z1, z2)) - p_C(x)|
    flipped: torch.Tensor  # [N] 1 flipped / 0 not, over images C calls positive; nan elsewhere
    judge_flipped: torch.Tensor  # [N] the same judged by the independent classifier (all nan without one)
    monotone_own: torch.Tensor  # [N] 1 monotone / 0 not, over traversals along their own z2; nan for fallback ones


def _flipped(p_input: torch.Tensor, p_counterfactual: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    value = (p_counterfactual < threshold).double()
    return torch.where(p_input > threshold, value, torch.full_like(value, math.nan))


def per_image(arrays: ExplanationArrays, *, judge: FrozenClassifier | None = None) -> PerImage:
    """Per-image values of N explanations; their nan-ignoring means are `score`'s flip rates,
    monotone own-z2 share, reconstruction MSE and p gap."""
    a = arrays
    if judge is not None:
        judged = _flipped(probabilities(judge, a.images), probabilities(judge, a.counterfactuals))
    else:
        judged = torch.full(a.p_input.shape, math.nan, dtype=torch.float64)
    mono = monotone_flags(a.probs).double().cpu()
    own = torch.where(a.used_fallback.bool().cpu(), torch.full_like(mono, math.nan), mono)
    return PerImage(recon_mse=per_image_mse(a.reconstructions, a.images).double().cpu(),
                    p_gap=(a.p_reconstruction - a.p_input).abs().double().cpu(),
                    flipped=_flipped(a.p_input.cpu(), a.p_counterfactual.cpu()), judge_flipped=judged,
                    monotone_own=own)


def score(
    arrays: ExplanationArrays,
    *,
    judge: FrozenClassifier | None = None,
    classifier: FrozenClassifier | None = None,
    negatives: torch.Tensor | None = None,
    positives: torch.Tensor | None = None,
    seed: int = 0,
    ssim: bool = True,
) -> ExplanationScores:
    """Score N explanations; `judge` adds the independent validity columns, and `classifier` with
    real `negatives` / `positives` ([M, C, S, S]) adds counterfactual realism. `ssim=False` leaves
    recon_ssim nan (for a bare GPU machine without pytorch_msssim; say so where it is reported)."""
    a = arrays
    n = int(a.p_input.shape[0])
    assert n > 0, "cannot score zero explanations"
    flips = flip_rate(a.p_input, a.p_counterfactual)
    if judge is not None:
        j_input, j_cf = probabilities(judge, a.images), probabilities(judge, a.counterfactuals)
        judged = flip_rate(j_input, j_cf)
        agreement = float(((j_input > 0.5) == (a.p_input > 0.5)).double().mean())
    else:
        judged, agreement = flip_rate(torch.zeros(0), torch.zeros(0)), math.nan
    walk = monotone_split(a.probs, a.used_fallback)
    real = None
    if classifier is not None and negatives is not None and positives is not None:
        real = realism(classifier, a.counterfactuals, negatives, positives, seed=seed)
    return ExplanationScores(
        images=n, flip_rate=flips.value, flip_eligible=flips.eligible,
        judge_flip_rate=judged.value, judge_flip_eligible=judged.eligible, judge_agreement=agreement,
        monotone_share=walk.share, mean_spearman=nanmean(spearman_rows(a.alphas, a.probs)),
        monotone_own=walk.own, own_count=walk.own_count, monotone_fallback=walk.fallback,
        fallback_count=walk.fallback_count,
        recon_mse=_nan_mean(per_image_mse(a.reconstructions, a.images)),
        recon_ssim=_nan_mean(per_image_ssim(a.reconstructions, a.images)) if ssim else math.nan,
        p_gap=_nan_mean((a.p_reconstruction - a.p_input).abs()),
        proximity=_nan_mean((a.counterfactuals - a.reconstructions).abs().flatten(1).mean(1)),
        fallback_share=_nan_mean(a.used_fallback.double()), mean_steps=_nan_mean(a.steps_used), realism=real,
    )


__all__ = ["ExplanationArrays", "ExplanationScores", "MonotoneSplit", "PerImage", "Realism", "monotone_split",
           "per_image", "probabilities", "realism", "score"]
