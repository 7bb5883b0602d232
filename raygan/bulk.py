"""Bulk explanation of Parquet image shards with Ray Data, in work units, resumable after a crash.

    list the input .parquet files and their row counts (Parquet footers only)
      -> cut each file's rows not yet done into work units: (file, rows [start, stop)), <= rows_per_file rows
      -> ray.data.from_items(units) -> map_batches(ExplainUnit, batch_size=1, actor pool, GPUs when asked)
      -> each unit: read only its row range, explain it in batch_size chunks, write ONE results file

Rows are built by `raygan.explain.results.explain_rows` (the same code as `raygan explain`), so
the results contract holds: one row per input row, bad images become status "error" rows. The
artifacts policy (`BulkConfig.artifacts`) decides which ok rows also get PNGs.

Record of finished work: the results file names themselves. A unit's file is named
`part-<bundle hash>-<input file hash>-<start>-<stop>.parquet`, so listing `<out>/results/` (one
name per unit, a few hundred for a million rows) says which row ranges of which input file this
bundle has finished; nothing reads the rows of earlier results, and no per-image_id filter is
built. A different bundle has another hash and gets its own files. Input files are taken as
immutable: a recorded range past a file's end stops the job with a clear message.

Exactly once: a unit's file appears whole or not at all (locally written under a temporary
hidden name and renamed; an S3 object becomes visible only when its upload completes), and a
retried unit (Ray Data retries the tasks of an actor that died, e.g. with its node) writes the
same name again, replacing rather than adding. A killed actor or a crashed job therefore loses
at most the units in progress; a rerun skips every finished unit's range, cuts the rest (also
with another rows_per_file) and ends with every input row exactly once. One bulk job per output
at a time.

Results written by other writers (`raygan explain`, or bulk jobs before work units: any other
file name) are still honoured: their (image_id, bundle_id) rows for this bundle are read once and
skipped inside the units, as before.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raygan import storage
from raygan.explain.results import ARTIFACT_POLICIES, ArtifactPolicy
from raygan.storage import StorageSettings

if TYPE_CHECKING:
    from raygan.explain.results import ExplainSummary

TMP_PREFIX = storage.TMP_PREFIX  # temporary result files a killed local run may leave behind
UNIT_FILE = re.compile(r"^part-(?P<bundle>[0-9a-f]{12})-(?P<input>[0-9a-f]{12})-(?P<start>\d{12})-(?P<stop>\d{12})"
                       r"\.parquet$")  # a work unit's results file; any other name is an earlier writer's
FOOTER_THREADS = 16  # input footers read at once (S3 round trips, not CPU)


@dataclass(frozen=True)
class BulkConfig:
    """How a bulk explanation job uses the cluster and what it writes."""

    batch_size: int = 16  # rows per Explainer call
    rows_per_file: int = 2048  # rows per work unit and its one results file (a unit is also what a crash loses)
    artifacts: ArtifactPolicy = "flagged"  # PNGs for: no row, the rows worth a look (worth_a_look), or every ok row
    min_actors: int = 1  # actor-pool floor (each actor holds one Explainer)
    max_actors: int = 1  # actor-pool ceiling
    num_gpus: float = 0.0  # GPUs per actor (0 = CPU)
    num_cpus: float = 1.0  # CPUs per actor; also its torch thread count
    attributions: bool = True  # compute Grad-CAM and Integrated Gradients (they only feed the PNG maps)
    progress: bool = True  # show Ray Data's progress bars
    no_encoder: bool = False  # invert from scratch even when the bundle has an encoder

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.min_actors < 1 or self.max_actors < self.min_actors:
            raise ValueError(f"need batch_size >= 1 and 1 <= min_actors <= max_actors, got {self}")
        if self.rows_per_file < 1:
            raise ValueError(f"rows_per_file must be >= 1, got {self.rows_per_file}")
        if self.artifacts not in ARTIFACT_POLICIES:
            raise ValueError(f"artifacts must be one of {get_args(ArtifactPolicy)}, got {self.artifacts!r}")
        if self.num_cpus <= 0 or self.num_gpus < 0:
            raise ValueError(f"need num_cpus > 0 and num_gpus >= 0, got {self.num_cpus}, {self.num_gpus}")


@dataclass(frozen=True)
class WorkUnit:
    """Rows [start, stop) of one input Parquet file: what one actor call explains into one results file."""

    input_file: str  # URI of the input .parquet file
    start: int  # first row (0-based, in the file)
    stop: int  # one past the last row
    name: str  # its results file name under <out>/results/ (unit_name)


def bundle_id_of(bundle_uri: str, *, settings: StorageSettings | None = None, no_encoder: bool = False) -> str:
    """The bundle_id an Explainer built from this bundle's default settings writes (reads bundle.json only);
    it starts from the bundle's encoder when there is one, unless `no_encoder`."""
    from raygan.bundle import bundle_id_of_meta, read_meta

    return bundle_id_of_meta(read_meta(bundle_uri, settings=settings), no_encoder=no_encoder)


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def input_key(input_file: str) -> str:
    """12-hex key of an input file: its location (s3://bucket/key, or the absolute path of a path or file:// URI)."""
    uri = str(input_file)
    return _hash12("s3://" + uri[len("s3://"):].strip("/") if storage.is_remote(uri) else storage.local_path(uri))


def unit_name(bundle_id: str, input_file: str, start: int, stop: int) -> str:
    """`part-<bundle>-<input>-<start>-<stop>.parquet`: the same rows of the same file for the same bundle always
    get the same name, so a retried unit replaces its own file and a listing tells what is done."""
    if not 0 <= start < stop:
        raise ValueError(f"need 0 <= start < stop, got {start}, {stop}")
    return f"part-{_hash12(bundle_id)}-{input_key(input_file)}-{start:012d}-{stop:012d}.parquet"


def _input_files(input_uri: str, *, settings: StorageSettings) -> list[tuple[str, int]]:
    """(URI, rows) of each input .parquet file, sorted, from the footers only; checks each file's schema."""
    from raygan.data.shards import check_schema

    files = storage.list_files(input_uri, suffix=".parquet", settings=settings)
    if not files:
        raise FileNotFoundError(f"no .parquet files at {input_uri}")

    def footer(uri: str) -> tuple[str, int]:
        fs, path = storage.filesystem(uri, settings)
        meta = pq.read_metadata(path, filesystem=fs)
        check_schema(meta.schema.to_arrow_schema(), uri)
        return uri, meta.num_rows

    with ThreadPoolExecutor(max_workers=FOOTER_THREADS) as pool:
        return list(pool.map(footer, files))


def plan_units(files: list[tuple[str, int]], finished: list[str], bundle_id: str, *,
               rows_per_file: int) -> tuple[list[WorkUnit], int]:
    """Work units covering every row of `files` not in a `finished` results file of this bundle, and the rows done.

    `files` are (URI, rows); `finished` are results file names. Each file's unfinished row ranges
    are cut into units of at most `rows_per_file` rows, so a rerun with another rows_per_file still
    explains each row once. Raises ValueError when recorded ranges overlap or pass a file's end.
    """
    bundle = _hash12(bundle_id)
    done: dict[str, list[tuple[int, int]]] = {}
    for name in finished:
        m = UNIT_FILE.match(name)
        if m and m["bundle"] == bundle:
            done.setdefault(m["input"], []).append((int(m["start"]), int(m["stop"])))
    units: list[WorkUnit] = []
    done_rows = 0
    for uri, rows in files:
        cursor = 0
        for start, stop in sorted(done.get(input_key(uri), [])):
            if start < cursor or stop > rows:
                raise ValueError(f"results for {uri} record rows [{start}, {stop}) that overlap others or pass its "
                                 f"{rows} rows: the input file changed, or two jobs wrote to this output")
            units += _cut(uri, cursor, start, bundle_id, rows_per_file)
            done_rows += stop - start
            cursor = stop
        units += _cut(uri, cursor, rows, bundle_id, rows_per_file)
    return units, done_rows


def _cut(uri: str, start: int, stop: int, bundle_id: str, size: int) -> list[WorkUnit]:
    """[start, stop) of `uri` as units of at most `size` rows."""
    return [WorkUnit(uri, lo, min(lo + size, stop), unit_name(bundle_id, uri, lo, min(lo + size, stop)))
            for lo in range(start, stop, size)]


def read_unit(unit: WorkUnit, *, batch_size: int, settings: StorageSettings | None = None) -> Iterator[pa.Table]:
    """The unit's rows in tables of `batch_size` rows (the last may be shorter), reading only the row groups
    that hold them and streaming them, so an actor never holds more than about one batch of images."""
    fs, path = storage.filesystem(unit.input_file, settings)
    with fs.open_input_file(path) as f:
        parquet = pq.ParquetFile(f)
        groups, first, offset = [], None, 0
        for g in range(parquet.metadata.num_row_groups):
            n = parquet.metadata.row_group(g).num_rows
            if offset < unit.stop and offset + n > unit.start:
                groups.append(g)
                first = offset if first is None else first
            offset += n
        if offset < unit.stop:
            raise RuntimeError(f"{unit.input_file} has {offset} rows, fewer than the unit's [{unit.start}, "
                               f"{unit.stop}): the input file changed during the job")
        pending: list[pa.RecordBatch] = []
        position = first or 0  # file row of the next batch read
        for batch in parquet.iter_batches(batch_size=batch_size, row_groups=groups):
            lo, hi = max(unit.start, position), min(unit.stop, position + batch.num_rows)
            if lo < hi:
                pending.append(batch.slice(lo - position, hi - lo))
            position += batch.num_rows
            while sum(b.num_rows for b in pending) >= batch_size:
                table = pa.Table.from_batches(pending)
                yield table.slice(0, batch_size)
                pending = table.slice(batch_size).to_batches()
            if position >= unit.stop:
                break
        if pending:
            yield pa.Table.from_batches(pending)


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


UNIT_RESULT = pa.schema([  # what ExplainUnit returns per unit: counts, and the first failures for the summary
    ("name", pa.string()), ("ok", pa.int64()), ("error", pa.int64()), ("skipped", pa.int64()),
    ("failed_ids", pa.list_(pa.string())), ("failed_errors", pa.list_(pa.string())),
])


class ExplainUnit:
    """Ray Data callable class: builds the Explainer once per actor, then explains and writes each work unit."""

    def __init__(self, bundle_uri: str, out_uri: str, *, settings: StorageSettings | None, num_cpus: float,
                 device: str, attributions: bool, batch_size: int, artifacts: ArtifactPolicy,
                 skip: Any = None, no_encoder: bool = False) -> None:
        import torch

        from raygan.bundle import load_bundle
        from raygan.explain.explainer import Explainer

        torch.set_num_threads(max(1, int(num_cpus)))  # = reserved CPUs: actors sharing a node do not oversubscribe it
        self.out_uri = out_uri
        self.settings = settings
        self.batch_size = batch_size
        self.artifacts = artifacts
        self.explainer = Explainer.from_bundle(load_bundle(bundle_uri, settings=settings), device=device,
                                               attributions=attributions, no_encoder=no_encoder)
        if skip is not None:  # an ObjectRef of earlier writers' (image_id, bundle_id) keys
            import ray

            skip = ray.get(skip)
        self.skip: set[tuple[str, str]] = skip or set()

    def __call__(self, units: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self.explain_unit(WorkUnit(**u)) for u in units.to_pylist()], schema=UNIT_RESULT)

    def explain_unit(self, unit: WorkUnit) -> dict[str, Any]:
        """Explain the unit's rows and write them as its one results file; returns a UNIT_RESULT row."""
        from raygan.explain.results import FAILURES_KEPT, RESULTS_DIR, explain_rows, result_schema

        rows: list[dict[str, Any]] = []
        schema = None
        for batch in read_unit(unit, batch_size=self.batch_size, settings=self.settings):
            schema = schema or result_schema(batch.schema)
            rows += explain_rows(batch, self.out_uri, explainer=self.explainer, skip=self.skip,
                                 settings=self.settings, artifacts=self.artifacts)
        assert schema is not None  # a unit has >= 1 row, so read_unit yielded >= 1 batch
        # Written even when earlier writers had every row (0 rows): the file is also the unit's done-marker.
        storage.write_parquet(pa.Table.from_pylist(rows, schema=schema),
                              storage.join(self.out_uri, RESULTS_DIR, unit.name), self.settings)
        failed = [r for r in rows if r["status"] == "error"][:FAILURES_KEPT]
        ok = sum(r["status"] == "ok" for r in rows)
        return {"name": unit.name, "ok": ok, "error": len(rows) - ok, "skipped": unit.stop - unit.start - len(rows),
                "failed_ids": [r["image_id"] for r in failed], "failed_errors": [r["error"] for r in failed]}


def _earlier_writers_keys(out_uri: str, names: list[str], bundle_id: str, *,
                          settings: StorageSettings) -> set[tuple[str, str]]:
    """(image_id, bundle_id) rows of this bundle in results files not written by work units (older writers)."""
    from raygan.explain.results import RESULTS_DIR

    keys: set[tuple[str, str]] = set()
    for name in names:
        if UNIT_FILE.match(name):
            continue
        fs, path = storage.filesystem(storage.join(out_uri, RESULTS_DIR, name), settings)
        table = pq.read_table(path, filesystem=fs, columns=["image_id", "bundle_id"])
        keys.update((i, b) for i, b in zip(table["image_id"].to_pylist(), table["bundle_id"].to_pylist(), strict=True)
                    if b == bundle_id)
    return keys


def explain_bulk(
    input_uri: str,
    bundle_uri: str,
    out_uri: str,
    *,
    config: BulkConfig = BulkConfig(),
    settings: StorageSettings | None = None,
    runtime_env: dict[str, Any] | None = None,
    udf: type = ExplainUnit,
) -> ExplainSummary:
    """Explain every input row not yet in `<out>/results/` for this bundle, on the current Ray cluster.

    `settings` reach the workers explicitly (their environment may differ from the driver's);
    `runtime_env` is added to the explain workers (e.g. credentials for a test S3).
    `udf` is the callable class run per work unit (ExplainUnit; tests pass a variant).
    """
    import ray

    from raygan.explain.results import FAILURES_KEPT, RESULTS_DIR, ExplainSummary, RowFailure

    settings = settings if settings is not None else StorageSettings.from_env()
    start = time.monotonic()
    bundle_id = bundle_id_of(bundle_uri, settings=settings, no_encoder=config.no_encoder)
    files = _input_files(input_uri, settings=settings)
    remove_stale_temps(out_uri, settings=settings)
    names = [uri.rsplit("/", 1)[-1] for uri in storage.list_files(storage.join(out_uri, RESULTS_DIR),
                                                                   suffix=".parquet", settings=settings)]
    units, done_rows = plan_units(files, names, bundle_id, rows_per_file=config.rows_per_file)
    earlier = _earlier_writers_keys(out_uri, names, bundle_id, settings=settings)

    ok = error = skipped = 0
    failures: list[RowFailure] = []
    if units:
        ray.data.DataContext.get_current().enable_progress_bars = config.progress
        extra = {"runtime_env": runtime_env} if runtime_env else {}
        # One block per unit, so each unit is its own task and spreads over the actors.
        ds = ray.data.from_items([dataclasses.asdict(u) for u in units], override_num_blocks=len(units))
        ds = ds.map_batches(
            udf,
            batch_size=1,
            batch_format="pyarrow",
            # One unit in flight per actor: a unit runs minutes, and one queued behind a busy actor would idle another.
            compute=ray.data.ActorPoolStrategy(min_size=config.min_actors, max_size=config.max_actors,
                                               max_tasks_in_flight_per_actor=1),
            num_cpus=config.num_cpus,
            num_gpus=config.num_gpus,
            fn_constructor_args=(bundle_uri, out_uri),
            fn_constructor_kwargs={
                "settings": settings, "num_cpus": config.num_cpus, "attributions": config.attributions,
                "device": "cuda" if config.num_gpus > 0 else "cpu", "batch_size": config.batch_size,
                "artifacts": config.artifacts, "skip": ray.put(earlier) if earlier else None,
                "no_encoder": config.no_encoder,
            },
            **extra,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for r in batch.to_pylist():
                ok, error, skipped = ok + r["ok"], error + r["error"], skipped + r["skipped"]
                failures += [RowFailure(i, e) for i, e in zip(r["failed_ids"], r["failed_errors"], strict=True)]
                failures = failures[:FAILURES_KEPT]
    todo = sum(u.stop - u.start for u in units)
    if ok + error + skipped != todo:
        raise RuntimeError(f"bulk run accounted for {ok + error + skipped} of its {todo} rows to do; rerun to finish")
    seconds = time.monotonic() - start
    summary = ExplainSummary(rows_in=sum(n for _, n in files), ok=ok, error=error, skipped=done_rows + skipped,
                             seconds=seconds, images_per_s=(ok + error) / seconds if seconds > 0 else 0.0,
                             bundle_id=bundle_id, results_uri=storage.join(out_uri, RESULTS_DIR),
                             failures=tuple(failures))
    _write_run_record(input_uri, bundle_uri, out_uri, config, summary, units=len(units), settings=settings)
    return summary


def _write_run_record(input_uri: str, bundle_uri: str, out_uri: str, config: BulkConfig, summary: ExplainSummary, *,
                      units: int, settings: StorageSettings) -> None:
    """<out>/runs/bulk-<UTC time>.json: the run's inputs, config, units and summary (rule: every run writes its
    config)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    storage.write_json(storage.join(out_uri, "runs", f"bulk-{stamp}-{uuid.uuid4().hex[:6]}.json"), {
        "input": input_uri, "bundle": bundle_uri, "config": dataclasses.asdict(config), "units": units,
        "summary": dataclasses.asdict(summary),
    }, settings=settings)


__all__ = ["BulkConfig", "ExplainUnit", "UNIT_FILE", "WorkUnit", "bundle_id_of", "explain_bulk", "input_key",
           "plan_units", "read_unit", "remove_stale_temps", "unit_name"]
