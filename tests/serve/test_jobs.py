"""The shard-job runner: queued -> running -> done/failed, concurrency, no swallowed errors."""

from __future__ import annotations

import logging
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


def test_stored_records_answer_after_a_restart_and_unfinished_jobs_resume(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="raygan.service.jobs")
    records = str(tmp_path / "jobs")
    gate, calls = threading.Event(), []

    def stuck(inp: str, out: str) -> FakeSummary:  # the first service dies while this job runs
        gate.wait(10)
        raise RuntimeError("the first runner was stopped")

    first = JobRunner(stuck, records_uri=records)
    done_before = JobRunner(lambda i, o: FakeSummary(2, 2, 0, 0, f"{o}/results"), records_uri=records)
    finished = done_before.submit("/in", "/finished")
    wait(done_before, finished.job_id, ("done",))
    done_before.shutdown()
    running = first.submit("/in", "/out")
    queued = first.submit("/in", "/out2")  # concurrency 1: still waiting when the service goes
    wait(first, running.job_id, ("running",))

    def work(inp: str, out: str) -> FakeSummary:
        calls.append(out)
        return FakeSummary(rows_in=3, ok=3, error=0, skipped=1, results_uri=f"{out}/results")

    second = JobRunner(work, records_uri=records)  # a restarted service: same records, new memory
    assert wait(second, running.job_id, ("done",)) == "done" and wait(second, queued.job_id, ("done",)) == "done"
    assert sorted(calls) == ["/out", "/out2"]  # the unfinished jobs ran again; the finished one did not
    resumed = second.get(running.job_id)
    assert resumed.resumed == 1 and resumed.to_json()["counts"]["skipped"] == 1
    old = second.get(finished.job_id)  # known from storage only
    assert old is not None and old.state == "done" and old.resumed == 0 and old.results_uri == "/finished/results"
    assert second.get("0" * 32) is None
    assert "resuming shard job" in caplog.text
    gate.set()
    first.shutdown()
    second.shutdown()


def test_a_job_that_cannot_be_stored_is_refused_not_lost(tmp_path) -> None:
    blocker = tmp_path / "jobs"
    blocker.write_text("a file where the records folder should be")
    runner = JobRunner(lambda i, o: FakeSummary(1, 1, 0, 0, o), records_uri=str(blocker / "records"))
    with pytest.raises(OSError):
        runner.submit("/in", "/out")
    assert runner._jobs == {}  # nothing accepted, nothing scheduled
    runner.shutdown()
