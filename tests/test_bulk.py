"""Bulk explanation with Ray Data: every row exactly once, also after a crash, locally and on S3."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from raygan import storage
from raygan.bulk import BulkConfig, ExplainBatch, block_name, bundle_id_of, explain_bulk, write_block
from raygan.data.phantoms import PhantomConfig, write_phantoms
from raygan.data.shards import read_table, write_shards
from raygan.explain.results import RESULT_SCHEMA

CONFIG = BulkConfig(batch_size=4, progress=False, attributions=False)  # attributions: one test keeps them


def tiny_bundle(out: Path) -> str:
    """The tiny preset's generator + an untrained small_cnn as a bundle with a short inversion."""
    from bundle_helpers import save_tiny_bundle

    return save_tiny_bundle(out, steps=2)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bulk")


@pytest.fixture(scope="module")
def bundle(workdir: Path) -> str:
    return tiny_bundle(workdir)


@pytest.fixture(scope="module")
def rows(workdir: Path) -> pa.Table:
    """13 rows: 12 phantoms (32 px) and one whose image is not an image."""
    write_phantoms(PhantomConfig(n=12, size=32, seed=0), str(workdir / "phantoms"))
    table = read_table(str(workdir / "phantoms"))
    bad = {**table.slice(0, 1).to_pylist()[0], "image_id": "corrupt", "image": b"not an image"}
    return pa.concat_tables([table, pa.Table.from_pylist([bad], schema=table.schema)])


def results_of(out: str, settings: storage.StorageSettings | None = None) -> pa.Table:
    files = storage.list_files(storage.join(out, "results"), suffix=".parquet", settings=settings)
    tables = []
    for f in files:
        fs, path = storage.filesystem(f, settings)
        tables.append(pq.read_table(path, filesystem=fs))
    return pa.concat_tables(tables)


def assert_every_row_once(results: pa.Table, rows: pa.Table) -> None:
    ids = results["image_id"].to_pylist()
    assert sorted(ids) == sorted(rows["image_id"].to_pylist())  # each row exactly once
    errors = results.filter(pc.equal(results["status"], "error"))
    assert errors["image_id"].to_pylist() == ["corrupt"] and "cannot decode" in errors["error"][0].as_py()
    assert set(RESULT_SCHEMA.names) <= set(results.column_names) and "mask" in results.column_names  # passthrough


def test_write_block_is_named_by_its_rows_and_leaves_no_temp(tmp_path: Path) -> None:
    assert block_name("b1", ["x", "y"]) == block_name("b1", ["x", "y"]) != block_name("b2", ["x", "y"])
    row = {name: None for name in RESULT_SCHEMA.names} | {"image_id": "x", "bundle_id": "b1", "status": "ok"}
    uri = write_block([row], str(tmp_path), schema=RESULT_SCHEMA)
    assert uri is not None and uri.endswith(block_name("b1", ["x"]))
    assert [p.name for p in (tmp_path / "results").iterdir()] == [Path(uri).name]
    assert write_block([], str(tmp_path), schema=RESULT_SCHEMA) is None


def test_bulk_explains_every_row_once_and_a_rerun_skips_them(ray_session: None, workdir: Path, bundle: str,
                                                             rows: pa.Table, capsys: pytest.CaptureFixture[str]) -> None:
    from raygan.cli import main

    src, out = str(workdir / "in-local"), str(workdir / "out-local")
    write_shards(rows, src, rows_per_shard=5)
    summary = explain_bulk(src, bundle, out, config=dataclasses.replace(CONFIG, attributions=True))
    assert (summary.rows_in, summary.ok, summary.error, summary.skipped) == (13, 12, 1, 0)
    assert summary.images_per_s > 0 and summary.bundle_id == bundle_id_of(bundle)
    results = results_of(out)
    assert_every_row_once(results, rows)
    assert set(results["bundle_id"].to_pylist()) == {summary.bundle_id}
    ok = results.filter(pc.equal(results["status"], "ok")).to_pylist()[0]
    assert len(ok["traversal_probs"]) == 5 and Path(ok["uri_figure"]).exists() and Path(ok["uri_ig"]).exists()
    files = sorted((Path(out) / "results").iterdir())
    capsys.readouterr()
    # The rerun goes through the command line (`raygan explain-bulk`, also what jobs/explain.py runs).
    assert main(["explain-bulk", "--input", src, "--bundle", bundle, "--out", out, "--batch-size", "3",
                 "--no-progress", "--no-attributions", "--actors", "2"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (again["rows_in"], again["ok"], again["error"], again["skipped"]) == (13, 0, 0, 13)
    assert sorted((Path(out) / "results").iterdir()) == files  # nothing new written
    record = json.loads(sorted((Path(out) / "runs").iterdir())[-1].read_text())
    assert record["summary"]["skipped"] == 13 and record["config"]["batch_size"] == 3
    assert (record["config"]["max_actors"], record["config"]["attributions"]) == (2, False)


class CrashingExplainBatch(ExplainBatch):
    """Raises on its third batch the first time (a marker file remembers), like a worker killed mid-job."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls = 0

    def __call__(self, batch: pa.Table) -> pa.Table:
        self.calls += 1
        marker = Path(self.out_uri) / "crashed-once"
        if self.calls == 3 and not marker.exists():
            marker.write_text("x")
            raise RuntimeError("simulated crash in the middle of the job")
        return super().__call__(batch)


def test_a_crashed_job_rerun_ends_with_every_row_exactly_once(ray_session: None, workdir: Path, bundle: str,
                                                               rows: pa.Table) -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actor needs this test's class
    src, out = str(workdir / "in-crash"), workdir / "out-crash"
    write_shards(rows, src, rows_per_shard=13)
    with pytest.raises(Exception, match="simulated crash"):
        explain_bulk(src, bundle, str(out), config=CONFIG, udf=CrashingExplainBatch)
    partial = results_of(str(out))
    assert 0 < partial.num_rows < rows.num_rows  # the first batches were written, whole
    (out / "results" / ".tmp-deadbeef-part-x.parquet.partial").write_bytes(b"PAR1 half a file")  # a killed write
    summary = explain_bulk(src, bundle, str(out), config=CONFIG, udf=CrashingExplainBatch)
    assert summary.skipped == partial.num_rows and summary.ok + summary.error + summary.skipped == 13
    assert_every_row_once(results_of(str(out)), rows)
    assert not [p for p in (out / "results").iterdir() if p.name.startswith(".tmp-")]


def test_bulk_reads_and_writes_s3(ray_session: None, s3_bucket: str, s3_endpoint: str, workdir: Path, bundle: str,
                                  rows: pa.Table) -> None:
    settings = storage.StorageSettings(endpoint_url=s3_endpoint)
    s3_bundle = f"{s3_bucket}/bundle"
    storage.copy_dir(bundle, s3_bundle, settings=settings)
    src, out = f"{s3_bucket}/shards", f"{s3_bucket}/explained"
    rows = rows.slice(rows.num_rows - 6)  # 5 phantoms and the corrupt row
    write_shards(rows, src, rows_per_shard=4, settings=settings)
    # Ray's workers started before this test's S3 server: hand them its credentials explicitly.
    env = {"env_vars": {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}}
    summary = explain_bulk(src, s3_bundle, out, config=CONFIG, settings=settings, runtime_env=env)
    assert (summary.rows_in, summary.ok, summary.error) == (6, 5, 1)
    results = results_of(out, settings)
    assert_every_row_once(results, rows)
    ok = results.filter(pc.equal(results["status"], "ok")).to_pylist()[0]
    assert ok["uri_figure"].startswith(f"{out}/artifacts/") and ok["uri_gradcam"] is None
    assert storage.read_bytes(ok["uri_figure"], settings=settings).startswith(b"\x89PNG")
