"""One `raygan explain` of one image on an idle machine, against the same beside two single-threaded busy loops.

The loaded run should take at most 2x the idle one with raygan's default thread count
(raygan.threads.default_threads: 1 thread on a machine with <= 2 cores). The same pair is run
with torch's own default (one thread per core, `--threads <cores>`) for comparison: there, a
thread that waits for a busy core stalls the others. Each run is a fresh `raygan explain`
process (what a user runs), explaining one 64 px image with the `small` preset's networks
(untrained: the work per step is what matters) for `--steps` inversion steps. The busy loops run
at this process's niceness. Prints one row per (threads, machine state) and the ratios.

    python benchmarks/explain_load.py [--steps 200] [--repeats 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUSY_LOOP = "while True: pass"


def make_bundle(root: Path) -> tuple[str, str]:
    """A `small`-preset bundle (untrained generator, untrained small_cnn) and one 64 px PNG; returns their paths."""
    import numpy as np
    import torch

    from raygan.bundle import save_bundle
    from raygan.config import preset
    from raygan.data.codec import encode_png
    from raygan.models.classifier import build_classifier, factory_path
    from raygan.models.frozen import ClassifierSpec, save_classifier
    from raygan.models.generator import build_generator

    small = preset("small")
    size = small.gan.image_size
    torch.manual_seed(0)
    spec = ClassifierSpec(format="factory", weights="weights.pt", factory=factory_path("small_cnn"),
                          factory_kwargs={"image_size": size}, size=size)
    classifier = save_classifier(build_classifier("small_cnn", image_size=size), str(root / "classifier"), spec=spec)
    bundle = save_bundle(str(root / "bundle"), generator=build_generator(small.gan).eval(), classifier_uri=classifier,
                         train=small.train, inversion=small.inversion, traversal=small.traversal)
    image = root / "chest.png"
    image.write_bytes(encode_png(np.random.default_rng(0).uniform(-1, 1, (1, size, size)).astype(np.float32)))
    return str(bundle), str(image)


def explain_once(bundle: str, image: str, out: Path, *, steps: int, threads: int | None) -> float:
    """Wall seconds of one `raygan explain` process (a fresh output folder each time)."""
    command = [sys.executable, "-m", "raygan.cli", "explain", image, "--bundle", bundle, "--out", str(out),
               "--steps", str(steps), "--device", "cpu", "--no-progress", "--no-attributions"]
    if threads is not None:
        command += ["--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def timed(bundle: str, image: str, scratch: Path, *, steps: int, threads: int | None, loaded: bool,
          repeats: int) -> float:
    """Best of `repeats` runs, beside two busy loops when `loaded`."""
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(2 if loaded else 0)]
    try:
        if loops:
            time.sleep(1.0)  # let the loops take their cores
        runs = [explain_once(bundle, image, scratch / f"out-{time.monotonic_ns()}", steps=steps, threads=threads)
                for _ in range(repeats)]
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="inversion steps per explanation")
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell (the best is kept)")
    parser.add_argument("--out", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()

    from raygan.threads import available_cores, default_threads

    cores = available_cores()
    with tempfile.TemporaryDirectory(prefix="raygan-load-") as tmp:
        scratch = Path(args.out) if args.out else Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        bundle, image = make_bundle(scratch)
        print(f"machine: {cores} core(s), load average {os.getloadavg()[0]:.2f} at start; one 64 px image, "
              f"small preset networks, {args.steps} inversion steps, best of {args.repeats}")
        print(f"{'threads':>24} | {'idle s':>8} | {'2 busy loops s':>14} | loaded / idle")
        ratios = {}
        for label, threads in ((f"raygan default ({default_threads()})", None), (f"torch default ({cores})", cores)):
            idle = timed(bundle, image, scratch, steps=args.steps, threads=threads, loaded=False, repeats=args.repeats)
            busy = timed(bundle, image, scratch, steps=args.steps, threads=threads, loaded=True, repeats=args.repeats)
            ratios[label] = busy / idle
            print(f"{label:>24} | {idle:8.1f} | {busy:14.1f} | {busy / idle:.2f}x", flush=True)
        first = next(iter(ratios))
        print(f"target: loaded <= 2x idle with raygan's default: {'met' if ratios[first] <= 2 else 'NOT met'} "
              f"({ratios[first]:.2f}x); load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
