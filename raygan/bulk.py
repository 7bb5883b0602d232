"""Bulk explanation of Parquet image shards with Ray Data, resumable after a crash.

    read_parquet(input) -> filter out (image_id, bundle_id) already in <out>/results/
      -> map_batches(ExplainBatch: one Explainer per actor, an actor pool, GPUs when asked)
      -> each batch's result rows written as one Parquet file under <out>/results/

Rows are built by `raygan.explain.results.explain_rows` (the same code as `raygan explain`), so
the results contract holds: one row per input row, bad images become status "error" rows.

Crash safety: each batch's results file is named by a hash of its bundle_id and image_ids, and
appears whole or not at all (local files are written under a temporary hidden name and then
renamed; an S3 object becomes visible only when its upload completes). A rerun over the same
output skips every row already written, so after any crash a rerun ends with every row exactly
once. One bulk job per output at a time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs

from raygan import storage
from raygan.storage import StorageSettings

if TYPE_CHECKING:
    from raygan.explain.results import ExplainSummary

TMP_PREFIX = storage.TMP_PREFIX  # temporary result files a killed local run may leave behind


@dataclass(frozen=True)
class BulkConfig:
    """How a bulk explanation job uses the cluster."""

    batch_size: int = 16  # rows per Explainer call (and per results file)
    min_actors: int = 1  # actor-pool floor (each actor holds one Explainer)
    max_actors: int = 1  # actor-pool ceiling
    num_gpus: float = 0.0  # GPUs per actor (0 = CPU)
    num_cpus: float = 1.0  # CPUs per actor; also its torch thread count
    attributions: bool = True  # compute Grad-CAM and Integrated Gradients
    progress: bool = True  # show Ray Data's progress bars
    no_encoder: bool = False  # invert from scratch even when the bundle has an encoder

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.min_actors < 1 or self.max_actors < self.min_actors:
            raise ValueError(f"need batch_size >= 1 and 1 <= min_actors <= max_actors, got {self}")
        if self.num_cpus <= 0 or self.num_gpus < 0:
            raise ValueError(f"need num_cpus > 0 and num_gpus >= 0, got {self.num_cpus}, {self.num_gpus}")


def bundle_id_of(bundle_uri: str, *, settings: StorageSettings | None = None, no_encoder: bool = False) -> str:
    """The bundle_id an Explainer built from this bundle's default settings writes (reads bundle.json only);
    it starts from the bundle's encoder when there is one, unless `no_encoder`."""
    from raygan.bundle import bundle_id_of_meta, read_meta

    return bundle_id_of_meta(read_meta(bundle_uri, settings=settings), no_encoder=no_encoder)


def block_name(bundle_id: str, image_ids: list[str]) -> str:
    """`part-<hash>.parquet`: the same rows always get the same name, so a retried batch replaces itself."""
    digest = hashlib.sha256("\n".join([bundle_id, *image_ids]).encode()).hexdigest()[:24]
    return f"part-{digest}.parquet"


def write_block(rows: list[dict[str, Any]], out_uri: str, *, schema: pa.Schema,
                settings: StorageSettings | None = None) -> str | None:
    """Write one batch's result rows to `<out>/results/<block_name>`, whole or not at all; None when empty."""
    from raygan.explain.results import RESULTS_DIR

    if not rows:
        return None
    uri = storage.join(out_uri, RESULTS_DIR, block_name(rows[0]["bundle_id"], [r["image_id"] for r in rows]))
    return storage.write_parquet(pa.Table.from_pylist(rows, schema=schema), uri, settings)


def remove_stale_temps(out_uri: str, *, settings: StorageSettings | None = None) -> int:
    """Delete temporary files a killed local run left in <out>/results/; returns how many."""
    from raygan.explain.results import RESULTS_DIR

    fs, path = storage.filesystem(storage.join(out_uri, RESULTS_DIR), settings)
    if not isinstance(fs, pafs.LocalFileSystem):
        return 0
    stale = [i.path for i in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
             if i.base_name.startswith(TMP_PREFIX)]
    for p in stale:
        fs.delete_file(p)
    return len(stale)


class ExplainBatch:
    """Ray Data callable class: builds the Explainer once per actor, then explains and writes each batch."""

    def __init__(self, bundle_uri: str, out_uri: str, *, settings: StorageSettings | None, num_cpus: float,
                 device: str, attributions: bool, no_encoder: bool = False) -> None:
        import torch

        from raygan.bundle import load_bundle
        from raygan.explain.explainer import Explainer

        torch.set_num_threads(max(1, int(num_cpus)))  # = reserved CPUs: actors sharing a node do not oversubscribe it
        self.out_uri = out_uri
        self.settings = settings
        self.explainer = Explainer.from_bundle(load_bundle(bundle_uri, settings=settings), device=device,
                                               attributions=attributions, no_encoder=no_encoder)

    def __call__(self, batch: pa.Table) -> pa.Table:
        from raygan.explain.results import explain_rows, result_schema

        rows = explain_rows(batch, self.out_uri, explainer=self.explainer, skip=set(), settings=self.settings)
        write_block(rows, self.out_uri, schema=result_schema(batch.schema), settings=self.settings)
        return pa.table({"image_id": [r["image_id"] for r in rows], "status": [r["status"] for r in rows]})


def explain_bulk(
    input_uri: str,
    bundle_uri: str,
    out_uri: str,
    *,
    config: BulkConfig = BulkConfig(),
    settings: StorageSettings | None = None,
    runtime_env: dict[str, Any] | None = None,
    udf: type = ExplainBatch,
) -> ExplainSummary:
    """Explain every input row not yet in `<out>/results/` for this bundle, on the current Ray cluster.

    `settings` reach the workers explicitly (their environment may differ from the driver's);
    `runtime_env` is added to the read and explain workers (e.g. credentials for a test S3).
    `udf` is the callable class run per batch (ExplainBatch; tests pass a variant).
    """
    import ray
    from ray.data.expressions import col

    from raygan.data.shards import read_table
    from raygan.explain.results import RESULTS_DIR, ExplainSummary, existing_keys

    settings = settings if settings is not None else StorageSettings.from_env()
    start = time.monotonic()
    bundle_id = bundle_id_of(bundle_uri, settings=settings, no_encoder=config.no_encoder)
    ids = read_table(input_uri, columns=["image_id"], settings=settings)["image_id"].to_pylist()  # also checks schema
    done = {i for i, b in existing_keys(out_uri, settings=settings) if b == bundle_id}.intersection(ids)
    remove_stale_temps(out_uri, settings=settings)
    todo = len(ids) - len(done)

    ok = error = 0
    if todo:
        ray.data.DataContext.get_current().enable_progress_bars = config.progress
        fs, path = storage.filesystem(input_uri, settings)
        extra = {"runtime_env": runtime_env} if runtime_env else {}
        ds = ray.data.read_parquet(path, filesystem=fs, **extra)
        if done:
            ds = ds.filter(expr=col("image_id").not_in(sorted(done)))
        ds = ds.map_batches(
            udf,
            batch_size=config.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(min_size=config.min_actors, max_size=config.max_actors),
            num_cpus=config.num_cpus,
            num_gpus=config.num_gpus,
            fn_constructor_args=(bundle_uri, out_uri),
            fn_constructor_kwargs={
                "settings": settings, "num_cpus": config.num_cpus, "attributions": config.attributions,
                "device": "cuda" if config.num_gpus > 0 else "cpu", "no_encoder": config.no_encoder,
            },
            **extra,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            statuses = batch["status"].to_pylist()
            ok += statuses.count("ok")
            error += statuses.count("error")
    if ok + error != todo:
        raise RuntimeError(f"bulk run wrote {ok + error} result rows for {todo} rows to do; rerun to finish")
    seconds = time.monotonic() - start
    summary = ExplainSummary(rows_in=len(ids), ok=ok, error=error, skipped=len(done), seconds=seconds,
                             images_per_s=(ok + error) / seconds if seconds > 0 else 0.0, bundle_id=bundle_id,
                             results_uri=storage.join(out_uri, RESULTS_DIR))
    _write_run_record(input_uri, bundle_uri, out_uri, config, summary, settings=settings)
    return summary


def _write_run_record(input_uri: str, bundle_uri: str, out_uri: str, config: BulkConfig, summary: ExplainSummary, *,
                      settings: StorageSettings) -> None:
    """<out>/runs/bulk-<UTC time>.json: the run's inputs, config and summary (rule: every run writes its config)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    storage.write_json(storage.join(out_uri, "runs", f"bulk-{stamp}-{uuid.uuid4().hex[:6]}.json"), {
        "input": input_uri, "bundle": bundle_uri, "config": dataclasses.asdict(config),
        "summary": dataclasses.asdict(summary),
    }, settings=settings)


__all__ = ["BulkConfig", "ExplainBatch", "block_name", "bundle_id_of", "explain_bulk",
           "remove_stale_temps", "write_block"]
