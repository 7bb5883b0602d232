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
from raygan.metrics.bootstrap import Interval, bootstrap  # noqa: E402
from raygan.models import ClassifierSpec, FrozenClassifier, build_classifier, build_generator  # noqa: E402
from raygan.models.classifier import factory_path  # noqa: E402
from raygan.models.encoder import build_encoder  # noqa: E402
from raygan.models.generator import sample_latents  # noqa: E402
from raygan.scoring import ExplanationArrays, PerImage, per_image, probabilities, score  # noqa: E402
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


def _images(args: argparse.Namespace, g: Any, device: torch.device, *, split: str | None, n: int,
            offset: int = 0) -> tuple[torch.Tensor, list[str], str]:
    """The images to invert [N, C, S, S], their keys, and where they came from.

    With --data: the first `n` rows of `split` (None: every row). Otherwise images G draws from
    seeds offset by `offset` (so a choice set and a report set never share an image).
    """
    size, channels = g.config.image_size, g.config.channels
    if args.data:
        from raygan.data.shards import decode_rows, read_table
        from raygan.data.splits import filter_split

        table = read_table(args.data)
        table = (filter_split(table, split) if split else table).slice(0, n)
        batch = decode_rows(table, size=size, channels=channels)
        where = f"{len(batch.image_ids)} rows of {args.data}" + (f", split {split}" if split else "")
        return batch.images.to(device), batch.image_ids, where
    gen = torch.Generator().manual_seed(args.seed + 1 + offset)
    z1 = torch.randn(n, g.config.z1_dim, generator=gen)
    z2 = torch.randn(n, g.config.z2_dim, generator=gen) * (torch.arange(n) % 2).unsqueeze(1)  # half negative
    with torch.no_grad():
        x = g(z1.to(device), z2.to(device)).float()
    return x, [f"sample-{offset}-{i}" for i in range(n)], f"{n} images sampled from the generator (half z2 = 0)"


def _encoders(args: argparse.Namespace, g: Any, c: FrozenClassifier, inversion: InversionConfig,
              device: torch.device) -> list[tuple[Any, str, float]]:
    """[(E, where it came from, seconds spent training it here)]: one per --encoders bundle (each an encoder
    seed on the same generator), else the --bundle's own encoder, else one trained in-process."""
    if args.encoders:
        from raygan.bundle import load_bundle

        out = []
        for uri in args.encoders.split(","):
            other = load_bundle(uri)
            if other.encoder is None:
                raise SystemExit(f"--encoders: the bundle at {uri} has no encoder (raygan train-encoder)")
            same = all(torch.equal(a, b) for a, b in zip(other.generator.state_dict().values(),
                                                          g.state_dict().values()))
            if not same:
                raise SystemExit(f"--encoders: the bundle at {uri} has another generator than the one benchmarked")
            out.append((other.encoder.to(device), f"{uri} (encoder {other.encoder_fingerprint})", 0.0))
        return out
    return [_encoder(args, g, c, inversion, device)]


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
def _arrays(g: Any, c: FrozenClassifier, x: torch.Tensor, inv: Inversion, traversal: TraversalConfig,
            batch: int = 64) -> ExplanationArrays:
    """What the one scoring path (`raygan.scoring`) needs from an inversion of x: G(z1, z2), G(z1, 0), the
    traversal's probabilities (in chunks of `batch`, the frames are large)."""
    parts = []
    for i in range(0, x.shape[0], batch):
        z1, z2 = inv.z1[i:i + batch], inv.z2[i:i + batch]
        recon, cf = g(z1, z2).float(), g(z1, torch.zeros_like(z2)).float()
        walk = traverse(g, c, z1, z2, config=traversal)
        parts.append((recon.cpu(), cf.cpu(), walk.alphas.cpu(), walk.probs.cpu(), walk.used_fallback.cpu()))
    recon, cf = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return ExplanationArrays(
        images=x.float().cpu(), reconstructions=recon, counterfactuals=cf, p_input=probabilities(c, x),
        p_reconstruction=probabilities(c, recon), p_counterfactual=probabilities(c, cf),
        alphas=parts[0][2].double(), probs=torch.cat([p[3] for p in parts]).double(),
        used_fallback=torch.cat([p[4] for p in parts]).bool(), steps_used=inv.steps_used.double().cpu(),
        final_loss=inv.final_loss.double().cpu(),
    )


def _has_ssim() -> bool:
    import importlib.util

    return importlib.util.find_spec("pytorch_msssim") is not None  # absent on the bare GPU machine


def _quality(g: Any, c: FrozenClassifier, x: torch.Tensor, inv: Inversion, traversal: TraversalConfig,
             judge: FrozenClassifier | None) -> tuple[dict[str, Any], PerImage]:
    """The row's quality columns (`raygan.scoring.score`) and the per-image values behind them."""
    arrays = _arrays(g, c, x, inv, traversal)
    s = score(arrays, judge=judge, ssim=_has_ssim())
    q = {
        "mse": s.recon_mse, "ssim": None if math.isnan(s.recon_ssim) else s.recon_ssim, "delta_p": s.p_gap,
        "flip_rate": _num(s.flip_rate), "flip_eligible": s.flip_eligible,
        "judge_flip_rate": _num(s.judge_flip_rate), "judge_flip_eligible": s.judge_flip_eligible,
        "monotone_share": _num(s.monotone_share), "monotone_own": _num(s.monotone_own), "own_count": s.own_count,
        "fallback_traversals": s.fallback_count, "proximity": s.proximity, "mean_steps_used": s.mean_steps,
        "images": s.images,
    }
    if q["ssim"] is None:
        q["ssim_note"] = "not measured: pytorch_msssim is not installed"
    return q, per_image(arrays, judge=judge)


def _num(v: float) -> float | None:
    return None if math.isnan(v) else v


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


def _time_authors_batched(g: Any, c: FrozenClassifier, x: torch.Tensor, keys: list[str], config: InversionConfig,
                          steps: int, batch_size: int, device: torch.device) -> dict[str, Any]:
    """The authors' recipe at raygan's batch (same steps, same latents: inversion is batch-independent),
    `steps` timed steps after a warm-up, scaled to config.steps: what batching alone buys."""
    batch, batch_keys = x[:batch_size], keys[:batch_size]
    invert(g, c, batch, config=dataclasses.replace(config, steps=min(2, steps)), keys=batch_keys)
    _sync(device)
    start = time.perf_counter()
    invert(g, c, batch, config=dataclasses.replace(config, steps=steps), keys=batch_keys)
    _sync(device)
    per_step = (time.perf_counter() - start) / steps
    return {"batch": int(batch.shape[0]), "precision": config.precision, "steps_timed": steps,
            "steps_scaled_to": config.steps, "s_per_step": per_step,
            "images_per_s": batch.shape[0] / (per_step * config.steps)}


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
    p.add_argument("--encoders", default=None,
                   help="comma-separated bundles whose encoders are benchmarked, one per encoder seed, all on the "
                        "--bundle's generator (default: the --bundle's own encoder, else one trained in-process)")
    p.add_argument("--judge", default=None,
                   help="an independent classifier spec (e.g. a study's judge/): its flip rate is reported beside C's")
    p.add_argument("--split", default="test", help="split of --data the reported images come from (default test)")
    p.add_argument("--choose-on", default=None,
                   help="choose K on these images first: a split of --data (e.g. val), or 'sampled' (other images "
                        "G draws); the targets are then checked on the reported images")
    p.add_argument("--choose-images", type=int, default=64, help="images K is chosen on (default 64)")
    p.add_argument("--authors-images", type=int, default=None,
                   help="first K images the authors' 5000-step recipe inverts for its quality (default: all; 0: "
                        "its speed rows only)")
    p.add_argument("--threads", type=int, default=None, help="torch threads on every row (default: torch's)")
    return p


SHOWN = ("mse", "ssim", "delta_p", "flip_rate", "judge_flip_rate", "monotone_own", "proximity", "mean_steps_used")
# Issue 14's targets for the encoder against the shipped optimisation, on the same images:
SPEED_TARGET = 10.0  # images/s at least this many times the shipped optimisation's
RELATIVE_WORSE = 0.05  # MSE and |delta p|: the paired 95% interval's upper bound at most +5% of the shipped mean
POINT_WITHIN = 0.02  # flip rates (explained, judge) and own-z2 monotone share: within this as point estimates


def _print_quality(quality: dict[str, dict[str, Any]], n: int) -> None:
    print(f"quality over {n} images ({quality['raygan']['flip_eligible']} called positive, the flip rate's sample):")
    print("  " + " ".join(f"{k:>15s}" for k in ("side", *SHOWN)))
    for side, q in quality.items():
        print("  " + f"{side:>15s} " + " ".join(f"{_fmt(q.get(k)):>15s}" for k in SHOWN))


def _interval(i: Interval) -> dict[str, Any]:
    return {"value": _num(i.value), "ci95": i.as_list(), "n": i.n, "groups": i.groups}


def _compare(rows: list[PerImage], shipped: PerImage) -> dict[str, Any]:
    """A row's per-image values over its seeds (one PerImage per encoder seed, on the same images as
    `shipped`) against the shipped optimisation: means and paired differences, 95% intervals that
    resample seeds, then images (`raygan.metrics.bootstrap`)."""
    out: dict[str, Any] = {}
    for name in ("recon_mse", "p_gap", "flipped", "judge_flipped", "monotone_own"):
        values = [getattr(r, name).tolist() for r in rows]
        base = [getattr(shipped, name).tolist() for _ in rows]
        mean, diff = bootstrap(values), bootstrap(values, minus=base)
        ref = bootstrap([getattr(shipped, name).tolist()])
        entry = {"mean": _interval(mean), "shipped": _interval(ref), "minus_shipped": _interval(diff)}
        if name in ("recon_mse", "p_gap") and ref.value > 0 and not math.isnan(diff.high):
            entry["upper_relative"] = diff.high / ref.value
        out[name] = entry
    return out


def _meets(comparison: dict[str, Any], speed_ratio: float) -> dict[str, bool | None]:
    """Issue 14's targets for one row (None: not measurable, e.g. no judge)."""
    met: dict[str, bool | None] = {"speed": speed_ratio >= SPEED_TARGET}
    for name in ("recon_mse", "p_gap"):
        rel = comparison[name].get("upper_relative")
        met[name] = None if rel is None else rel <= RELATIVE_WORSE
    for name in ("flipped", "judge_flipped", "monotone_own"):
        d = comparison[name]["minus_shipped"]["value"]
        met[name] = None if d is None else abs(d) <= POINT_WITHIN
    return met


def _encoder_pass(g: Any, c: FrozenClassifier, encoders: list[tuple[Any, str, float]], x: torch.Tensor,
                  keys: list[str], ours: InversionConfig, ks: list[int], batch_size: int, traversal: TraversalConfig,
                  judge: FrozenClassifier | None, device: torch.device, shipped: PerImage,
                  shipped_rate: float) -> dict[str, Any]:
    """Every encoder seed at every K on x: speed, quality, per seed and pooled against the shipped optimisation."""
    rows: dict[str, Any] = {}
    for steps in ks:
        side = f"encoder+{steps}" if steps else "encoder"
        seeds, values = [], []
        for encoder, source, _ in encoders:
            inv, speed = _time_encoder(g, c, encoder, x, keys, dataclasses.replace(ours, encoder_steps=steps),
                                       batch_size, device)
            quality, pi = _quality(g, c, x, inv, traversal, judge)
            seeds.append({"source": source, "speed": speed, "quality": quality})
            values.append(pi)
        rate = sum(r["speed"]["images_per_s"] for r in seeds) / len(seeds)
        comparison = _compare(values, shipped)
        rows[side] = {"encoder_steps": steps, "seeds": seeds, "images_per_s": rate,
                      "speed_ratio_vs_raygan": rate / shipped_rate, "pooled": comparison,
                      "targets_met": _meets(comparison, rate / shipped_rate)}
        print(f"{side}: {rate:.3f} images/s over {len(seeds)} encoder seed(s), "
              f"{rate / shipped_rate:.1f}x the shipped optimisation", flush=True)
    return rows


def _choose_k(rows: dict[str, Any]) -> tuple[int | None, str]:
    """K from the rows measured on the choice split: the smallest K that met every measurable target; else
    the largest K that still met the speed target (the best quality the speed target allows); else the fastest."""
    full = [r for r in rows.values() if all(v is not False for v in r["targets_met"].values())]
    if full:
        return min(r["encoder_steps"] for r in full), "the smallest K that met every target on the choice split"
    fast = [r for r in rows.values() if r["targets_met"]["speed"]]
    if fast:
        return max(r["encoder_steps"] for r in fast), ("no K met every target on the choice split: the largest K "
                                                       "that met the speed target")
    return min(r["encoder_steps"] for r in rows.values()), "no K met the speed target: the fastest"


def _print_pooled(rows: dict[str, Any]) -> None:
    print("encoder rows pooled over seeds, minus the shipped optimisation on the same images "
          "(95% interval: seeds, then images):")
    for side, row in rows.items():
        p = row["pooled"]

        def d(name: str) -> str:
            m = p[name]["minus_shipped"]
            lo, hi = m["ci95"]
            return f"{_fmt(m['value'])} [{_fmt(lo)}, {_fmt(hi)}]"

        rel = {k: p[k].get("upper_relative") for k in ("recon_mse", "p_gap")}
        print(f"  {side:>12s}: {row['speed_ratio_vs_raygan']:.1f}x; MSE {d('recon_mse')} (upper "
              f"{_fmt(rel['recon_mse'])} of shipped); |dp| {d('p_gap')} (upper {_fmt(rel['p_gap'])}); flip "
              f"{d('flipped')}; judge flip {d('judge_flipped')}; monotone own {d('monotone_own')}; met "
              f"{row['targets_met']}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.images = args.images or (8 if args.quick else 64)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.choose_on and not args.data and args.choose_on != "sampled":
        raise SystemExit("--choose-on names a split of --data (or 'sampled' without --data)")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    speed_steps = args.speed_steps or (20 if args.quick else 200)
    authors_steps = args.authors_steps or (AUTHORS_INVERSION.steps // (QUICK_FACTOR if args.quick else 1))
    authors = dataclasses.replace(AUTHORS_INVERSION, steps=authors_steps)

    g, c, ours, traversal, models = _models(args, device)
    judge = None
    if args.judge:
        from raygan.models.frozen import load_classifier

        judge = load_classifier(args.judge).to(device)
    x, keys, data = _images(args, g, device, split=args.split if args.data else None, n=args.images)
    batch_size = args.batch_size or x.shape[0]
    k = min(args.quality_images or x.shape[0], x.shape[0])
    ka = k if args.authors_images is None else min(args.authors_images, k)  # 0: the authors' speed rows only
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
          f"cudnn TF32 {torch.backends.cudnn.allow_tf32}")
    print(f"models: {models}\nimages: {data}; quality over the first {k} (the authors' recipe: {ka})\n"
          f"judge: {args.judge or 'none'}\nauthors: {authors}\nraygan:  {ours}", flush=True)

    a_speed = _time_authors(g, c, x, keys, authors, min(speed_steps, authors_steps), device)
    print(f"authors speed: {a_speed['s_per_step'] * 1e3:.2f} ms/step at batch 1 over {a_speed['steps_timed']} steps "
          f"-> {a_speed['s_per_image']:.2f} s/image for {authors_steps} steps, {a_speed['images_per_s']:.4f} images/s")
    ab_speed = _time_authors_batched(g, c, x, keys, authors, min(speed_steps, authors_steps), batch_size, device)
    print(f"authors batched: {ab_speed['s_per_step'] * 1e3:.2f} ms/step at batch {ab_speed['batch']} -> "
          f"{ab_speed['images_per_s']:.4f} images/s for {authors_steps} steps", flush=True)
    ours_inv, r_speed = _time_raygan(g, c, x, keys, ours, batch_size, device)
    print(f"raygan speed:  {r_speed['images']} images in {r_speed['seconds']:.2f} s at batch {r_speed['batch']} "
          f"({r_speed['precision']}, mean {r_speed['mean_steps_used']:.0f} of {ours.steps} steps) -> "
          f"{r_speed['images_per_s']:.4f} images/s; with all {ours.steps} steps "
          f"{r_speed['images_per_s_all_steps']:.4f} images/s", flush=True)
    # Batch-independent inversion: the authors' latents computed batched equal their batch-1 latents.
    ours_k = _head(ours_inv, k)
    quality: dict[str, dict[str, Any]] = {}
    if ka:
        authors_inv = _invert_batched(g, c, x[:ka], keys[:ka], authors, batch_size)
        quality["authors"], _ = _quality(g, c, x[:ka], authors_inv, traversal, judge)
    quality["raygan"], shipped = _quality(g, c, x[:k], ours_k, traversal, judge)

    encoder_rows: dict[str, Any] = {}
    choice: dict[str, Any] | None = None
    if not args.no_encoder:
        encoders = _encoders(args, g, c, ours, device)
        for _, source, _ in encoders:
            print(f"encoder: {source}")
        ks = _encoder_ks(args)
        if args.choose_on:
            # K is chosen on other images than the ones reported: a split of --data, or other samples of G.
            split = None if args.choose_on == "sampled" else args.choose_on
            xc, kc, dc = _images(args, g, device, split=split, n=args.choose_images, offset=10_000)
            print(f"choosing K on {dc}", flush=True)
            c_inv, c_speed = _time_raygan(g, c, xc, kc, ours, args.batch_size or xc.shape[0], device)
            _, c_shipped = _quality(g, c, xc, c_inv, traversal, judge)
            c_rows = _encoder_pass(g, c, encoders, xc, kc, ours, ks, args.batch_size or xc.shape[0], traversal,
                                   judge, device, c_shipped, c_speed["images_per_s"])
            _print_pooled(c_rows)
            chosen, why = _choose_k(c_rows)
            choice = {"on": dc, "encoder_steps": chosen, "why": why,
                      "rows": {s: {"speed_ratio_vs_raygan": r["speed_ratio_vs_raygan"],
                                   "targets_met": r["targets_met"], "pooled": r["pooled"]} for s, r in c_rows.items()}}
            print(f"chosen K = {chosen}: {why}", flush=True)
        rows = _encoder_pass(g, c, encoders, x[:k], keys[:k], ours, ks, batch_size, traversal, judge, device,
                             shipped, r_speed["images_per_s"])
        for side, row in rows.items():
            quality[side] = row["seeds"][0]["quality"] if len(row["seeds"]) == 1 else _mean_quality(row["seeds"])
        _print_pooled(rows)
        encoder_rows = {"sources": [s for _, s, _ in encoders], "train_seconds": [t for _, _, t in encoders],
                        "rows": rows, "choice": choice}
    ratio = r_speed["images_per_s"] / a_speed["images_per_s"]
    ratio_all = r_speed["images_per_s_all_steps"] / a_speed["images_per_s"]
    _print_quality(quality, k)
    print(f"speed ratio raygan / authors: {ratio:.1f}x as run, {ratio_all:.1f}x with all {ours.steps} steps; "
          f"authors batched / authors: {ab_speed['images_per_s'] / a_speed['images_per_s']:.1f}x")
    result = {
        "benchmark": "inversion_throughput", "device": str(device), "device_name": name, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "cudnn_tf32": torch.backends.cudnn.allow_tf32, "quick": args.quick,
        "models": models, "data": data, "judge": args.judge, "images": int(x.shape[0]), "quality_images": k,
        "authors_images": ka,
        "authors": {"config": dataclasses.asdict(authors), "speed": a_speed, "speed_batched": ab_speed,
                    "quality": quality.get("authors")},
        "raygan": {"config": dataclasses.asdict(ours), "speed": r_speed, "quality": quality["raygan"]},
        "traversal": dataclasses.asdict(traversal), "speed_ratio": ratio, "speed_ratio_all_steps": ratio_all,
        "encoder": encoder_rows or None,
    }
    print("RESULT " + json.dumps(result))
    return 0


def _head(inv: Inversion, k: int) -> Inversion:
    return Inversion(inv.z1[:k], inv.z2[:k], inv.loss_curve[:k], inv.steps_used[:k], inv.final_loss[:k])


def _mean_quality(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean over encoder seeds of each quality column (for the printed table; the JSON keeps every seed)."""
    out: dict[str, Any] = {}
    for key, value in seeds[0]["quality"].items():
        vals = [s["quality"][key] for s in seeds]
        out[key] = (sum(vals) / len(vals)) if all(isinstance(v, (int, float)) for v in vals) else value
    return out


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    sys.exit(main())
