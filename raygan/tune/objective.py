"""The sweep objective: one scalar (lower is better) over the arrays an explanation produces.

Pure: tensors in, a frozen `Score` out; no models, no Ray, so it is unit-tested on hand-made
arrays. Every trial of `raygan tune` reports every component, and the results table shows them.

For N images and a traversal of F frames at alphas a_0 = 0 < ... < a_{F-1} (alpha = n * lambda):

    J =   w_mse   * mean(recon_mse)                      reconstruction error, [-1, 1] scale
        + w_ssim  * (1 - mean(recon_ssim))               reconstruction structure
        + w_prob  * mean |p_rec - p_input|               Eq. 2's classifier term, as agreement
        + w_flip  * (1 - flip_rate)                      positives (p_input > 0.5) whose counterfactual p < 0.5
        + w_mono  * (1 - monotone_share)                 traversals non-decreasing within 1e-3
        + w_start * (1 - start_share)                    traversals starting confidently negative (p(alpha=0) < 0.2)
        + w_end   * mean' |p(alpha=1) - p_rec|           the traversal reaches the reconstruction's p at alpha = 1
        + w_jump  * mean max_n |p_{n+1} - p_n|           crosses the boundary in several frames, not one jump
        + w_cost  * mean(steps_used) / steps_reference   inversion cost relative to the authors' 5000 steps

with the default weights of `ObjectiveWeights` (1, 1, 1, 1, 0.5, 0.5, 1, 0.5, 0.1). p(alpha=1) is
read off the curve by linear interpolation, because alpha = 1 falls between frames when
N * lambda > 1 (e.g. 8 frames at lambda = 0.15). mean' averages over the traversals that walk
their own z2: where the inverted z2 is ~0 the traversal follows the mean positive direction
instead (`used_fallback`), so its alpha = 1 frame is not the reconstruction and the gap means
nothing; the term is left out (0) when every traversal used the fallback. Likewise the flip term
is left out when no image is called positive: eligibility depends on the images only, never on
the settings, so all trials of a sweep share it. `boundary_frames` (mean count of frames with p
in [0.2, 0.8]) and `fallback_share` are reported but not weighted: the first grows with the frame
count by construction, the second is what the images are, as much as what the settings do.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from raygan.config import AUTHORS_INVERSION
from raygan.metrics.flip_rate import flip_rate
from raygan.scoring import monotone_split

START_NEGATIVE = 0.2  # p(alpha = 0) below this counts as a confidently negative start
BOUNDARY = (0.2, 0.8)  # p in this band counts as "on the decision boundary"


@dataclass(frozen=True)
class Evaluation:
    """The per-image arrays one set of settings produced on one sample of images."""

    p_input: torch.Tensor  # [N] p_C(x)
    p_reconstruction: torch.Tensor  # [N] p_C(G(z1, z2))
    p_counterfactual: torch.Tensor  # [N] p_C(G(z1, 0))
    recon_mse: torch.Tensor  # [N] MSE(G(z1, z2), x) on the [-1, 1] scale
    recon_ssim: torch.Tensor  # [N] SSIM(G(z1, z2), x)
    alphas: torch.Tensor  # [F] alpha = n * lambda, increasing from 0
    probs: torch.Tensor  # [N, F] p_C per traversal frame
    steps_used: torch.Tensor  # [N] inversion steps each image ran
    used_fallback: torch.Tensor | None = None  # [N] bool: the traversal walked the mean positive direction (None: none)

    def __post_init__(self) -> None:
        n = self.p_input.shape[0]
        for name in ("p_input", "p_reconstruction", "p_counterfactual", "recon_mse", "recon_ssim", "steps_used"):
            value = getattr(self, name)
            assert value.shape == (n,), (name, value.shape)  # [N]
        assert self.used_fallback is None or self.used_fallback.shape == (n,), self.used_fallback.shape  # [N]
        assert self.alphas.ndim == 1 and self.alphas.shape[0] >= 2, self.alphas.shape  # [F]
        assert self.probs.shape == (n, self.alphas.shape[0]), self.probs.shape  # [N, F]

    @classmethod
    def from_explanations(cls, explanations: list) -> Evaluation:
        """Stack `raygan.explain.explainer.Explanation`s (one traversal grid for all) into arrays."""
        assert explanations, "need at least one explanation"
        f = torch.tensor
        return cls(
            p_input=f([e.p_input for e in explanations], dtype=torch.float64),
            p_reconstruction=f([e.p_reconstruction for e in explanations], dtype=torch.float64),
            p_counterfactual=f([e.p_counterfactual for e in explanations], dtype=torch.float64),
            recon_mse=f([e.recon_mse for e in explanations], dtype=torch.float64),
            recon_ssim=f([e.recon_ssim for e in explanations], dtype=torch.float64),
            alphas=f(list(explanations[0].traversal_alphas), dtype=torch.float64),
            probs=f([list(e.traversal_probs) for e in explanations], dtype=torch.float64),
            steps_used=f([e.steps_used for e in explanations], dtype=torch.float64),
            used_fallback=f([bool(e.used_fallback) for e in explanations], dtype=torch.bool),
        )


@dataclass(frozen=True)
class ObjectiveWeights:
    """Weights of the terms of J (module docstring); J is minimised."""

    mse: float = 1.0  # mean reconstruction MSE ([-1, 1] scale, typically 0.01-0.1)
    ssim: float = 1.0  # 1 - mean SSIM
    prob: float = 1.0  # mean |p_rec - p_input|
    flip: float = 1.0  # 1 - flip rate
    monotone: float = 0.5  # 1 - monotone share
    start: float = 0.5  # 1 - share of traversals starting at p < 0.2
    end: float = 1.0  # mean |p(alpha = 1) - p_rec| over traversals that walk their own z2
    jump: float = 0.5  # mean largest frame-to-frame change of p
    cost: float = 0.1  # mean steps / steps_reference
    steps_reference: int = AUTHORS_INVERSION.steps  # steps that cost 1 (the authors' 5000)


@dataclass(frozen=True)
class Score:
    """Every component of the objective for one evaluation, and J itself."""

    objective: float  # J, lower is better
    images: int  # N, images scored
    recon_mse: float  # mean MSE(G(z1, z2), x)
    recon_ssim: float  # mean SSIM(G(z1, z2), x)
    prob_gap: float  # mean |p_rec - p_input|
    flip_rate: float  # flipped / eligible; nan when no image is called positive
    flip_eligible: int  # images with p_input > 0.5
    monotone_share: float  # share of traversals non-decreasing within 1e-3
    monotone_own: float  # the same over traversals that walk their own z2 (nan: none)
    monotone_fallback: float  # the same over fallback traversals (nan: none)
    start_share: float  # share of traversals with p(alpha = 0) < 0.2
    start_p: float  # mean p(alpha = 0)
    end_gap: float  # mean |p(alpha = 1) - p_rec| over own-z2 traversals (interpolated); nan when there are none
    fallback_share: float  # share of traversals that walked the mean positive direction (z2 was ~0)
    max_jump: float  # mean over images of the largest |p_{n+1} - p_n|
    boundary_frames: float  # mean count of frames with p in [0.2, 0.8] (reported, not weighted)
    steps: float  # mean inversion steps used
    cost: float  # steps / steps_reference

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """The fields as a flat dict (what a trial reports and a table row shows)."""
        return {f"{prefix}{k}": float(v) for k, v in dataclasses.asdict(self).items()}


def p_at_alpha(alphas: torch.Tensor, probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """p on each curve at `alpha` by linear interpolation; the last frame when the curve stops short.

    alphas [F] increasing, probs [N, F]; returns [N].
    """
    assert alphas.ndim == 1 and probs.ndim == 2 and probs.shape[1] == alphas.shape[0], (alphas.shape, probs.shape)
    alphas = alphas.to(torch.float64)
    probs = probs.to(torch.float64)
    if alpha >= float(alphas[-1]):
        return probs[:, -1]
    if alpha <= float(alphas[0]):
        return probs[:, 0]
    hi = int(torch.searchsorted(alphas, torch.tensor([alpha], dtype=torch.float64), right=False)[0])
    lo = hi - 1
    t = (alpha - float(alphas[lo])) / (float(alphas[hi]) - float(alphas[lo]))
    return probs[:, lo] + t * (probs[:, hi] - probs[:, lo])


def score(evaluation: Evaluation, *, weights: ObjectiveWeights = ObjectiveWeights()) -> Score:
    """All components of J on one evaluation, and J (see the module docstring for the formula)."""
    e = evaluation
    probs = e.probs.to(torch.float64)  # [N, F]
    p_rec = e.p_reconstruction.to(torch.float64)  # [N]
    n = int(probs.shape[0])
    assert n > 0, "cannot score zero images"

    flips = flip_rate(e.p_input.to(torch.float64), e.p_counterfactual.to(torch.float64))
    fallback = e.used_fallback if e.used_fallback is not None else torch.zeros(n, dtype=torch.bool)
    walk = monotone_split(probs, fallback)  # the one scoring path's monotone share, split own-z2 / fallback
    start = probs[:, 0]
    end = p_at_alpha(e.alphas, probs, 1.0)
    own = ~fallback.cpu()  # [N] traversals whose alpha = 1 frame is the reconstruction
    jumps = probs.diff(dim=1).abs().amax(dim=1)  # [N]
    boundary = ((probs >= BOUNDARY[0]) & (probs <= BOUNDARY[1])).sum(dim=1).to(torch.float64)  # [N]

    parts = {
        "recon_mse": float(e.recon_mse.to(torch.float64).mean()),
        "recon_ssim": float(e.recon_ssim.to(torch.float64).mean()),
        "prob_gap": float((p_rec - e.p_input.to(torch.float64)).abs().mean()),
        "flip_rate": flips.value,
        "flip_eligible": flips.eligible,
        "monotone_share": walk.share,
        "monotone_own": walk.own,
        "monotone_fallback": walk.fallback,
        "start_share": float((start < START_NEGATIVE).to(torch.float64).mean()),
        "start_p": float(start.mean()),
        "end_gap": float((end - p_rec).abs()[own].mean()) if bool(own.any()) else math.nan,
        "fallback_share": float(fallback.to(torch.float64).mean()),
        "max_jump": float(jumps.mean()),
        "boundary_frames": float(boundary.mean()),
        "steps": float(e.steps_used.to(torch.float64).mean()),
    }
    parts["cost"] = parts["steps"] / weights.steps_reference
    w = weights
    objective = (
        w.mse * parts["recon_mse"]
        + w.ssim * (1.0 - parts["recon_ssim"])
        + w.prob * parts["prob_gap"]
        + (w.flip * (1.0 - parts["flip_rate"]) if not math.isnan(parts["flip_rate"]) else 0.0)
        + w.monotone * (1.0 - parts["monotone_share"])
        + w.start * (1.0 - parts["start_share"])
        + (w.end * parts["end_gap"] if not math.isnan(parts["end_gap"]) else 0.0)
        + w.jump * parts["max_jump"]
        + w.cost * parts["cost"]
    )
    return Score(objective=float(objective), images=n, **parts)


__all__ = ["BOUNDARY", "START_NEGATIVE", "Evaluation", "ObjectiveWeights", "Score", "p_at_alpha", "score"]
