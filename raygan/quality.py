"""The quality gate: how far a bundle's generator can be trusted, said beside every explanation.

An explanation is only as good as the GAN behind it: if the generator does not make images the
classifier calls the class it was asked for, the counterfactual G(z1, 0) and the traversal say
little about the classifier. Two numbers, measured on the final generator when `raygan train`
writes the bundle, are recorded in `bundle.json` ("quality") and shown in `/v1/model`, the CLI
summaries and every report:

- class consistency, the paper's protocol (91.15% in the paper; `raygan.metrics.class_consistency`);
- the Frechet distance of generated to real training images in the classifier's penultimate
  features (`raygan.metrics.frechet`), where the classifier exposes features (not TorchScript).

Below `CONSISTENCY_THRESHOLD` (or where it was never measured) every explanation carries a
warning. Pure: modules and tensors in, a dataclass out; no Ray.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from raygan.models.frozen import FrozenClassifier

CONSISTENCY_THRESHOLD = 0.9  # the paper's generator reaches 0.9115; below 0.9 explanations are flagged


@dataclass(frozen=True)
class Quality:
    """The bundle's generator quality and what it means for its explanations."""

    class_consistency: float | None  # share of generated images C labels as the class fed to G; None = not measured
    consistency_samples: int  # generated images behind it (4 per z1, the paper's protocol)
    frechet: float | None  # squared Frechet distance, real vs generated, in C's penultimate features; None = not measured
    frechet_samples: int  # real images (and as many generated ones) behind it
    frechet_note: str | None = None  # why the Frechet distance is missing, when it is
    threshold: float = CONSISTENCY_THRESHOLD  # consistency below this makes every explanation carry a warning

    @property
    def passed(self) -> bool:
        """Class consistency was measured and reaches the threshold."""
        return self.class_consistency is not None and self.class_consistency >= self.threshold

    @property
    def warning(self) -> str | None:
        """The sentence every explanation of this bundle carries, or None when the gate passes."""
        if self.class_consistency is None:
            return ("this bundle records no generator class consistency, so nobody checked that its GAN makes images "
                    "the classifier calls the class asked for; treat its explanations as unverified")
        if self.class_consistency < self.threshold:
            return (f"generator class consistency {self.class_consistency:.3f} is below {self.threshold:g}: the GAN "
                    "often makes images the classifier does not call the class it was asked for, so counterfactuals "
                    "and traversals may not reflect the classifier (train longer or check the data)")
        return None

    def describe(self) -> str:
        """One line for people: both numbers, their sample sizes, and the verdict."""
        consistency = ("not measured" if self.class_consistency is None
                       else f"{self.class_consistency:.3f} ({self.consistency_samples} images)")
        frechet = (f"{self.frechet:.4g} ({self.frechet_samples} real vs {self.frechet_samples} generated)"
                   if self.frechet is not None else f"not measured ({self.frechet_note or 'no data'})")
        verdict = "passes" if self.passed else f"WARNING: below {self.threshold:g}, every explanation says so"
        return f"generator class consistency {consistency}, {verdict}; Frechet distance {frechet}"

    def to_json(self) -> dict[str, Any]:
        """The `quality` block of bundle.json (and of /v1/model), with the warning spelled out."""
        return {**asdict(self), "passed": self.passed, "warning": self.warning}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Quality:
        """Parse a `quality` block; None (bundles written before the gate existed) is "not measured"."""
        if not data:
            return cls.unmeasured()
        return cls(
            class_consistency=_opt_float(data.get("class_consistency")),
            consistency_samples=int(data.get("consistency_samples", 0)),
            frechet=_opt_float(data.get("frechet")), frechet_samples=int(data.get("frechet_samples", 0)),
            frechet_note=data.get("frechet_note"), threshold=float(data.get("threshold", CONSISTENCY_THRESHOLD)),
        )

    @classmethod
    def unmeasured(cls) -> Quality:
        """Nothing measured (a bundle assembled by hand, or from before the gate)."""
        return cls(class_consistency=None, consistency_samples=0, frechet=None, frechet_samples=0,
                   frechet_note="not measured")


def _opt_float(value: Any) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


@torch.no_grad()
def measure_quality(
    generator: nn.Module,
    classifier: FrozenClassifier,
    real_images: torch.Tensor,
    *,
    n_z1: int,
    seed: int = 0,
    batch_size: int = 64,
) -> Quality:
    """Class consistency over `n_z1` structure latents (4 images each) and the Frechet distance of
    `real_images` ([N, C, S, S] in [-1, 1]) to as many generated ones (half per class), on the
    generator's device."""
    from raygan.metrics.class_consistency import class_consistency
    from raygan.metrics.frechet import classifier_frechet
    from raygan.models.generator import sample_latents

    assert real_images.ndim == 4, real_images.shape  # [N, C, S, S]
    consistency = class_consistency(generator, classifier, n_z1=n_z1, repeats=1, batch_size=batch_size, seed=seed)
    n = real_images.shape[0]
    reason = classifier.unsupported().get("features")
    if reason is not None or n < 2:
        note = f"features() unavailable: {reason}" if reason is not None else f"{n} real image(s); needs at least 2"
        return Quality(class_consistency=consistency.accuracy, consistency_samples=consistency.samples,
                       frechet=None, frechet_samples=0, frechet_note=note)
    device = next(generator.parameters()).device
    labels = torch.arange(n) % 2  # [N] half negative (z2 = 0), half positive
    z1, z2 = sample_latents(labels, z1_dim=generator.config.z1_dim, z2_dim=generator.config.z2_dim,
                            generator=torch.Generator().manual_seed(seed + 1))
    was_training = generator.training
    generator.eval()
    try:
        generated = torch.cat([generator(z1[i:i + batch_size].to(device), z2[i:i + batch_size].to(device)).cpu()
                               for i in range(0, n, batch_size)])  # [N, C, S, S]
    finally:
        generator.train(was_training)
    frechet = classifier_frechet(lambda x: classifier.features(x.to(device)), real_images, generated,
                                 batch_size=batch_size)
    return Quality(class_consistency=consistency.accuracy, consistency_samples=consistency.samples,
                   frechet=_opt_float(frechet.value), frechet_samples=n)


__all__ = ["CONSISTENCY_THRESHOLD", "Quality", "measure_quality"]
