"""Shard jobs of the service: accepted at once, run in the background, polled by id.

`JobRunner` keeps job records in memory and runs at most `concurrency` jobs at a time on a
thread pool; the rest wait as "queued". The work itself is a callable passed in (in the
service: `raygan.explain.results.explain_shards` with the replica's Explainer), so tests can
pass a small one. A job that raises becomes "failed" with the error message, and the error is
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

    def to_json(self) -> dict[str, Any]:
        """The JobStatus fields (counts grouped)."""
        data = dataclasses.asdict(self)
        data["counts"] = {k: data.pop(k) for k in ("rows_in", "ok", "error", "skipped")}
        return data


class JobRunner:
    """Runs `work(input_uri, output_uri) -> Summary` in the background, keeping records by job id."""

    def __init__(self, work: Callable[[str, str], Summary], *, concurrency: int = 1, keep: int = 1000) -> None:
        if concurrency < 1 or keep < 1:
            raise ValueError(f"concurrency and keep must be >= 1, got {concurrency} and {keep}")
        self._work = work
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="shard-job")
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, JobRecord] = OrderedDict()
        self._keep = keep

    def submit(self, input_uri: str, output_uri: str) -> JobRecord:
        """Accept a job (state "queued") and schedule it; returns its record."""
        record = JobRecord(job_id=uuid.uuid4().hex, input_uri=input_uri, output_uri=output_uri,
                           state="queued", submitted=time.time())
        with self._lock:
            self._jobs[record.job_id] = record
            self._forget_old()
        self._pool.submit(self._run, record.job_id)
        return record

    def get(self, job_id: str) -> JobRecord | None:
        """The latest record of `job_id`, or None when unknown."""
        with self._lock:
            return self._jobs.get(job_id)

    def shutdown(self) -> None:
        """Stop accepting work; running jobs finish in their threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _update(self, job_id: str, **changes: Any) -> JobRecord:
        with self._lock:
            record = dataclasses.replace(self._jobs[job_id], **changes)
            self._jobs[job_id] = record
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
