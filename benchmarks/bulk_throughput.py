"""Bulk explanation with Ray Data end to end vs the bare Explainer on the same rows.

    python benchmarks/bulk_throughput.py [--quick] [--bundle URI | --preset tiny --steps N] [--rows N]

Writes `--rows` synthetic phantoms as input shards, then measures, on the same rows:
  * bare:      `Explainer.explain` on decoded batches in this process (model work only);
  * in-process: `explain_rows` + one results file per batch in this process: the same work as the
               bulk job (decode, explain, PNG artifacts, Parquet), without Ray;
  * bulk:      `raygan.bulk.explain_bulk` (read_parquet -> actor pool -> results), wall time of the
               whole call including Ray Data's start-up and the actors' model loading.
Both single-process sides use as many torch threads as the actor pool has CPUs in total. The last
line is `RESULT {json}`; ratio = bulk / bare throughput (target >= 0.85), ratio_same_work = bulk /
in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny preset, few steps, few rows")
    parser.add_argument("--bundle", default=None, help="an existing bundle (default: an untrained one of --preset)")
    parser.add_argument("--preset", default="tiny", choices=("tiny", "small", "paper"))
    parser.add_argument("--steps", type=int, default=None, help="inversion steps (default: the preset's)")
    parser.add_argument("--rows", type=int, default=256, help="input rows")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--cpus-per-actor", type=float, default=1.0, help="also the torch threads of each actor")
    parser.add_argument("--no-attributions", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = min(args.rows, 64)
        args.steps = args.steps or 40
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    threads = max(1, int(args.actors * args.cpus_per_actor))

    import ray
    import torch

    from raygan.bulk import BulkConfig, explain_bulk, write_block
    from raygan.bundle import load_bundle
    from raygan.data.phantoms import PhantomConfig, write_phantoms
    from raygan.data.shards import decode_rows, read_table
    from raygan.explain.explainer import Explainer
    from raygan.explain.results import explain_rows, result_schema
    from serve_load import make_bundle

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle = args.bundle or make_bundle(root, preset_name=args.preset, steps=args.steps)
        loaded = load_bundle(bundle)
        size = loaded.gan.image_size
        write_phantoms(PhantomConfig(n=args.rows, size=size, seed=0, rows_per_shard=max(1, args.rows // 4)),
                       str(root / "in"))
        table = read_table(str(root / "in"))
        attributions = not args.no_attributions

        torch.set_num_threads(threads)
        explainer = Explainer.from_bundle(loaded, device="cpu", attributions=attributions)
        decoded = decode_rows(table, size=size)
        explainer.explain(decoded.images[:args.batch_size], image_ids=decoded.image_ids[:args.batch_size])  # warm-up

        def measure_bare(when: str) -> float:
            start = time.perf_counter()
            for lo in range(0, len(decoded.image_ids), args.batch_size):
                explainer.explain(decoded.images[lo:lo + args.batch_size],
                                  image_ids=decoded.image_ids[lo:lo + args.batch_size])
            value = table.num_rows / (time.perf_counter() - start)
            print(f"bare Explainer.explain ({when}): {value:.2f} img/s ({threads} threads, batch {args.batch_size})",
                  flush=True)
            return value

        # Measured before and after the bulk run and averaged: load changes show up instead of skewing the ratio.
        bare_before = measure_bare("before")

        schema = result_schema(table.schema)
        start = time.perf_counter()
        for lo in range(0, table.num_rows, args.batch_size):
            rows = explain_rows(table.slice(lo, args.batch_size), str(root / "out-inproc"), explainer=explainer,
                                skip=set())
            write_block(rows, str(root / "out-inproc"), schema=schema)
        inproc = table.num_rows / (time.perf_counter() - start)
        print(f"in-process explain_rows + results: {inproc:.2f} img/s", flush=True)

        ray.init(num_cpus=int(args.actors * args.cpus_per_actor) + 2, include_dashboard=False, log_to_driver=False)
        config = BulkConfig(batch_size=args.batch_size, min_actors=args.actors, max_actors=args.actors,
                            num_cpus=args.cpus_per_actor, attributions=attributions, progress=False)
        summary = explain_bulk(str(root / "in"), bundle, str(root / "out-bulk"), config=config)
        ray.shutdown()
        torch.set_num_threads(threads)
        bare_after = measure_bare("after")
        bare = (bare_before + bare_after) / 2
        bulk = summary.images_per_s
        print(f"bulk (Ray Data, {args.actors} actor(s) x {args.cpus_per_actor:g} CPUs): {bulk:.2f} img/s "
              f"over {summary.seconds:.1f} s, {summary.ok} ok, {summary.error} error(s)", flush=True)
    result = {
        "benchmark": "bulk_throughput", "preset": None if args.bundle else args.preset, "image_size": size,
        "steps": loaded.inversion.steps, "rows": args.rows, "batch_size": args.batch_size, "actors": args.actors,
        "cpus_per_actor": args.cpus_per_actor, "threads": threads, "attributions": attributions,
        "bare_img_per_s": bare, "bare_before": bare_before, "bare_after": bare_after, "inproc_img_per_s": inproc,
        "bulk_img_per_s": bulk,
        "ratio": bulk / bare, "ratio_same_work": bulk / inproc, "target": 0.85, "bulk_seconds": summary.seconds,
        "cpu_count": os.cpu_count(),
    }
    print(f"bulk / bare = {bulk / bare:.2f} (target >= 0.85); bulk / in-process same work = {bulk / inproc:.2f}")
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
