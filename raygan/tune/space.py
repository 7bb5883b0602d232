"""The search space of `raygan tune`: inversion weights, learning rate, steps, and the traversal.

Searched: a = mse_weight and b = bce_weight (log scale), the Adam learning rate (log), the step
budget (a choice of fractions of --max-steps), counterfactual_weight, and the traversal as a
reach (N * lambda, how far past alpha = 0 it walks) and a frame count N, so lambda = reach / N.
Everything else (initialisation, schedule, restarts, early stopping, seed) comes from the
bundle's current settings. Ray Tune is imported only inside `param_space`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from raygan.config import InversionConfig, TraversalConfig


@dataclass(frozen=True)
class SearchSpace:
    """Ranges searched by `raygan tune` (bounds inclusive)."""

    mse_weight: tuple[float, float] = (0.5, 16.0)  # a, sampled log-uniformly (authors: 4)
    bce_weight: tuple[float, float] = (0.1, 10.0)  # b, sampled log-uniformly (authors: 1)
    lr: tuple[float, float] = (1e-3, 0.2)  # Adam learning rate, log-uniform (authors: 0.01)
    steps_fractions: tuple[float, ...] = (0.25, 0.5, 1.0)  # step budgets as fractions of --max-steps
    counterfactual_weight: tuple[float, float] = (0.0, 2.0)  # uniform; 0 = Eq. 2 unchanged
    reach: tuple[float, float] = (1.0, 1.5)  # N * lambda, uniform; > 1 extrapolates past the reconstruction
    frames: tuple[int, ...] = (8, 10, 16)  # N, a choice

    def __post_init__(self) -> None:
        for name in ("mse_weight", "bce_weight", "lr"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} range must be positive and ordered (log scale), got {(low, high)}")
        if not self.steps_fractions or any(not 0 < f <= 1 for f in self.steps_fractions):
            raise ValueError(f"steps_fractions must be in (0, 1], got {self.steps_fractions}")
        if not 0 <= self.counterfactual_weight[0] <= self.counterfactual_weight[1]:
            raise ValueError(f"counterfactual_weight range must be >= 0 and ordered, got {self.counterfactual_weight}")
        if not 0 < self.reach[0] <= self.reach[1]:
            raise ValueError(f"reach range must be positive and ordered, got {self.reach}")
        if not self.frames or any(f < 1 for f in self.frames):
            raise ValueError(f"frames must be positive, got {self.frames}")


def step_choices(space: SearchSpace, *, max_steps: int) -> list[int]:
    """The step budgets searched: each fraction of `max_steps`, at least 1, sorted, no duplicates."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    return sorted({max(1, round(f * max_steps)) for f in space.steps_fractions})


def param_space(space: SearchSpace, *, max_steps: int) -> dict[str, Any]:
    """Ray Tune domains for `space` (understood by OptunaSearch and the random search alike)."""
    from ray import tune

    return {
        "mse_weight": tune.loguniform(*space.mse_weight),
        "bce_weight": tune.loguniform(*space.bce_weight),
        "lr": tune.loguniform(*space.lr),
        "steps": tune.choice(step_choices(space, max_steps=max_steps)),
        "counterfactual_weight": tune.uniform(*space.counterfactual_weight),
        "reach": tune.uniform(*space.reach),
        "frames": tune.choice(list(space.frames)),
    }


def settings_from_params(
    params: dict[str, Any], *, base_inversion: InversionConfig, base_traversal: TraversalConfig
) -> tuple[InversionConfig, TraversalConfig]:
    """The inversion and traversal configs a trial's parameters stand for (rate = reach / frames)."""
    inversion = dataclasses.replace(
        base_inversion,
        mse_weight=float(params["mse_weight"]),
        bce_weight=float(params["bce_weight"]),
        lr=float(params["lr"]),
        steps=int(params["steps"]),
        counterfactual_weight=float(params["counterfactual_weight"]),
    )
    frames = int(params["frames"])
    traversal = dataclasses.replace(base_traversal, frames=frames, rate=float(params["reach"]) / frames)
    return inversion, traversal


def params_from_settings(
    inversion: InversionConfig, traversal: TraversalConfig, *, space: SearchSpace, max_steps: int
) -> dict[str, Any]:
    """The nearest point of the space to existing settings (a starting point for the search).

    Continuous values are clipped to their ranges; steps and frames snap to the nearest choice.
    """

    def clip(value: float, bounds: tuple[float, float]) -> float:
        return float(min(max(value, bounds[0]), bounds[1]))

    steps = step_choices(space, max_steps=max_steps)
    return {
        "mse_weight": clip(inversion.mse_weight, space.mse_weight),
        "bce_weight": clip(inversion.bce_weight, space.bce_weight),
        "lr": clip(inversion.lr, space.lr),
        "steps": min(steps, key=lambda s: abs(s - inversion.steps)),
        "counterfactual_weight": clip(inversion.counterfactual_weight, space.counterfactual_weight),
        "reach": clip(traversal.frames * traversal.rate, space.reach),
        "frames": min(space.frames, key=lambda f: abs(f - traversal.frames)),
    }


__all__ = ["SearchSpace", "param_space", "params_from_settings", "settings_from_params", "step_choices"]
