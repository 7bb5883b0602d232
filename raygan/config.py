"""Frozen, typed configuration for every part of raygan, and the named presets.

One dataclass per concern; every run writes `dataclasses.asdict(config)` next to its outputs.
Presets (`paper`, `small`, `tiny`) bundle a model, a training recipe and explanation defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

GeneratorArch = Literal["acgan", "dcgan"]
ClassifierArch = Literal["vgg16_bn", "small_cnn", "max_cnn"]
Precision = Literal["fp32", "bf16"]


@dataclass(frozen=True)
class GanConfig:
    """Shapes and architecture of the generator G(z1, z2) and discriminator D."""

    image_size: int = 128  # output side in pixels (square images)
    channels: int = 1  # image channels produced by G and read by D
    z1_dim: int = 100  # structure latent, z1 ~ N(0, I)
    z2_dim: int = 10  # class latent: 0 for negative, N(0, I) for positive (the paper's rule)
    arch: GeneratorArch = "acgan"  # "acgan": the authors' transposed-conv nets (128 px only); "dcgan": 4x4 maps doubled up to any power of two (see `upsample`)
    width: int = 64  # base channel width of the "dcgan" nets (ignored by "acgan")
    upsample: Literal["transposed", "resize"] = "transposed"  # how the "dcgan" G doubles its maps: k4 s2 transposed convs, or nearest-neighbour resize + k3 conv (no checkerboard artifacts, Odena et al. 2016)
    d_dropout: float = 0.5  # dropout after each discriminator block (authors: 0.5)
    d_condition: Literal["none", "classifier"] = "none"  # "classifier": D also sees the class, a real image's as C calls it (authors: none)


@dataclass(frozen=True)
class TrainConfig:
    """Recipe for training the GAN against the frozen classifier (Eq. 1)."""

    epochs: int = 200  # passes over the training split
    batch_size: int = 32  # images per optimiser step, per worker
    lr_g: float = 2e-4  # Adam learning rate of G (authors: 2e-4)
    lr_d: float = 2e-4  # Adam learning rate of D (authors: 2e-4)
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas (authors: 0.5, 0.999)
    class_weight: float = 1.0  # weight of the -log p_C(y | G(z1, y)) term of Eq. 1
    change_weight: float = 0.0  # weight of mean |G(z1, z2) - G(z1, 0)| on positive samples: z2 changes only what it must (authors: 0)
    ema_decay: float = 0.0  # exponential moving average of G's weights and buffers, the G a bundle keeps (0: off; authors: off)
    positive_fraction: float = 0.5  # share of generated samples fed the positive class
    precision: Precision = "fp32"  # "bf16" autocast on CUDA; CPU always runs fp32
    channels_last: bool = False  # NHWC memory format on CUDA
    compile: bool = False  # torch.compile the step's networks on CUDA
    checkpoint_every: int = 5  # epochs between checkpoints (the last epoch always checkpoints)
    consistency_samples: int = 64  # fixed z1 set for the per-epoch class-consistency metric (and the bundle's quality gate)
    quality_samples: int = 256  # real training images for the bundle's Frechet distance (quality gate); 0 skips it
    seed: int = 0  # seeds weights, latents and data order
    workers: int = 1  # Ray Train workers (data-parallel replicas)
    use_gpu: bool = False  # one GPU per worker
    max_failures: int = 2  # worker failures Ray Train survives by restarting from the last checkpoint


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Recipe for training the classifier being explained."""

    arch: ClassifierArch = "small_cnn"  # network family
    image_size: int = 64  # input side in pixels
    epochs: int = 10  # passes over the training split
    batch_size: int = 64  # images per step, per worker
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    seed: int = 0  # seeds weights and data order
    workers: int = 1  # Ray Train workers
    use_gpu: bool = False  # one GPU per worker


@dataclass(frozen=True)
class InversionConfig:
    """Eq. 2: find z1, z2 minimising a * MSE(G(z), x) + b * BCE(p_C(G(z)), p_C(x))."""

    mse_weight: float = 4.0  # a (authors: 4)
    bce_weight: float = 1.0  # b (authors: 1)
    lr: float = 0.01  # Adam learning rate on the latents (authors: 0.01)
    steps: int = 5000  # maximum optimisation steps per image (authors: 5000)
    z1_init: Literal["zeros", "normal"] = "zeros"  # authors: z1 = 0
    z2_init: Literal["normal", "zeros"] = "normal"  # authors: z2 ~ N(0, I)
    restarts: int = 1  # independent starts per image; the lowest final loss wins
    schedule: Literal["constant", "cosine"] = "constant"  # learning-rate schedule (authors: constant)
    counterfactual_weight: float = 0.0  # weight of -log(1 - p_C(G(z1, 0))): keeps the counterfactual negative
    z1_prior_weight: float = 0.0  # weight of ||z1||^2 / dim: keeps z1 where G was trained
    feature_weight: float = 0.0  # weight of the classifier-view term: G(z) must look like x to C's last conv and penultimate layers
    early_stop_tol: float = 0.0  # relative loss change below which an image counts as converged (0: never stop early)
    early_stop_patience: int = 100  # steps an image must stay converged before it stops
    seed: int = 0  # seeds the random initialisation (per image, so results do not depend on the batch)
    precision: Precision = "fp32"  # "bf16" autocast of G and C on CUDA (loss stays fp32); CPU always runs fp32 (authors: fp32)
    encoder_steps: int = 50  # K: refinement steps from the encoder's E(x) when the bundle has an encoder (0: encoder only); `steps` is the budget without one


@dataclass(frozen=True)
class EncoderConfig:
    """The encoder E(x) -> (z1, z2) for amortised inversion, and its training against the frozen G and C."""

    width: int = 16  # channels of the first convolution, doubled per halving of the side
    max_width: int = 256  # cap on the channel width of the deeper convolutions
    epochs: int = 10  # passes over the training split
    batch_size: int = 32  # real images per step, per worker (and as many generated ones)
    lr: float = 1e-3  # Adam learning rate
    latent_weight: float = 1.0  # weight of MSE(E(G(z)), z) on generated images with known latents
    image_weight: float = 1.0  # weight of MSE(G(E(G(z))), G(z)) on the same generated images
    real_weight: float = 1.0  # weight of the inversion's own per-image loss (Eq. 2 + raygan's terms) at E(x) on real images
    checkpoint_every: int = 5  # epochs between checkpoints (the last epoch always checkpoints)
    seed: int = 0  # seeds weights, latents and data order
    workers: int = 1  # Ray Train workers (data-parallel replicas)
    use_gpu: bool = False  # one GPU per worker
    max_failures: int = 2  # worker failures Ray Train survives by restarting from the last checkpoint


@dataclass(frozen=True)
class TraversalConfig:
    """Frames G(z1, alpha * z2), alpha = n * rate for n = 0..frames."""

    frames: int = 10  # N: number of steps after alpha = 0
    rate: float = 0.1  # lambda: alpha step; frames * rate = 1 ends at the reconstruction
    negative_direction: Literal["mean_positive"] = "mean_positive"  # walked when the inverted z2 is ~0 or G(z1, z2) is not positive
    min_z2_norm: float = 0.5  # below this ||z2|| (relative to sqrt(dim)) the image counts as negative-looking


@dataclass(frozen=True)
class Preset:
    """A named, complete starting point: model, training recipe, classifier, explanation defaults."""

    name: str  # preset name
    gan: GanConfig  # generator / discriminator shapes
    train: TrainConfig  # GAN training recipe
    classifier: ClassifierTrainConfig  # classifier recipe (when raygan trains one)
    inversion: InversionConfig  # default inversion settings stored in the bundle
    traversal: TraversalConfig  # default traversal settings stored in the bundle
    encoder: EncoderConfig = EncoderConfig()  # the amortised-inversion encoder (`raygan train-encoder`)


AUTHORS_INVERSION = InversionConfig()  # the authors' recipe, exactly: z1 = 0, z2 random, Adam 0.01, 5000 steps, a = 4, b = 1

# Inversion defaults of the paper and small presets, from the `raygan tune` sweeps on cxr128
# (docs/tune.md, "Results"): lr 0.03-0.08 with a cosine decay is what matters (lr <= 0.003 never
# converges in 600 steps); a = 8 with b = 1 reconstructs closer than a = 4 at the same flip rate
# and monotone share; a 1000-step budget with early stopping (about 570 steps used on average)
# beats 300 steps; the counterfactual term (0.5) is what lifts the flip rate over the authors'.
PRESETS: dict[str, Preset] = {
    # The paper's networks (authors' notebook facts, DESIGN.md). Training recipe: raygan's fast
    # step (bf16, channels_last, larger batch) rather than the authors' fp32 batch 32.
    # The fidelity options (conditional D, minimal-change term, class weight 3, view term) follow the
    # small preset's development choice; at this scale they are not measured yet (docs/fidelity.md).
    "paper": Preset(
        name="paper",
        gan=GanConfig(image_size=128, arch="acgan", d_condition="classifier"),
        train=TrainConfig(
            epochs=200, batch_size=256, lr_g=4e-4, lr_d=4e-4, precision="bf16",
            channels_last=True, compile=True, checkpoint_every=10, use_gpu=True, class_weight=3.0, change_weight=10.0,
        ),
        classifier=ClassifierTrainConfig(
            arch="vgg16_bn", image_size=128, epochs=25, batch_size=64, lr=3e-4, use_gpu=True
        ),
        inversion=InversionConfig(mse_weight=8.0, steps=1000, lr=0.05, z1_init="zeros", schedule="cosine",
                                  counterfactual_weight=0.5, early_stop_tol=1e-4, precision="bf16", feature_weight=1.0),
        traversal=TraversalConfig(frames=10, rate=0.1),
        encoder=EncoderConfig(width=32, max_width=512, epochs=30, batch_size=128, use_gpu=True, checkpoint_every=5),
    ),
    # 64x64 CPU demo. The GAN recipe is the fidelity benchmark's development choice (docs/fidelity.md):
    # a narrower net trained for more, smaller steps (width 32 reached class consistency 0.76 in 250
    # steps, width 16 0.96 in 800 at the same cost), a classifier-conditional D, the minimal-change
    # term and class weight 3; the inversion adds the classifier-view term. G doubles its maps by resize +
    # conv (2026-12-07, development seeds 0 and 10: the transposed convs' checkerboard left one seed's
    # reconstructions at MSE 0.096 and its lesion AUPRC at 5.0x chance; resize + conv 0.030 and 11.1x).
    "small": Preset(
        name="small",
        gan=GanConfig(image_size=64, arch="dcgan", width=16, z1_dim=64, z2_dim=8, d_condition="classifier",
                      upsample="resize"),
        train=TrainConfig(epochs=16, batch_size=32, checkpoint_every=4, class_weight=3.0, change_weight=10.0),
        classifier=ClassifierTrainConfig(arch="small_cnn", image_size=64, epochs=4),
        inversion=InversionConfig(mse_weight=8.0, steps=1000, lr=0.05, schedule="cosine",
                                  counterfactual_weight=0.5, early_stop_tol=1e-4, precision="bf16",
                                  feature_weight=1.0),
        traversal=TraversalConfig(frames=10, rate=0.1),
        encoder=EncoderConfig(width=16, max_width=256, epochs=20, batch_size=32, checkpoint_every=5),
    ),
    # 32x32, for tests: seconds on a CPU.
    "tiny": Preset(
        name="tiny",
        gan=GanConfig(image_size=32, arch="dcgan", width=8, z1_dim=16, z2_dim=4, d_dropout=0.0),
        train=TrainConfig(epochs=2, batch_size=16, checkpoint_every=1, consistency_samples=8),
        classifier=ClassifierTrainConfig(arch="small_cnn", image_size=32, epochs=1, batch_size=16),
        inversion=InversionConfig(steps=20, lr=0.05, encoder_steps=5),
        traversal=TraversalConfig(frames=4, rate=0.25),
        encoder=EncoderConfig(width=8, max_width=64, epochs=2, batch_size=16, checkpoint_every=1),
    ),
}


def preset(name: str) -> Preset:
    """The preset called `name`, with a clear error listing the valid names."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


C = TypeVar("C")


def from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Rebuild a (possibly nested) config dataclass from `dataclasses.asdict` output."""
    kwargs: dict[str, Any] = {}
    hints = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name, value in data.items():
        if name not in hints:
            raise ValueError(f"{cls.__name__} has no field {name!r}")
        sub = _dataclass_type(cls, name)
        if sub is not None and isinstance(value, dict):
            value = from_dict(sub, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _dataclass_type(cls: type, name: str) -> type | None:
    """The dataclass type of field `name` of `cls`, if it is one of ours."""
    nested = {
        "gan": GanConfig, "train": TrainConfig, "classifier": ClassifierTrainConfig,
        "inversion": InversionConfig, "traversal": TraversalConfig, "encoder": EncoderConfig,
    }
    return nested.get(name) if cls is Preset else None


def replace(config: C, **changes: Any) -> C:
    """`dataclasses.replace` that ignores None values (unset command-line flags)."""
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[type-var]


__all__ = [
    "AUTHORS_INVERSION", "ClassifierTrainConfig", "EncoderConfig", "GanConfig", "InversionConfig", "PRESETS",
    "Preset", "TrainConfig", "TraversalConfig", "from_dict", "preset", "replace", "field",
]
