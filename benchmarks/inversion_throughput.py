"""Inversion throughput and quality: the authors' recipe against raygan's default, side by side.

Both sides invert the same images with the same generator and classifier, in one run:

- authors' recipe (`raygan.config.AUTHORS_INVERSION`: z1 = 0, z2 ~ N(0, I), Adam 0.01, a = 4,
  b = 1, 5000 steps, fp32, one image at a time). Its speed is measured at batch 1 over a few
  hundred steps and scaled to 5000; its quality is computed batched, which gives the same
  latents because inversion is batch-independent (DESIGN.md, "Benchmark practice").
- raygan's default: the preset's (or the bundle's) InversionConfig, run as shipped: bf16 on
  CUDA, all images in big batches, early stopping, counterfactual term. Timed end to end.

- the encoder (amortised inversion, `raygan train-encoder`): E(x) alone (K = 0) and E(x) refined
  by K steps of raygan's inversion for a few K, at raygan's batch on the same device, timed end
  to end (the encoder's forward pass included). The bundle's encoder when it has one; otherwise
  one trained here, in-process by the pure `encoder_epoch`, on images G draws from other seeds
  than the inverted ones (its training time is printed, not charged to the per-image rate: it is
  paid once per bundle).

Quality, every row: reconstruction MSE and SSIM, |delta p| = |p_C(G(z1, z2)) - p_C(x)|, flip rate
(images with p_input > 0.5 whose counterfactual G(z1, 0) has p < 0.5), monotone share of the
traversals, proximity = mean |G(z1, 0) - G(z1, z2)|.

Models: by default random-weight networks of the chosen preset built in-process (paper: the
authors' 128 px generator and VGG16-bn; G's batch-norm statistics calibrated on random latents
so that it draws varied images),
inverting images the generator itself produced (half with z2 = 0, half with z2 ~ N(0, I)) —
speed is meaningful, quality only as a smoke test. Pass
`--bundle URI` for a trained bundle and `--data URI` for real input shards. `--quick` shrinks
both sides alike (tiny models, 25x fewer steps) to run in about a minute on a laptop CPU.

Runs on a bare GPU machine with only torch (no Ray, captum, pyarrow, boto3): only the torch core
is imported unless --bundle / --data ask for storage. SSIM needs pytorch_msssim; without it the
SSIM fields are null and the output says why. The last line is `RESULT {json}`.

    PYTHONPATH=. python benchmarks/inversion_throughput.py --quick
    PYTHONPATH=. python benchmarks/inversion_throughput.py --images 256 --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source tree without installing

from raygan.config import AUTHORS_INVERSION, InversionConfig, TraversalConfig, preset  # noqa: E402
from raygan.explain.inversion import Inversion, invert  # noqa: E402
from raygan.explain.traversal import traverse  # noqa: E402
from raygan.metrics.flip_rate import flip_rate  # noqa: E402
from raygan.metrics.reconstruction import per_image_mse, per_image_ssim, proximity  # noqa: E402
from raygan.models import ClassifierSpec, FrozenClassifier, build_classifier, build_generator  # noqa: E402
from raygan.models.classifier import factory_path  # noqa: E402
from raygan.models.encoder import build_encoder  # noqa: E402
from raygan.models.generator import sample_latents  # noqa: E402
from raygan.train.encoder_step import EncoderModels, encoder_epoch, make_encoder_optimizer  # noqa: E402

QUICK_FACTOR = 25  # --quick divides every step count by this (5000 -> 200)
ENCODER_KS = (0, 10, 25, 50, 100)  # refinement steps after E(x) benchmarked (quick: divided by QUICK_FACTOR / 5)
RAYGAN_TIMED_STEPS = 20  # steps timed (after a warm-up) for raygan's all-steps cost at its batch size


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def _calibrate(module: Any, inputs: Any, batches: int = 4) -> Any:
    """Set a random-weight network's batch-norm running statistics from its own activations.

    With random weights and the default statistics (mean 0, variance 1) G draws nearly flat gray
    images and C says p ~ 0.5 to everything, which makes inversion trivial; a few train-mode
    passes on `inputs()` set the statistics, so G draws varied images and C varies its calls
    while their weights stay random.
    """
    for m in module.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.momentum = None  # cumulative average over the calibration passes
    module.train()
    for _ in range(batches):
        module(*inputs())
    return module.eval()


def _models(
    args: argparse.Namespace, device: torch.device
) -> tuple[Any, FrozenClassifier, InversionConfig, TraversalConfig, str]:
    """(G, C, raygan's inversion settings, traversal settings, a description of where they came from)."""
    if args.bundle:
        from raygan.bundle import load_bundle

        bundle = load_bundle(args.bundle)
        return bundle.generator.to(device), bundle.classifier.to(device), bundle.inversion, bundle.traversal, \
            f"bundle {args.bundle} (its stored inversion settings)"
    settings = preset(args.preset)
    models = preset("tiny") if args.quick else settings
    torch.manual_seed(args.seed)
    rng = torch.Generator().manual_seed(args.seed + 1234)
    def z() -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randn(32, models.gan.z1_dim, generator=rng).to(device),
                torch.randn(32, models.gan.z2_dim, generator=rng).to(device))

    g = _calibrate(build_generator(models.gan).to(device), z)
    arch = models.classifier.arch
    spec = ClassifierSpec(format="factory", weights="weights.pt", factory=factory_path(arch),
                          factory_kwargs={"image_size": models.gan.image_size}, size=models.gan.image_size,
                          channels=models.gan.channels)
    model = build_classifier(arch, image_size=models.gan.image_size, channels=models.gan.channels).to(device)
    c = FrozenClassifier(_calibrate(model, lambda: (g(*z()),)), spec)
    inversion = settings.inversion
    if args.quick:
        inversion = dataclasses.replace(inversion, steps=max(1, inversion.steps // QUICK_FACTOR),
                                        early_stop_patience=max(1, inversion.early_stop_patience // QUICK_FACTOR))
    what = (f"random-weight (batch norm calibrated) '{models.name}' preset models built in-process "
            f"({models.gan.arch} generator, {arch} classifier, {models.gan.image_size} px); "
            f"raygan settings: preset '{settings.name}'"
            + (f" with steps / {QUICK_FACTOR}" if args.quick else ""))
    return g, c.to(device), inversion, settings.traversal, what


def _images(args: argparse.Namespace, g: Any, device: torch.device) -> tuple[torch.Tensor, list[str], str]:
    """The images to invert [N, C, S, S], their keys, and where they came from."""
    size, channels = g.config.image_size, g.config.channels
    if args.data:
        from raygan.data.shards import decode_rows, read_table

        table = read_table(args.data).slice(0, args.images)
        batch = decode_rows(table, size=size, channels=channels)
        return batch.images.to(device), batch.image_ids, f"{len(batch.image_ids)} rows of {args.data}"
    gen = torch.Generator().manual_seed(args.seed + 1)
    n = args.images
    z1 = torch.randn(n, g.config.z1_dim, generator=gen)
    z2 = torch.randn(n, g.config.z2_dim, generator=gen) * (torch.arange(n) % 2).unsqueeze(1)  # half negative
    with torch.no_grad():
        x = g(z1.to(device), z2.to(device)).float()
    return x, [f"sample-{i}" for i in range(n)], f"{n} images sampled from the generator (half z2 = 0)"


def _encoder(args: argparse.Namespace, g: Any, c: FrozenClassifier, inversion: InversionConfig,
             device: torch.device) -> tuple[Any, str, float]:
    """(E, where it came from, seconds spent training it here): the bundle's, else one trained in-process."""
    if args.bundle:
        from raygan.bundle import load_bundle

        bundle = load_bundle(args.bundle)
        if bundle.encoder is not None:
            return bundle.encoder.to(device), f"the bundle's encoder {bundle.encoder_fingerprint}", 0.0
    name = "tiny" if args.quick else args.preset
    config = preset(name).encoder
    steps = args.encoder_train_steps or (60 if args.quick else 400)
    torch.manual_seed(args.seed + 7)
    encoder = build_encoder(g.config, config).to(device)
    optimizer = make_encoder_optimizer(encoder, config)
    models = EncoderModels(encoder, g, c)
    rng = torch.Generator(device=device).manual_seed(args.seed + 8)
    gen = torch.Generator().manual_seed(args.seed + 9)  # "real" images: G's own, seeds the inverted ones do not use

    def batches(n: int):
        for _ in range(n):
            labels = torch.arange(config.batch_size) % 2
            z1, z2 = sample_latents(labels, z1_dim=g.config.z1_dim, z2_dim=g.config.z2_dim, generator=gen)
            with torch.no_grad():
                images = g(z1.to(device), z2.to(device)).float()
            yield images  # outside no_grad: a suspended generator would keep gradients off for the step

    _sync(device)
    start = time.perf_counter()
    encoder_epoch(models, optimizer, batches(steps), config=config, inversion=inversion, rng=rng)
    _sync(device)
    seconds = time.perf_counter() - start
    return encoder.eval(), (f"trained here: preset '{name}' encoder, {steps} steps of batch {config.batch_size} on "
                            f"images G draws (other seeds), {seconds:.1f} s"), seconds


def _encoder_ks(args: argparse.Namespace) -> list[int]:
    if args.encoder_ks:
        return [int(k) for k in args.encoder_ks.split(",")]
    return sorted({k // 5 if args.quick else k for k in ENCODER_KS})


def _time_encoder(g: Any, c: FrozenClassifier, encoder: Any, x: torch.Tensor, keys: list[str],
                  config: InversionConfig, batch_size: int, device: torch.device) -> tuple[Inversion, dict[str, Any]]:
    """E(x) refined by config.encoder_steps steps, end to end at raygan's batch (after a warm-up)."""
    _invert_batched(g, c, x[:batch_size], keys[:batch_size], dataclasses.replace(config, encoder_steps=min(
        2, config.encoder_steps)), batch_size, encoder=encoder)  # warm-up
    _sync(device)
    start = time.perf_counter()
    inv = _invert_batched(g, c, x, keys, config, batch_size, encoder=encoder)
    _sync(device)
    seconds = time.perf_counter() - start
    return inv, {"batch": min(batch_size, int(x.shape[0])), "encoder_steps": config.encoder_steps,
                 "precision": config.precision if device.type == "cuda" else "fp32", "seconds": seconds,
                 "images": int(x.shape[0]), "images_per_s": x.shape[0] / seconds,
                 "mean_steps_used": float(inv.steps_used.double().mean())}


def _invert_batched(g: Any, c: FrozenClassifier, x: torch.Tensor, keys: list[str], config: InversionConfig,
                    batch_size: int, *, encoder: Any = None) -> Inversion:
    parts = [invert(g, c, x[i:i + batch_size], config=config, keys=keys[i:i + batch_size], encoder=encoder)
             for i in range(0, x.shape[0], batch_size)]
    t = max(p.loss_curve.shape[1] for p in parts)
    pad = [torch.nn.functional.pad(p.loss_curve, (0, t - p.loss_curve.shape[1]), value=math.nan) for p in parts]
    return Inversion(
        z1=torch.cat([p.z1 for p in parts]), z2=torch.cat([p.z2 for p in parts]), loss_curve=torch.cat(pad),
        steps_used=torch.cat([p.steps_used for p in parts]), final_loss=torch.cat([p.final_loss for p in parts]),
    )


@torch.no_grad()
def _quality(
    g: Any, c: FrozenClassifier, x: torch.Tensor, inv: Inversion, traversal: TraversalConfig
) -> dict[str, Any]:
    recon = g(inv.z1, inv.z2).float()
    counterfactual = g(inv.z1, torch.zeros_like(inv.z2)).float()
    p_x, p_recon, p_cf = c.p_positive(x), c.p_positive(recon), c.p_positive(counterfactual)
    walk = traverse(g, c, inv.z1, inv.z2, config=traversal)
    flips = flip_rate(p_x.cpu(), p_cf.cpu())
    try:
        ssim: float | None = float(per_image_ssim(recon, x).mean())
        ssim_note = None
    except ImportError as e:  # the bare GPU machine lacks pytorch_msssim: report that, do not guess
        ssim, ssim_note = None, f"not measured: {e}"
    return {
        "mse": float(per_image_mse(recon, x).mean()),
        "ssim": ssim,
        **({"ssim_note": ssim_note} if ssim_note else {}),
        "delta_p": float((p_recon - p_x).abs().mean()),
        "flip_rate": None if math.isnan(flips.value) else flips.value,
        "flip_eligible": flips.eligible,
        "monotone_share": float(walk.monotone.float().mean()),
        "fallback_traversals": int(walk.used_fallback.sum()),
        "proximity": proximity(recon, counterfactual).value,
        "mean_steps_used": float(inv.steps_used.double().mean()),
        "images": int(x.shape[0]),
    }


def _time_authors(g: Any, c: FrozenClassifier, x: torch.Tensor, keys: list[str], config: InversionConfig,
                  steps: int, device: torch.device) -> dict[str, Any]:
    """The authors' speed: batch 1, fp32, `steps` timed steps (after a warm-up), scaled to config.steps."""
    warm = dataclasses.replace(config, steps=min(10, steps))
    invert(g, c, x[:1], config=warm, keys=keys[:1])
    _sync(device)
    start = time.perf_counter()
    invert(g, c, x[:1], config=dataclasses.replace(config, steps=steps), keys=keys[:1])
    _sync(device)
    per_step = (time.perf_counter() - start) / steps
    per_image = per_step * config.steps
    return {"batch": 1, "precision": config.precision, "steps_timed": steps, "steps_scaled_to": config.steps,
            "s_per_step": per_step, "s_per_image": per_image, "images_per_s": 1.0 / per_image}


def _time_raygan(g: Any, c: FrozenClassifier, x: torch.Tensor, keys: list[str], config: InversionConfig,
                 batch_size: int, device: torch.device) -> tuple[Inversion, dict[str, Any]]:
    """raygan's speed end to end as shipped (early stopping included), and its inversion.

    Early stopping makes the as-run figure depend on the models (random weights converge at
    once), so the cost of all `config.steps` steps is reported too (the worst case), timed over
    a few steps at the same batch with early stopping off.
    """
    batch, batch_keys = x[:batch_size], keys[:batch_size]
    full = dataclasses.replace(config, early_stop_tol=0.0)
    invert(g, c, batch, config=dataclasses.replace(full, steps=2), keys=batch_keys)  # warm-up
    timed = min(RAYGAN_TIMED_STEPS, config.steps)
    _sync(device)
    start = time.perf_counter()
    invert(g, c, batch, config=dataclasses.replace(full, steps=timed), keys=batch_keys)
    _sync(device)
    per_step = (time.perf_counter() - start) / timed
    start = time.perf_counter()
    inv = _invert_batched(g, c, x, keys, config, batch_size)
    _sync(device)
    seconds = time.perf_counter() - start
    return inv, {
        "batch": int(batch.shape[0]), "precision": config.precision if device.type == "cuda" else "fp32",
        "seconds": seconds, "images": int(x.shape[0]), "images_per_s": x.shape[0] / seconds,
        "mean_steps_used": float(inv.steps_used.double().mean()), "steps_timed_all_steps": timed,
        "s_per_step": per_step, "images_per_s_all_steps": batch.shape[0] / (per_step * config.steps),
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models, steps / 25 on both sides: ~1 min on a CPU")
    p.add_argument("--preset", default="paper", help="preset whose models and InversionConfig are raygan's side")
    p.add_argument("--bundle", default=None, help="use a trained bundle's models and inversion settings")
    p.add_argument("--data", default=None, help="input shards to invert (default: images sampled from G)")
    p.add_argument("--images", type=int, default=None, help="images raygan inverts (default 64; quick 8)")
    p.add_argument("--quality-images", type=int, default=None,
                   help="first K images whose quality both sides report (default: all); the authors invert only these")
    p.add_argument("--batch-size", type=int, default=None, help="raygan's batch (default: all images at once)")
    p.add_argument("--speed-steps", type=int, default=None, help="authors' steps timed at batch 1 (200; quick 20)")
    p.add_argument("--authors-steps", type=int, default=None, help="authors' steps for quality (5000; quick 200)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="seeds the random models and sampled images")
    p.add_argument("--encoder-ks", default=None,
                   help="comma-separated refinement steps K after E(x) (default 0,10,25,50,100; quick 0,2,5,10,20)")
    p.add_argument("--encoder-train-steps", type=int, default=None,
                   help="steps of the in-process encoder training when the bundle has no encoder (400; quick 60)")
    p.add_argument("--no-encoder", action="store_true", help="skip the encoder rows")
    return p


def _print_quality(quality: dict[str, dict[str, Any]], n: int) -> None:
    shown = ("mse", "ssim", "delta_p", "flip_rate", "monotone_share", "proximity", "mean_steps_used")
    print(f"quality over {n} images ({quality['raygan']['flip_eligible']} called positive, the flip rate's sample):")
    print("  " + " ".join(f"{k:>15s}" for k in ("side", *shown)))
    for side, q in quality.items():
        print("  " + f"{side:>15s} " + " ".join(f"{_fmt(q[k]):>15s}" for k in shown))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.images = args.images or (8 if args.quick else 64)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    speed_steps = args.speed_steps or (20 if args.quick else 200)
    authors_steps = args.authors_steps or (AUTHORS_INVERSION.steps // (QUICK_FACTOR if args.quick else 1))
    authors = dataclasses.replace(AUTHORS_INVERSION, steps=authors_steps)

    g, c, ours, traversal, models = _models(args, device)
    x, keys, data = _images(args, g, device)
    batch_size = args.batch_size or x.shape[0]
    k = min(args.quality_images or x.shape[0], x.shape[0])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {device} ({name}), torch {torch.__version__}, cudnn TF32 {torch.backends.cudnn.allow_tf32}")
    print(f"models: {models}\nimages: {data}; quality over the first {k}\nauthors: {authors}\nraygan:  {ours}")

    a_speed = _time_authors(g, c, x, keys, authors, min(speed_steps, authors_steps), device)
    print(f"authors speed: {a_speed['s_per_step'] * 1e3:.2f} ms/step at batch 1 over {a_speed['steps_timed']} steps "
          f"-> {a_speed['s_per_image']:.2f} s/image for {authors_steps} steps, {a_speed['images_per_s']:.4f} images/s")
    ours_inv, r_speed = _time_raygan(g, c, x, keys, ours, batch_size, device)
    print(f"raygan speed:  {r_speed['images']} images in {r_speed['seconds']:.2f} s at batch {r_speed['batch']} "
          f"({r_speed['precision']}, mean {r_speed['mean_steps_used']:.0f} of {ours.steps} steps) -> "
          f"{r_speed['images_per_s']:.4f} images/s; with all {ours.steps} steps "
          f"{r_speed['images_per_s_all_steps']:.4f} images/s")
    # Batch-independent inversion: the authors' latents computed batched equal their batch-1 latents.
    authors_inv = _invert_batched(g, c, x[:k], keys[:k], authors, batch_size)
    ours_k = Inversion(ours_inv.z1[:k], ours_inv.z2[:k], ours_inv.loss_curve[:k], ours_inv.steps_used[:k],
                       ours_inv.final_loss[:k])
    quality = {"authors": _quality(g, c, x[:k], authors_inv, traversal),
               "raygan": _quality(g, c, x[:k], ours_k, traversal)}
    encoder_rows: dict[str, Any] = {}
    if not args.no_encoder:
        encoder, source, train_s = _encoder(args, g, c, ours, device)
        print(f"encoder: {source}")
        for steps in _encoder_ks(args):
            inv, speed = _time_encoder(g, c, encoder, x, keys, dataclasses.replace(ours, encoder_steps=steps),
                                       batch_size, device)
            side = f"encoder+{steps}" if steps else "encoder"
            quality[side] = _quality(g, c, x[:k], Inversion(inv.z1[:k], inv.z2[:k], inv.loss_curve[:k],
                                                             inv.steps_used[:k], inv.final_loss[:k]), traversal)
            encoder_rows[side] = {"speed": speed, "quality": quality[side],
                                  "speed_ratio_vs_raygan": speed["images_per_s"] / r_speed["images_per_s"]}
            print(f"{side} speed: {speed['images']} images in {speed['seconds']:.2f} s at batch {speed['batch']} "
                  f"(mean {speed['mean_steps_used']:.1f} of {steps} steps) -> {speed['images_per_s']:.4f} images/s, "
                  f"{encoder_rows[side]['speed_ratio_vs_raygan']:.1f}x raygan's shipped optimisation")
        encoder_rows = {"source": source, "train_seconds": train_s, "rows": encoder_rows}
    ratio = r_speed["images_per_s"] / a_speed["images_per_s"]
    ratio_all = r_speed["images_per_s_all_steps"] / a_speed["images_per_s"]
    _print_quality(quality, k)
    print(f"speed ratio raygan / authors: {ratio:.1f}x as run, {ratio_all:.1f}x with all {ours.steps} steps")
    result = {
        "benchmark": "inversion_throughput", "device": str(device), "device_name": name, "torch": torch.__version__,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32, "quick": args.quick, "models": models, "data": data,
        "images": int(x.shape[0]), "quality_images": k,
        "authors": {"config": dataclasses.asdict(authors), "speed": a_speed, "quality": quality["authors"]},
        "raygan": {"config": dataclasses.asdict(ours), "speed": r_speed, "quality": quality["raygan"]},
        "traversal": dataclasses.asdict(traversal), "speed_ratio": ratio, "speed_ratio_all_steps": ratio_all,
        "encoder": encoder_rows or None,
    }
    print("RESULT " + json.dumps(result))
    return 0


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    sys.exit(main())
