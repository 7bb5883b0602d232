"""The bulk job's own overhead: rows/s against the bare Explainer, and how the driver scales with rows.

    python benchmarks/bulk_throughput.py [--quick] [--steps N] [--rows 2000] [--scale 5000,50000]
                                         [--scale-explainer stub|real] [--artifacts none]

1. Throughput, on the same `--rows` rows (tiny preset, `--steps` inversion steps, `--artifacts`):
   * bare: `Explainer.explain` on decoded batches in this process (model work only), half the rows
     before the bulk run and half after, so a change of machine load shows up in both sides;
   * bulk: `raygan.bulk.explain_bulk` in a fresh driver process (read units -> actor pool ->
     one results file per unit), the whole call: Ray Data's start-up and the actors' model loading
     included. Same CPU allotment: the bare side gets as many torch threads as the actor pool CPUs,
     and the actors run at the benchmark's own priority (Ray would start them at niceness +15).
   ratio = bulk / bare rows/s (target >= 0.85).
2. Scale: a fresh driver process per `--scale` row count runs the bulk job and reports the peak RSS of
   the driver process itself (VmHWM of /proc/self/status, not ru_maxrss: Linux carries that over
   from the parent's RSS at fork through exec; not the raylet, GCS or actors, which are other
   processes; most of it is the imports of torch, Ray and Ray Data, reported apart), the peak of the
   Python heap during the job (tracemalloc) and the Parquet results files written (target: a few
   dozen at 50,000 rows, peak within 1.5x of the 5,000-row run). `--scale-explainer stub` (default) swaps the
   models for constant rows inside the actors: reading units, writing their files and everything on the
   driver stay the real code, and 50,000 real explanations would take hours on a small CPU machine;
   `real` runs the real Explainer there too.

Input is cheap to make at any size: a few distinct phantoms (`--distinct`) repeated with distinct
image_ids, in shards of `--rows-per-shard` rows. The last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from raygan.bulk import ExplainUnit  # noqa: E402  (after the sys.path line above)


class StubExplainUnit(ExplainUnit):
    """ExplainUnit with the models swapped for constant "ok" rows: the unit is read and its file written as usual."""

    def __init__(self, bundle_uri: str, out_uri: str, *, settings: Any, batch_size: int, **_: Any) -> None:
        from raygan.bulk import bundle_id_of

        self.out_uri, self.settings, self.batch_size = out_uri, settings, batch_size
        self.bundle_id = bundle_id_of(bundle_uri, settings=settings)

    def explain_unit(self, unit: Any) -> dict[str, Any]:
        import pyarrow as pa

        from raygan import storage
        from raygan.bulk import read_unit
        from raygan.explain.results import RESULT_SCHEMA, RESULTS_DIR

        ids = [i for t in read_unit(unit, batch_size=self.batch_size, settings=self.settings)
               for i in t["image_id"].to_pylist()]
        rows = [{"image_id": i, "bundle_id": self.bundle_id, "status": "ok"} for i in ids]
        storage.write_parquet(pa.Table.from_pylist(rows, schema=RESULT_SCHEMA),
                              storage.join(self.out_uri, RESULTS_DIR, unit.name), self.settings)
        return {"name": unit.name, "ok": len(rows), "error": 0, "skipped": 0, "failed_ids": [], "failed_errors": []}


def make_input(uri: str, *, rows: int, distinct: int, size: int, rows_per_shard: int) -> None:
    """`rows` input rows: `distinct` phantoms repeated (cheap at any size), image_ids ph-000000, ph-000001, ..."""
    import pyarrow as pa

    from raygan.data.phantoms import PhantomConfig, write_phantoms
    from raygan.data.shards import read_table, write_shards

    with tempfile.TemporaryDirectory() as tmp:
        write_phantoms(PhantomConfig(n=distinct, size=size, seed=0), tmp)
        base = read_table(tmp)
    table = base.take(pa.array([i % base.num_rows for i in range(rows)]))
    table = table.set_column(table.schema.get_field_index("image_id"), "image_id",
                             pa.array([f"ph-{i:06d}" for i in range(rows)]))
    write_shards(table, uri, rows_per_shard=rows_per_shard)


def peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (this benchmark's memory figures need Linux)")


def driver(spec: dict[str, Any]) -> dict[str, Any]:
    """One bulk job in this (fresh) process; its wall time, counts, files and this process's peak RSS."""
    import tracemalloc

    import ray

    from raygan import storage
    from raygan.bulk import BulkConfig, explain_bulk

    # Ray starts its workers at niceness +15 (RAY_worker_niceness): on a machine shared with other work
    # the actors would get a fraction of the CPU the bare side gets. Same priority on both sides.
    os.environ.setdefault("RAY_worker_niceness", "0")
    baseline_mib = peak_rss_mib()  # after the imports
    ray.init(num_cpus=spec["ray_cpus"], include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    config = BulkConfig(batch_size=spec["batch_size"], rows_per_file=spec["rows_per_file"],
                        artifacts=spec["artifacts"], min_actors=spec["actors"], max_actors=spec["actors"],
                        num_cpus=spec["cpus_per_actor"], attributions=spec["attributions"], progress=False)
    if spec["trace"]:
        tracemalloc.start()
    start = time.perf_counter()
    summary = explain_bulk(spec["input"], spec["bundle"], spec["out"], config=config,
                           udf=StubExplainUnit if spec["stub"] else ExplainUnit)
    seconds = time.perf_counter() - start
    heap_mib = tracemalloc.get_traced_memory()[1] / 2**20 if spec["trace"] else None
    ray.shutdown()
    files = storage.list_files(storage.join(spec["out"], "results"), suffix=".parquet")
    rows = summary.ok + summary.error
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "files": len(files),
            "peak_rss_mib": peak_rss_mib(), "import_rss_mib": baseline_mib, "heap_peak_mib": heap_mib}


def run_driver(spec: dict[str, Any]) -> dict[str, Any]:
    """`driver(spec)` in a child process (a fresh driver, so its peak RSS is its own)."""
    done = subprocess.run([sys.executable, __file__, "--driver", json.dumps(spec)], text=True, capture_output=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("DRIVER ")]
    if done.returncode or not lines:
        raise RuntimeError(f"the driver printed no result:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(lines[-1][len("DRIVER "):])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--driver", default=None, help=argparse.SUPPRESS)  # internal: run one job as a fresh driver
    parser.add_argument("--quick", action="store_true", help="200 rows, scale 500 and 5,000 (a smoke run)")
    parser.add_argument("--steps", type=int, default=5, help="inversion steps of the tiny bundle")
    parser.add_argument("--rows", type=int, default=2000, help="rows of the throughput comparison")
    parser.add_argument("--scale", default="5000,50000", help="row counts of the driver-scale runs ('' = none)")
    parser.add_argument("--scale-explainer", choices=("stub", "real"), default="stub")
    parser.add_argument("--distinct", type=int, default=64, help="distinct phantoms repeated to make the input")
    parser.add_argument("--rows-per-shard", type=int, default=4096, help="rows per input Parquet file")
    parser.add_argument("--rows-per-file", type=int, default=2048, help="BulkConfig.rows_per_file")
    parser.add_argument("--artifacts", choices=("none", "flagged", "all"), default="none")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--cpus-per-actor", type=float, default=1.0, help="also the torch threads of each actor")
    parser.add_argument("--attributions", action="store_true", help="also Grad-CAM and IG (they only feed PNGs)")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.driver is not None:
        print("DRIVER " + json.dumps(driver(json.loads(args.driver))), flush=True)
        return 0
    if args.quick:
        args.rows, args.scale = min(args.rows, 200), "500,5000"
    scales = [int(s) for s in args.scale.split(",") if s.strip()]
    threads = max(1, int(args.actors * args.cpus_per_actor))

    import torch

    from raygan.bundle import load_bundle
    from raygan.data.shards import decode_rows, read_table
    from raygan.explain.explainer import Explainer
    from serve_load import make_bundle

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle = make_bundle(root, preset_name="tiny", steps=args.steps)
        loaded = load_bundle(bundle)
        size = loaded.gan.image_size
        spec = {"bundle": bundle, "batch_size": args.batch_size, "rows_per_file": args.rows_per_file,
                "artifacts": args.artifacts, "actors": args.actors, "cpus_per_actor": args.cpus_per_actor,
                "attributions": args.attributions, "ray_cpus": math.ceil(args.actors * args.cpus_per_actor) + 2,
                "trace": False}
        start = time.perf_counter()
        make_input(str(root / "in"), rows=args.rows, distinct=args.distinct, size=size,
                   rows_per_shard=args.rows_per_shard)
        print(f"input: {args.rows} rows in {time.perf_counter() - start:.1f} s", flush=True)

        torch.set_num_threads(threads)
        explainer = Explainer.from_bundle(loaded, device="cpu", attributions=args.attributions)
        decoded = decode_rows(read_table(str(root / "in")), size=size)
        n, b = len(decoded.image_ids), args.batch_size
        explainer.explain(decoded.images[:b], image_ids=decoded.image_ids[:b])  # warm-up

        def measure_bare(lo: int, hi: int, when: str) -> tuple[int, float]:
            start = time.perf_counter()
            for i in range(lo, hi, b):
                explainer.explain(decoded.images[i:min(i + b, hi)], image_ids=decoded.image_ids[i:min(i + b, hi)])
            seconds = time.perf_counter() - start
            print(f"bare Explainer.explain ({when}, {hi - lo} rows): {(hi - lo) / seconds:.2f} rows/s "
                  f"({threads} thread(s), batch {b})", flush=True)
            return hi - lo, seconds

        half = (n // 2) // b * b  # whole batches before, the rest after
        before = measure_bare(0, half, "before")
        bulk = run_driver({**spec, "input": str(root / "in"), "out": str(root / "out"), "stub": False})
        print(f"bulk (Ray Data, {args.actors} actor(s) x {args.cpus_per_actor:g} CPUs): {bulk['rows_per_s']:.2f} "
              f"rows/s over {bulk['seconds']:.1f} s, {bulk['files']} results file(s), driver peak RSS "
              f"{bulk['peak_rss_mib']:.0f} MiB", flush=True)
        torch.set_num_threads(threads)
        after = measure_bare(half, n, "after")
        bare = (before[0] + after[0]) / (before[1] + after[1])

        scaled: dict[str, dict[str, Any]] = {}
        for rows in scales:
            where = root / f"scale-{rows}"
            make_input(str(where / "in"), rows=rows, distinct=args.distinct, size=size,
                       rows_per_shard=args.rows_per_shard)
            scaled[str(rows)] = run_driver({**spec, "input": str(where / "in"), "out": str(where / "out"),
                                            "stub": args.scale_explainer == "stub", "trace": True})
            s = scaled[str(rows)]
            print(f"scale {rows} rows ({args.scale_explainer} explainer): {s['files']} results files, driver peak RSS "
                  f"{s['peak_rss_mib']:.0f} MiB ({s['import_rss_mib']:.0f} after imports), Python heap peak during the "
                  f"job {s['heap_peak_mib']:.1f} MiB (tracemalloc), {s['seconds']:.1f} s", flush=True)
    ratio = bulk["rows_per_s"] / bare
    result: dict[str, Any] = {
        "benchmark": "bulk_throughput", "preset": "tiny", "image_size": size, "steps": args.steps, "rows": n,
        "batch_size": b, "rows_per_file": args.rows_per_file, "rows_per_shard": args.rows_per_shard,
        "artifacts": args.artifacts, "attributions": args.attributions, "actors": args.actors,
        "cpus_per_actor": args.cpus_per_actor, "threads": threads, "bare_rows_per_s": bare,
        "bare_before": before[0] / before[1], "bare_after": after[0] / after[1], "bulk": bulk, "ratio": ratio,
        "ratio_target": 0.85, "scale_explainer": args.scale_explainer, "scale": scaled, "cpu_count": os.cpu_count(),
        "loadavg": os.getloadavg(),
    }
    print(f"bulk / bare = {ratio:.2f} (target >= 0.85)")
    if len(scales) >= 2:
        lo, hi = scaled[str(scales[0])], scaled[str(scales[-1])]
        result["rss_ratio"] = hi["peak_rss_mib"] / lo["peak_rss_mib"]
        result["heap_ratio"] = hi["heap_peak_mib"] / lo["heap_peak_mib"]
        print(f"driver peak RSS {scales[-1]} / {scales[0]} rows = {result['rss_ratio']:.2f} (target <= 1.5); "
              f"driver Python heap peak ratio {result['heap_ratio']:.2f}; "
              f"results files {lo['files']} -> {hi['files']} (target: a few dozen)")
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
