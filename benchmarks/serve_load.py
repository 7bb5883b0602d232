"""Load test of the explanation service vs the same Explainer called directly, at equal work and resources.

    python benchmarks/serve_load.py [--quick] [--bundle URI | --preset tiny --steps N] [--concurrency 1,2,4,...]
                                    [--compare-encoder] [--data URI [--split test]]

Starts a local Ray Serve app of the service (raygan.service.app) on a free loopback port, sends a
bounded number of POST /v1/explain requests (multipart PNG, `?pictures=none`: the numbers only,
so both sides do the same model work) at each concurrency level, and reports p50/p99 latency and
throughput. Each level is compared with the same Explainer called directly in this process with
the same concurrency (batches of min(level, max_batch_size) images, the most the replica can
batch) and the same CPU allotment (torch threads = the replica's num_cpus); the direct side is
measured before and after the service and averaged, and both are printed. The last line is
`RESULT {json}` with one ratio per level = service throughput / direct throughput (target >= 0.8).

--compare-encoder (a bundle with an encoder, `raygan train-encoder`): the whole load test runs
twice in one run, from the encoder (E(x) + encoder_steps refinement steps) and with the service's
`no_encoder` setting (the bundle's full optimisation), and reports the concurrency-1 latency
ratio (issue 14's target: the encoder at least 5x lower).

Without --bundle, an untrained bundle of the preset is made in a temporary directory (the
timings do not depend on the weights). The requests send 16 images: with --data, the stored image
bytes of the first 16 rows of --split (what a user would upload; a trained bundle's optimisation
and encoder behave on them as on the data they were trained for); without it, 16 PNGs of uniform
noise, which suit an untrained bundle but not a trained one (an optimisation from scratch that
cannot fit noise stops early, and noise is far from anything an encoder was trained on).
"""

from __future__ import annotations

import argparse
import io
import itertools
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
from typing import Any

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


def shard_images(uri: str, *, split: str, n: int) -> list[bytes]:
    """The stored image bytes of the first `n` rows of `split` of the input shards at `uri`."""
    from raygan.data.shards import read_table
    from raygan.data.splits import filter_split

    table = filter_split(read_table(uri, columns=["image_id", "image"]), split).slice(0, n)
    if table.num_rows < n:
        raise SystemExit(f"--data {uri}: split {split} has {table.num_rows} rows, {n} needed")
    return [bytes(b) for b in table["image"].to_pylist()]


def direct_throughput(bundle_uri: str, images: list[bytes], *, batch: int, threads: int, attributions: bool,
                      no_encoder: bool = False) -> float:
    """Images/s of Explainer.explain on batches of `batch` (after one warm-up batch)."""
    import torch

    from raygan.bundle import load_bundle
    from raygan.data.codec import decode_image
    from raygan.explain.explainer import Explainer

    torch.set_num_threads(threads)
    explainer = Explainer.from_bundle(load_bundle(bundle_uri), device="cpu", attributions=attributions,
                                      no_encoder=no_encoder)
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


def measure(bundle: str, args: argparse.Namespace, levels: list[int], images: list[bytes], *,
            no_encoder: bool) -> dict[str, Any]:
    """One load test: direct Explainer per batch size before, the service at every level, direct after."""
    import ray
    from ray import serve

    from raygan.service.app import build_app

    label = "from scratch" if no_encoder else "as the bundle says"
    batches = sorted({min(c, args.max_batch_size) for c in levels})
    n_direct = args.direct_images or (len(images) if args.quick else 2 * len(images))
    direct_images = list(itertools.islice(itertools.cycle(images), n_direct))  # the request images, repeated as needed

    def direct(when: str) -> dict[int, float]:
        out = {}
        for b in batches:
            t0 = time.perf_counter()
            out[b] = direct_throughput(bundle, direct_images, batch=b, threads=args.threads,
                                       attributions=not args.no_attributions, no_encoder=no_encoder)
            print(f"direct ({label}, {when}): Explainer.explain, batch {b}, {args.threads} threads: "
                  f"{out[b]:.2f} img/s ({time.perf_counter() - t0:.0f} s)", flush=True)
        return out

    before = direct("before")
    ray.init(num_cpus=args.threads + 4, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app_args = {"bundle_uri": bundle, "max_batch_size": args.max_batch_size, "batch_wait_timeout_s": args.batch_wait,
                "num_cpus": args.threads, "attributions": not args.no_attributions, "no_encoder": no_encoder,
                "max_queued_requests": 1024, "target_ongoing_requests": args.max_batch_size}
    serve.run(build_app(app_args), name="raygan", route_prefix="/", blocking=False)
    url = f"http://127.0.0.1:{port}"
    load_level(url, images, concurrency=args.max_batch_size, requests_n=args.max_batch_size)  # warm-up
    rows = []
    for c in levels:
        row = load_level(url, images, concurrency=c, requests_n=max(args.requests, c))
        rows.append(row)
        print(f"service ({label}) concurrency {c:3d}: {row['ok']}/{row['requests']} ok, p50 {row['p50_s']:.2f} s, "
              f"p99 {row['p99_s']:.2f} s, {row['throughput']:.2f} img/s, mean batch {row['mean_batch']:.1f}",
              flush=True)
    serve.shutdown()
    ray.shutdown()
    after = direct("after")
    for row in rows:
        b = min(row["concurrency"], args.max_batch_size)
        row["direct_batch"] = b
        row["direct_img_per_s"] = (before[b] + after[b]) / 2
        row["direct_before"], row["direct_after"] = before[b], after[b]
        row["ratio"] = row["throughput"] / row["direct_img_per_s"]
        print(f"  concurrency {row['concurrency']:3d}: service {row['throughput']:.2f} img/s vs direct at batch {b} "
              f"{row['direct_img_per_s']:.2f} img/s: ratio {row['ratio']:.2f} (target >= 0.8)")
    return {"no_encoder": no_encoder, "levels": rows}


def main(argv: list[str] | None = None) -> int:
    from raygan.data.splits import SPLITS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny preset, few steps, three levels, few requests")
    parser.add_argument("--bundle", default=None, help="an existing bundle (default: an untrained one of --preset)")
    parser.add_argument("--preset", default="tiny", choices=("tiny", "small", "paper"))
    parser.add_argument("--steps", type=int, default=None, help="inversion steps (default: the preset's)")
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64", help="comma-separated levels")
    parser.add_argument("--requests", type=int, default=32, help="requests per level")
    parser.add_argument("--direct-images", type=int, default=None,
                        help="images per direct measurement (default 32; 16 with --quick); fewer bounds a slow "
                        "from-scratch side")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-wait", type=float, default=0.1, help="the service's batch_wait_timeout_s")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads, both sides (1: on a small shared CPU box more threads thrash)")
    parser.add_argument("--no-attributions", action="store_true")
    parser.add_argument("--data", default=None,
                        help="input shards whose --split images the requests send (default: uniform noise PNGs)")
    parser.add_argument("--split", default="test", choices=SPLITS,
                        help="split of --data the images come from (default test)")
    parser.add_argument("--compare-encoder", action="store_true",
                        help="also run from scratch (no_encoder) and compare concurrency-1 latency; needs a bundle "
                        "with an encoder")
    args = parser.parse_args(argv)
    if args.quick:
        args.concurrency, args.requests = "1,8,32", 16
        args.steps = args.steps or 40
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.compare_encoder and 1 not in levels:
        levels = [1, *levels]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Loopback only (Ray would otherwise rewrite 127.0.0.1 to the machine's outward address and listen there).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # Ray starts its workers at niceness +15: on a machine with other work the replica would get less CPU
    # than the direct side in this process. Same priority on both sides.
    os.environ.setdefault("RAY_worker_niceness", "0")
    # Serve's proxy must pass its readiness check in 5 s by default, which a busy 2-core machine can miss.
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")

    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or make_bundle(Path(tmp), preset_name=args.preset, steps=args.steps)
        from raygan.bundle import read_meta

        meta = read_meta(bundle)
        if args.compare_encoder and "encoder" not in meta:
            parser.error(f"--compare-encoder: the bundle at {bundle} has no encoder (raygan train-encoder)")
        size = meta["gan"]["image_size"]
        images = shard_images(args.data, split=args.split, n=16) if args.data else pngs(16, size)
        runs = [measure(bundle, args, levels, images, no_encoder=False)]
        if args.compare_encoder:
            runs.append(measure(bundle, args, levels, images, no_encoder=True))
    rows = runs[0]["levels"]
    result: dict[str, Any] = {
        "benchmark": "serve_load", "preset": None if args.bundle else args.preset, "image_size": size,
        "steps": meta["inversion"]["steps"], "encoder_steps": meta["inversion"].get("encoder_steps"),
        "encoder": "encoder" in meta, "attributions": not args.no_attributions,
        "max_batch_size": args.max_batch_size, "batch_wait_timeout_s": args.batch_wait, "threads": args.threads,
        "pictures": "none", "images": f"{args.data}, split {args.split}" if args.data else "uniform noise PNGs",
        "levels": rows, "min_ratio": min(r["ratio"] for r in rows), "target": 0.8,
        "cpu_count": os.cpu_count(),
    }
    print("service / direct at the same concurrency: " + ", ".join(f"c={r['concurrency']} {r['ratio']:.2f}"
                                                                     for r in rows) + " (target >= 0.8)")
    if args.compare_encoder:
        enc = next(r for r in runs[0]["levels"] if r["concurrency"] == 1)
        scratch = next(r for r in runs[1]["levels"] if r["concurrency"] == 1)
        result["from_scratch_levels"] = runs[1]["levels"]
        result["latency_ratio_c1"] = scratch["p50_s"] / enc["p50_s"]
        print(f"concurrency 1, p50 latency: from scratch {scratch['p50_s']:.3f} s, from the encoder "
              f"{enc['p50_s']:.3f} s: {result['latency_ratio_c1']:.1f}x lower (target >= 5x)")
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
