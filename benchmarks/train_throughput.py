"""GAN training throughput: the authors' recipe against raygan's step, one change per row, same device.

Every row runs `raygan.train.step.gan_step` (Eq. 1: one D step, one G step with the classifier
term) on the same networks, with random weights and random "real" images already on the device.
Each row changes one thing from the row above, so each factor's gain is visible:

1. authors' recipe: the paper's networks (generator "acgan", 128 px; VGG16-bn classifier), fp32,
   batch 32, eager, contiguous (NCHW) tensors, lr 2e-4;
2. + the `paper` preset's batch size;
3. + bf16 autocast (CUDA only);
4. + channels_last (CUDA only);
5. + torch.compile (CUDA only);
6. = raygan's recipe: the preset's other settings too (learning rates, class weight, the
   minimal-change term), which change the loss, not the kernels.

Rows whose change applies only on CUDA are left out of a CPU run (they would time the row above).

Reported per side: images/s, step time, FLOPs per image of one training step (counted with
torch.utils.flop_counter.FlopCounterMode on an eager step: forward and backward of G, D and C),
and model FLOP utilisation = achieved FLOP/s over the GPU's dense bf16 peak (spec sheet, and the
798 TFLOP/s that an 8192^3 bf16 matmul reached on this project's H100; n/a on a CPU). The fp32
side is held to the same bf16 peak, so its MFU reads as "share of what the GPU could do".

`--quick` uses the tiny preset's networks on both sides (32 px DCGAN, small CNN classifier) and a
few steps: about a minute on a laptop CPU. Runs on a bare GPU machine with only torch (no Ray,
pyarrow or boto3): only raygan.config, raygan.models and raygan.train.step are imported. The last
line printed is `RESULT {json}`.

    PYTHONPATH=. python benchmarks/train_throughput.py --quick
    PYTHONPATH=. python benchmarks/train_throughput.py --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source tree without installing

from raygan.config import GanConfig, TrainConfig, preset  # noqa: E402
from raygan.models import (  # noqa: E402
    ClassifierSpec, FrozenClassifier, build_classifier, build_discriminator, build_generator,
)
from raygan.models.classifier import factory_path  # noqa: E402
from raygan.train.step import GanModels, compile_models, configure_models, gan_step, make_optimizers  # noqa: E402

# Dense bf16 tensor-core peaks from the spec sheets (TFLOP/s, without sparsity).
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}
MEASURED_MATMUL_TFLOPS = 798.0  # 8192^3 bf16 matmul on this project's H100 (DESIGN.md anchors)
AUTHORS_BATCH = 32  # the authors' notebook


@dataclass(frozen=True)
class Side:
    """One column of the comparison."""

    name: str  # "authors" or "raygan"
    gan: GanConfig  # networks
    train: TrainConfig  # recipe (batch size, precision, channels_last, compile)
    classifier_arch: str  # the frozen classifier's family


@dataclass(frozen=True)
class SideResult:
    """Measured throughput of one side."""

    name: str  # "authors" or "raygan"
    batch_size: int  # images per step
    precision: str  # what ran: "bf16" or "fp32"
    channels_last: bool  # NHWC memory format actually used
    compiled: bool  # torch.compile actually used
    steps: int  # timed steps in all rounds
    step_ms: float  # mean wall time per step
    images_per_s: float  # batch_size / step time
    gflop_per_image: float  # FLOPs of one training step per image (G, D and C, forward and backward)
    tflops: float  # achieved FLOP/s
    mfu: float | None  # tflops / spec bf16 peak; None on a CPU or an unknown GPU
    mfu_vs_measured_matmul: float | None  # tflops / 798 (the measured bf16 matmul rate); None off CUDA


def _sides(quick: bool, device: torch.device) -> list[Side]:
    """The authors' recipe, then one change per row up to raygan's: paper networks (tiny with --quick)."""
    paper, tiny = preset("paper"), preset("tiny")
    nets = tiny if quick else paper
    authors = dataclasses.replace(paper.train, batch_size=AUTHORS_BATCH, lr_g=2e-4, lr_d=2e-4, precision="fp32",
                                  channels_last=False, compile=False, class_weight=1.0, change_weight=0.0)
    ours = dataclasses.replace(paper.train, batch_size=nets.train.batch_size if quick else paper.train.batch_size)
    arch = nets.classifier.arch
    cuda = device.type == "cuda"
    rows = [Side("authors", nets.gan, authors, arch)]
    steps = [("+batch", {"batch_size": ours.batch_size}, True), ("+bf16", {"precision": ours.precision}, cuda),
             ("+channels_last", {"channels_last": ours.channels_last}, cuda),
             ("+compile", {"compile": ours.compile}, cuda)]
    current = authors
    for name, change, applies in steps:
        current = dataclasses.replace(current, **change)
        if applies:
            rows.append(Side(name, nets.gan, current, arch))
    rows.append(Side("raygan", nets.gan, dataclasses.replace(ours, compile=ours.compile and cuda), arch))
    return rows


def _build(side: Side, device: torch.device, *, seed: int) -> tuple[GanModels, Any, Any]:
    torch.manual_seed(seed)
    size = side.gan.image_size
    spec = ClassifierSpec(format="factory", weights="weights.pt", factory=factory_path(side.classifier_arch),
                          factory_kwargs={"image_size": size}, size=size, channels=side.gan.channels)
    network = build_classifier(side.classifier_arch, image_size=size, channels=side.gan.channels)
    classifier = FrozenClassifier(network, spec)
    models = GanModels(build_generator(side.gan), build_discriminator(side.gan), classifier)
    models = configure_models(models, train=side.train, device=device)
    opt_g, opt_d = make_optimizers(models, side.train)  # before compiling: same parameters either way
    return models, opt_g, opt_d


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _flops_per_step(side: Side, device: torch.device, real: torch.Tensor, *, seed: int) -> int:
    """FLOPs of one eager training step (fresh models, so the timed ones are untouched)."""
    from torch.utils.flop_counter import FlopCounterMode

    models, opt_g, opt_d = _build(side, device, seed=seed)
    counter = FlopCounterMode(display=False)
    with counter:
        gan_step(models, opt_g, opt_d, real, train=side.train, rng=torch.Generator(device=device).manual_seed(seed))
    return counter.get_total_flops()


def _peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


@dataclass
class _Prepared:
    """A side ready to time: models built (and compiled), warmed up, FLOPs counted."""

    side: Side
    models: GanModels
    opt_g: Any
    opt_d: Any
    real: torch.Tensor  # [N, C, S, S] on the device
    rng: torch.Generator
    flops: int  # FLOPs of one step
    compiled: bool


def prepare_side(side: Side, device: torch.device, *, warmup: int, seed: int) -> _Prepared:
    """Build `side`, count one step's FLOPs, and run `warmup` untimed steps (compilation happens there)."""
    n, c, s = side.train.batch_size, side.gan.channels, side.gan.image_size
    real = (torch.rand(n, c, s, s, generator=torch.Generator().manual_seed(seed)) * 2 - 1).to(device)  # [N, C, S, S]
    flops = _flops_per_step(side, device, real, seed=seed)
    models, opt_g, opt_d = _build(side, device, seed=seed)
    compiled = side.train.compile and device.type == "cuda"
    if compiled:
        models = compile_models(models)
    rng = torch.Generator(device=device).manual_seed(seed)
    prepared = _Prepared(side, models, opt_g, opt_d, real, rng, flops, compiled)
    time_steps(prepared, device, steps=warmup)
    return prepared


def time_steps(p: _Prepared, device: torch.device, *, steps: int) -> float:
    """Mean seconds per step over `steps` steps (synchronised at both ends, not in between)."""
    _sync(device)
    started = time.perf_counter()
    metrics = None
    for _ in range(steps):
        metrics = gan_step(p.models, p.opt_g, p.opt_d, p.real, train=p.side.train, rng=p.rng)
    _sync(device)
    seconds = (time.perf_counter() - started) / max(steps, 1)
    if metrics is not None:
        metrics.as_floats()  # the losses are numbers, not just scheduled work
    return seconds


def summarise(p: _Prepared, device: torch.device, *, seconds: float, steps: int) -> SideResult:
    """SideResult of a side that took `seconds` per step."""
    n = p.side.train.batch_size
    tflops = p.flops / seconds / 1e12
    peak = _peak_tflops(device)
    return SideResult(
        name=p.side.name, batch_size=n,
        precision="bf16" if p.side.train.precision == "bf16" and device.type == "cuda" else "fp32",
        channels_last=p.side.train.channels_last and device.type == "cuda", compiled=p.compiled, steps=steps,
        step_ms=seconds * 1e3, images_per_s=n / seconds, gflop_per_image=p.flops / n / 1e9, tflops=tflops,
        mfu=tflops / peak if peak else None,
        mfu_vs_measured_matmul=tflops / MEASURED_MATMUL_TFLOPS if device.type == "cuda" else None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny networks on both sides, a few steps (CPU smoke run)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per side and round (default 20; --quick 2)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating timed rounds per side; the median round counts (fair on a busy machine)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10; --quick 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    steps = args.steps or (2 if args.quick else 20)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 10)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # both sides: fixed shapes, pick the fastest kernels

    prepared = [prepare_side(side, device, warmup=warmup, seed=args.seed) for side in _sides(args.quick, device)]
    rounds: list[list[float]] = [[] for _ in prepared]
    for _ in range(args.rounds):  # A, B, A, B, ...: drifts in machine load hit both sides alike
        for times, p in zip(rounds, prepared):
            times.append(time_steps(p, device, steps=steps))
    results = [summarise(p, device, seconds=sorted(t)[len(t) // 2], steps=steps * args.rounds)
               for p, t in zip(prepared, rounds)]
    authors, ours = results[0], results[-1]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    networks = "tiny" if args.quick else "paper"
    print(f"GAN training step on {device_name} (torch {torch.__version__}); {networks} networks; {warmup} warm-up "
          f"steps, then {args.rounds} alternating rounds of {steps} timed steps per side (median round)")
    print(f"{'row':15s} {'batch':>5s} {'prec':>5s} {'NHWC':>5s} {'compile':>7s} {'ms/step':>9s} {'img/s':>9s} "
          f"{'vs above':>8s} {'GFLOP/img':>9s} {'TFLOP/s':>8s} {'MFU':>6s}")
    steps_up = []
    for i, r in enumerate(results):
        mfu = f"{r.mfu:.1%}" if r.mfu is not None else "n/a"
        up = r.images_per_s / results[i - 1].images_per_s if i else 1.0
        steps_up.append(up)
        print(f"{r.name:15s} {r.batch_size:5d} {r.precision:>5s} {str(r.channels_last):>5s} {str(r.compiled):>7s} "
              f"{r.step_ms:9.2f} {r.images_per_s:9.1f} {up:7.2f}x {r.gflop_per_image:9.2f} {r.tflops:8.3f} {mfu:>6s}")
    if device.type != "cuda":
        print("(bf16, channels_last and torch.compile apply on CUDA only: their rows are left out on this device)")
    ratio = ours.images_per_s / authors.images_per_s
    print(f"raygan / authors: {ratio:.2f}x images/s")
    result = {
        "benchmark": "train_throughput", "device": device_name, "torch": torch.__version__, "quick": args.quick,
        "networks": networks, "warmup": warmup, "steps_per_round": steps, "rounds": args.rounds,
        "authors": dataclasses.asdict(authors), "raygan": dataclasses.asdict(ours), "speedup": ratio,
        "rows": [{**dataclasses.asdict(r), "vs_row_above": up} for r, up in zip(results, steps_up)],
        "peak_bf16_tflops": _peak_tflops(device),
        "measured_matmul_tflops": MEASURED_MATMUL_TFLOPS if device.type == "cuda" else None,
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
