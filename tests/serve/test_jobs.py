"""The shard-job runner: queued -> running -> done/failed, concurrency, no swallowed errors."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from raygan.service.jobs import JobRunner


@dataclass(frozen=True)
class FakeSummary:
    rows_in: int
    ok: int
    error: int
    skipped: int
    results_uri: str


def wait(runner: JobRunner, job_id: str, states: tuple[str, ...], timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = runner.get(job_id)
        assert record is not None
        if record.state in states:
            return record.state
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} never reached {states}")


def test_jobs_queue_run_and_finish_in_order() -> None:
    gate = threading.Event()

    def work(inp: str, out: str) -> FakeSummary:
        gate.wait(10)
        return FakeSummary(rows_in=3, ok=2, error=1, skipped=0, results_uri=f"{out}/results")

    runner = JobRunner(work, concurrency=1)
    first = runner.submit("/in", "/out1")
    second = runner.submit("/in", "/out2")
    assert first.state == "queued" and len(first.job_id) == 32
    assert wait(runner, first.job_id, ("running",)) == "running"
    assert runner.get(second.job_id).state == "queued"  # concurrency 1
    gate.set()
    assert wait(runner, second.job_id, ("done",)) == "done"
    done = runner.get(first.job_id).to_json()
    assert done["counts"] == {"rows_in": 3, "ok": 2, "error": 1, "skipped": 0}
    assert done["results_uri"] == "/out1/results" and done["artifacts_uri"].endswith("out1/artifacts")
    assert done["started"] >= done["submitted"] and done["finished"] >= done["started"]
    assert runner.get("0" * 32) is None
    runner.shutdown()


def test_a_failing_job_is_reported_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    def work(inp: str, out: str) -> FakeSummary:
        raise FileNotFoundError(f"no .parquet files at {inp}")

    runner = JobRunner(work)
    job = runner.submit("/missing", "/out")
    assert wait(runner, job.job_id, ("done", "failed")) == "failed"
    assert runner.get(job.job_id).message == "FileNotFoundError: no .parquet files at /missing"
    assert "shard job" in caplog.text  # logged with its traceback, not swallowed
    runner.shutdown()


def test_old_finished_jobs_are_forgotten_first() -> None:
    runner = JobRunner(lambda i, o: FakeSummary(1, 1, 0, 0, o), keep=2)
    ids = []
    for k in range(4):
        ids.append(runner.submit("/in", f"/o{k}").job_id)
        wait(runner, ids[-1], ("done",))
    assert runner.get(ids[0]) is None and runner.get(ids[-1]) is not None
    runner.shutdown()
