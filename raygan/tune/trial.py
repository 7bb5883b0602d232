"""One Ray Tune trial: invert the sweep's images with a trial's settings and report the objective.

While `invert` runs, its callback fires every `report_every` steps; the trial then scores the
current latents with the full objective and calls `ray.tune.report`, so ASHA compares trials at
equal inversion steps (time attribute `step`) and stops the weak ones early. The last report
(`complete` = 1) carries the finished trial's score.

`invert`'s callback passes only the per-image losses, whose scale depends on the searched
weights a and b, so they cannot rank trials. The current latents are read instead from the
optimiser that `invert` steps, through torch's global optimiser step hook (`LatentProbe`); the
probe only reads them, and is removed when the inversion ends.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch import nn

from raygan import storage
from raygan.config import InversionConfig, TraversalConfig
from raygan.explain.inversion import per_image_loss
from raygan.models.frozen import FrozenClassifier
from raygan.tune.evaluation import evaluate_latents
from raygan.tune.objective import ObjectiveWeights, score
from raygan.tune.space import settings_from_params


class LatentProbe:
    """Reads the latents (z1 [N*R, z1], z2 [N*R, z2]) that `invert`'s optimiser is updating."""

    def __init__(self, *, rows: int, z1_dim: int, z2_dim: int) -> None:
        self.shapes = [(rows, z1_dim), (rows, z2_dim)]  # the parameter list invert optimises
        self.optimiser: torch.optim.Optimizer | None = None  # set on its first step

    def _hook(self, optimiser: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
        params = [p for group in optimiser.param_groups for p in group["params"]]
        if [tuple(p.shape) for p in params] == self.shapes:
            self.optimiser = optimiser

    @contextlib.contextmanager
    def attached(self) -> Iterator[LatentProbe]:
        """Watch every optimiser step in this process while the block runs."""
        handle = register_optimizer_step_post_hook(self._hook)
        try:
            yield self
        finally:
            handle.remove()
            self.optimiser = None

    def latents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Detached copies of the current (z1, z2), all rows (row i * R + r = image i, start r)."""
        if self.optimiser is None:
            raise RuntimeError(
                f"no optimiser over latents of shapes {self.shapes} has stepped; has raygan.explain.inversion.invert "
                "stopped optimising [z1, z2] directly?"
            )
        z1, z2 = [p for group in self.optimiser.param_groups for p in group["params"]]
        return z1.detach().clone(), z2.detach().clone()


def best_restart(
    generator: nn.Module,
    classifier: FrozenClassifier,
    images: torch.Tensor,
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    config: InversionConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the start (of R) with the lowest current loss, as `invert` picks at the end."""
    n, r = images.shape[0], config.restarts
    if r == 1:
        return z1, z2
    x = images.repeat_interleave(r, dim=0)  # [N * R, C, S, S]
    with torch.no_grad():
        p_x = classifier.p_positive(x)
        loss = per_image_loss(generator, classifier, z1, z2, x, p_x, config=config).view(n, r)  # [N, R]
    rows = torch.arange(n, device=z1.device) * r + loss.nan_to_num(float("inf")).argmin(dim=1)
    return z1[rows], z2[rows]


@functools.lru_cache(maxsize=1)
def _bundle(uri: str, settings: storage.StorageSettings | None) -> Any:
    """The bundle, loaded once per process: Tune reuses trial actors, and a paper-size bundle on S3
    takes seconds to fetch. Trials never modify the networks, and a sweep's weights do not change."""
    from raygan.bundle import load_bundle

    return load_bundle(uri, settings=settings)


def tune_trial(
    params: dict[str, Any],
    *,
    images: torch.Tensor,
    image_ids: Sequence[str],
    bundle_uri: str,
    base_inversion: InversionConfig,
    base_traversal: TraversalConfig,
    report_every: int,
    weights: ObjectiveWeights,
    settings: storage.StorageSettings | None = None,
) -> None:
    """Ray Tune function trainable (bind the keyword arguments with `tune.with_parameters`).

    `images` [N, C, S, S] in [-1, 1] are the sweep's search sample; `params` a point of
    `raygan.tune.space.param_space`. Reports every component of `Score` plus `step` (inversion
    steps so far) and `complete` (1 on the final report, 0 on intermediate ones).
    """
    from ray import tune

    from raygan.explain.inversion import invert

    assert images.ndim == 4 and images.shape[0] == len(image_ids), (images.shape, len(image_ids))  # [N, C, S, S]
    inversion, traversal = settings_from_params(params, base_inversion=base_inversion, base_traversal=base_traversal)
    bundle = _bundle(bundle_uri, settings)
    # Ray sets CUDA_VISIBLE_DEVICES to the trial's (fractional) GPU; without one the CPU runs it.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    generator, classifier = bundle.generator.to(device), bundle.classifier.to(device)
    x = images.to(device)
    n = x.shape[0]
    with torch.no_grad():
        p_input = classifier.p_positive(x)  # [N]

    def report(step: int, z1: torch.Tensor, z2: torch.Tensor, steps_used: torch.Tensor, complete: bool) -> None:
        evaluation = evaluate_latents(
            generator, classifier, x, z1, z2, traversal=traversal, steps_used=steps_used, p_input=p_input
        )
        tune.report({**score(evaluation, weights=weights).metrics(), "step": step, "complete": float(complete)})

    probe = LatentProbe(rows=n * inversion.restarts, z1_dim=bundle.gan.z1_dim, z2_dim=bundle.gan.z2_dim)

    def on_progress(step: int, _loss: torch.Tensor) -> None:
        if step >= inversion.steps:
            return  # the final report below covers the last step
        z1, z2 = best_restart(generator, classifier, x, *probe.latents(), config=inversion)
        # Images that stopped early count as having run `step` steps: an upper bound on the cost.
        report(step, z1, z2, torch.full((n,), step, dtype=torch.long), complete=False)

    with probe.attached():
        result = invert(
            generator, classifier, x, config=inversion, keys=list(image_ids),
            callback=on_progress, callback_every=report_every,
        )
    report(inversion.steps, result.z1, result.z2, result.steps_used, complete=True)


__all__ = ["LatentProbe", "best_restart", "tune_trial"]
