"""Shard jobs of the service: accepted at once, run in the background, polled by id.

`JobRunner` keeps job records in memory and runs at most `concurrency` jobs at a time on a
thread pool; the rest wait as "queued". Given `records_uri` (a local folder or an s3:// prefix), it
also writes every record there as `<job_id>.json` at each change, answers for jobs it no longer
holds from there, and on start-up takes back the jobs a previous runner (a service that was
restarted, a replica that died) left queued or running: they run again, which loses nothing and
repeats nothing, since the work skips the rows already in its results. The work itself is a
callable passed in (in the service: `raygan.bulk.explain_bulk`, the Ray Data job of `raygan
explain-bulk`), so tests can pass a small one. A job that raises becomes "failed" with the error message, and the error is
logged with its traceback: nothing is swallowed.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from raygan import storage

log = logging.getLogger(__name__)


class Summary(Protocol):
    """What a job's work returns (raygan.explain.results.ExplainSummary has these fields)."""

    rows_in: int
    ok: int
    error: int
    skipped: int
    results_uri: str


@dataclass(frozen=True)
class JobRecord:
    """A snapshot of one shard job."""

    job_id: str  # 32 hex characters
    input_uri: str  # normalised input prefix
    output_uri: str  # normalised output prefix
    state: str  # "queued", "running", "done" or "failed"
    submitted: float  # Unix time it was accepted
    started: float | None = None  # Unix time it started running
    finished: float | None = None  # Unix time it ended (done or failed)
    rows_in: int | None = None  # input rows (when done)
    ok: int | None = None  # rows explained
    error: int | None = None  # rows written with status "error"
    skipped: int | None = None  # rows already in the results for this bundle
    results_uri: str | None = None  # <output>/results (when done)
    artifacts_uri: str | None = None  # <output>/artifacts (when done)
    message: str | None = None  # why it failed
    resumed: int = 0  # times a restarted service took the job back and ran it again

    def to_json(self) -> dict[str, Any]:
        """The JobStatus fields (counts grouped)."""
        data = dataclasses.asdict(self)
        data["counts"] = {k: data.pop(k) for k in ("rows_in", "ok", "error", "skipped")}
        return data


class JobRunner:
    """Runs `work(input_uri, output_uri) -> Summary` in the background, keeping records by job id."""

    def __init__(self, work: Callable[[str, str], Summary], *, concurrency: int = 1, keep: int = 1000,
                 records_uri: str | None = None, settings: storage.StorageSettings | None = None) -> None:
        if concurrency < 1 or keep < 1:
            raise ValueError(f"concurrency and keep must be >= 1, got {concurrency} and {keep}")
        self._work = work
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="shard-job")
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, JobRecord] = OrderedDict()
        self._keep = keep
        self._records_uri = records_uri
        self._settings = settings
        if records_uri is not None:
            self._resume()

    def submit(self, input_uri: str, output_uri: str) -> JobRecord:
        """Accept a job (state "queued") and schedule it; returns its record."""
        record = JobRecord(job_id=uuid.uuid4().hex, input_uri=input_uri, output_uri=output_uri,
                           state="queued", submitted=time.time())
        self._save(record)  # stored first (a storage fault refuses the job), so a restart cannot lose an accepted one
        with self._lock:
            self._jobs[record.job_id] = record
            self._forget_old()
        self._pool.submit(self._run, record.job_id)
        return record

    def get(self, job_id: str) -> JobRecord | None:
        """The latest record of `job_id`, or None when unknown (here and, with `records_uri`, in storage)."""
        with self._lock:
            record = self._jobs.get(job_id)
        if record is not None or self._records_uri is None:
            return record
        uri = self._record_uri(job_id)
        return JobRecord(**storage.read_json(uri, self._settings)) if storage.exists(uri, self._settings) else None

    def _record_uri(self, job_id: str) -> str:
        assert self._records_uri is not None
        return storage.join(self._records_uri, f"{job_id}.json")

    def _save(self, record: JobRecord) -> None:
        if self._records_uri is not None:
            storage.write_json(self._record_uri(record.job_id), dataclasses.asdict(record), self._settings)

    def _resume(self) -> None:
        """Take back the jobs stored as queued or running (their runner is gone) and run them again."""
        assert self._records_uri is not None
        stored = []
        for uri in storage.list_files(self._records_uri, suffix=".json", settings=self._settings):
            try:
                stored.append(JobRecord(**storage.read_json(uri, self._settings)))
            except (TypeError, ValueError) as e:  # not a record of ours: leave it, say so
                log.warning("ignoring %s: not a job record (%s)", uri, e)
        for record in sorted(stored, key=lambda r: r.submitted):
            if record.state not in ("queued", "running"):
                continue
            log.info("resuming shard job %s (%s -> %s), left %s by an earlier runner", record.job_id,
                     record.input_uri, record.output_uri, record.state)
            record = dataclasses.replace(record, state="queued", started=None, resumed=record.resumed + 1)
            with self._lock:
                self._jobs[record.job_id] = record
            self._save(record)
            self._pool.submit(self._run, record.job_id)

    def shutdown(self) -> None:
        """Stop accepting work; running jobs finish in their threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _update(self, job_id: str, **changes: Any) -> JobRecord:
        with self._lock:
            record = dataclasses.replace(self._jobs[job_id], **changes)
            self._jobs[job_id] = record
        try:
            self._save(record)
        except Exception:  # the record in memory still answers; a restart will run the job again, at worst
            log.exception("could not store the record of shard job %s (state %s)", job_id, record.state)
        return record

    def _forget_old(self) -> None:
        # Bounded memory: drop the oldest finished jobs beyond `keep` (never a queued or running one).
        finished = [k for k, r in self._jobs.items() if r.state in ("done", "failed")]
        for job_id in finished[: max(0, len(self._jobs) - self._keep)]:
            del self._jobs[job_id]

    def _run(self, job_id: str) -> None:
        record = self._update(job_id, state="running", started=time.time())
        try:
            summary = self._work(record.input_uri, record.output_uri)
        except Exception as e:  # a failed job is reported to its client, not raised into the pool
            log.exception("shard job %s (%s -> %s) failed", job_id, record.input_uri, record.output_uri)
            self._update(job_id, state="failed", finished=time.time(), message=f"{type(e).__name__}: {e}")
            return
        self._update(
            job_id, state="done", finished=time.time(), rows_in=summary.rows_in, ok=summary.ok,
            error=summary.error, skipped=summary.skipped, results_uri=summary.results_uri,
            artifacts_uri=storage.join(record.output_uri, "artifacts"),
        )


__all__ = ["JobRecord", "JobRunner", "Summary"]
