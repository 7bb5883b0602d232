"""Load test of the explanation service vs the same Explainer called directly in batches.

    python benchmarks/serve_load.py [--quick] [--bundle URI | --preset tiny --steps N] [--concurrency 1,2,4,...]

Starts a local Ray Serve app of the service (raygan.service.app) on a free loopback port, sends a
bounded number of POST /v1/explain requests (multipart PNG, `?pictures=none`: the numbers only,
so both sides do the same model work) at each concurrency level, and reports p50/p99 latency and
throughput. The baseline is `Explainer.explain` in this process on batches of the service's
max_batch_size with the same torch thread count as the Explainer replica. The last line is
`RESULT {json}` with ratio = best service throughput / direct throughput (target >= 0.8).
Without --bundle, an untrained bundle of the preset is made in a temporary directory (the
timings do not depend on the weights).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_bundle(out: Path, *, preset_name: str, steps: int | None) -> str:
    """An untrained bundle of `preset_name` (generator + small_cnn classifier) under `out`."""
    import torch

    from raygan.bundle import save_bundle
    from raygan.config import preset
    from raygan.models.classifier import build_classifier, factory_path
    from raygan.models.frozen import ClassifierSpec, save_classifier
    from raygan.models.generator import build_generator

    p = preset(preset_name)
    torch.manual_seed(0)
    size = p.gan.image_size
    spec = ClassifierSpec(format="factory", weights="weights.pt", factory=factory_path("small_cnn"),
                          factory_kwargs={"image_size": size}, size=size)
    classifier_uri = save_classifier(build_classifier("small_cnn", image_size=size), out / "classifier", spec=spec)
    inversion = replace(p.inversion, steps=steps) if steps else p.inversion
    save_bundle(str(out / "bundle"), generator=build_generator(p.gan).eval(), classifier_uri=str(classifier_uri),
                train=p.train, inversion=inversion, traversal=p.traversal)
    return str(out / "bundle")


def pngs(n: int, size: int) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def direct_throughput(bundle_uri: str, images: list[bytes], *, batch: int, threads: int, attributions: bool) -> float:
    """Images/s of Explainer.explain on batches of `batch` (after one warm-up batch)."""
    import torch

    from raygan.bundle import load_bundle
    from raygan.data.codec import decode_image
    from raygan.explain.explainer import Explainer

    torch.set_num_threads(threads)
    explainer = Explainer.from_bundle(load_bundle(bundle_uri), device="cpu", attributions=attributions)
    x = torch.stack([decode_image(d, size=explainer.image_size) for d in images])  # [N, 1, S, S]
    explainer.explain(x[:batch], image_ids=[f"w{i}" for i in range(min(batch, len(x)))])
    start = time.perf_counter()
    for lo in range(0, len(x), batch):
        explainer.explain(x[lo:lo + batch], image_ids=[f"d{i}" for i in range(lo, min(lo + batch, len(x)))])
    return len(x) / (time.perf_counter() - start)


def load_level(url: str, images: list[bytes], *, concurrency: int, requests_n: int) -> dict[str, float]:
    """Send `requests_n` requests with `concurrency` in flight; latency percentiles and throughput."""
    import requests

    session_per_thread: dict[int, requests.Session] = {}

    def one(i: int) -> tuple[float, int, int]:
        import threading

        s = session_per_thread.setdefault(threading.get_ident(), requests.Session())
        start = time.perf_counter()
        r = s.post(url + "/v1/explain?pictures=none", files={"file": (f"b{i}.png", images[i % len(images)])},
                   timeout=600)
        batch = r.json().get("batch_size", 0) if r.status_code == 200 else 0
        return time.perf_counter() - start, r.status_code, batch

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests_n)))
    wall = time.perf_counter() - start
    lat = sorted(r[0] for r in results)
    ok = [r for r in results if r[1] == 200]
    return {
        "concurrency": concurrency, "requests": requests_n, "ok": len(ok),
        "p50_s": statistics.median(lat), "p99_s": lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))],
        "throughput": len(ok) / wall, "mean_batch": statistics.mean(r[2] for r in ok) if ok else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny preset, few steps, three levels, few requests")
    parser.add_argument("--bundle", default=None, help="an existing bundle (default: an untrained one of --preset)")
    parser.add_argument("--preset", default="tiny", choices=("tiny", "small", "paper"))
    parser.add_argument("--steps", type=int, default=None, help="inversion steps (default: the preset's)")
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64", help="comma-separated levels")
    parser.add_argument("--requests", type=int, default=32, help="requests per level")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-wait", type=float, default=0.1, help="the service's batch_wait_timeout_s")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads, both sides (1: on a small shared CPU box more threads thrash)")
    parser.add_argument("--no-attributions", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.concurrency, args.requests = "1,8,32", 16
        args.steps = args.steps or 40
    levels = [int(c) for c in args.concurrency.split(",")]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import ray
    from ray import serve

    from raygan.service.app import build_app

    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or make_bundle(Path(tmp), preset_name=args.preset, steps=args.steps)
        from raygan.bundle import read_meta

        meta = read_meta(bundle)
        size = meta["gan"]["image_size"]
        images = pngs(16, size)
        direct_images = images if args.quick else images * 2

        def measure_direct(when: str) -> float:
            t0 = time.perf_counter()
            value = direct_throughput(bundle, direct_images, batch=args.max_batch_size, threads=args.threads,
                                      attributions=not args.no_attributions)
            print(f"direct ({when}): Explainer.explain, batch {args.max_batch_size}, {args.threads} threads: "
                  f"{value:.2f} img/s ({time.perf_counter() - t0:.0f} s)", flush=True)
            return value

        # Measured before and after the service and averaged, so a change in machine load between the
        # two sides shows up (compare direct_before with direct_after) instead of skewing the ratio.
        direct_before = measure_direct("before")

        ray.init(num_cpus=args.threads + 4, include_dashboard=False, log_to_driver=False)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app_args = {"bundle_uri": bundle, "max_batch_size": args.max_batch_size, "batch_wait_timeout_s": args.batch_wait,
                    "num_cpus": args.threads, "attributions": not args.no_attributions,
                    "max_queued_requests": 1024, "target_ongoing_requests": args.max_batch_size}
        serve.run(build_app(app_args), name="raygan", route_prefix="/", blocking=False)
        url = f"http://127.0.0.1:{port}"
        load_level(url, images, concurrency=args.max_batch_size, requests_n=args.max_batch_size)  # warm-up
        rows = []
        for c in levels:
            row = load_level(url, images, concurrency=c, requests_n=max(args.requests, c))
            rows.append(row)
            print(f"concurrency {c:3d}: {row['ok']}/{row['requests']} ok, p50 {row['p50_s']:.2f} s, "
                  f"p99 {row['p99_s']:.2f} s, {row['throughput']:.2f} img/s, mean batch {row['mean_batch']:.1f}",
                  flush=True)
        serve.shutdown()
        ray.shutdown()
        direct_after = measure_direct("after")
    direct = (direct_before + direct_after) / 2
    best = max(r["throughput"] for r in rows)
    result = {
        "benchmark": "serve_load", "preset": None if args.bundle else args.preset,
        "image_size": size, "steps": meta["inversion"]["steps"], "attributions": not args.no_attributions,
        "max_batch_size": args.max_batch_size, "batch_wait_timeout_s": args.batch_wait, "threads": args.threads,
        "pictures": "none",
        "direct_img_per_s": direct, "direct_before": direct_before, "direct_after": direct_after,
        "service_best_img_per_s": best, "ratio": best / direct, "target": 0.8,
        "levels": rows, "cpu_count": os.cpu_count(),
    }
    print(f"service best {best:.2f} img/s vs direct {direct:.2f} img/s: ratio {best / direct:.2f} (target >= 0.8)")
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
