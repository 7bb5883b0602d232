"""Bulk explanation with Ray Data: work units, every row exactly once (also after a crash), artifacts policy,
locally and on S3."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from raygan import storage
from raygan.bulk import BulkConfig, ExplainUnit, WorkUnit, bundle_id_of, explain_bulk, plan_units, read_unit, unit_name
from raygan.data.phantoms import PhantomConfig, write_phantoms
from raygan.data.shards import read_table, write_shards
from raygan.explain.results import RESULT_SCHEMA, existing_keys, worth_a_look, write_results

CONFIG = BulkConfig(batch_size=3, rows_per_file=4, progress=False, attributions=False, artifacts="none")


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
    return pa.concat_tables(tables, promote_options="default")


def assert_every_row_once(results: pa.Table, rows: pa.Table) -> None:
    ids = results["image_id"].to_pylist()
    assert sorted(ids) == sorted(rows["image_id"].to_pylist())  # each row exactly once
    errors = results.filter(pc.equal(results["status"], "error"))
    assert errors["image_id"].to_pylist() == ["corrupt"] and "cannot decode" in errors["error"][0].as_py()
    assert set(RESULT_SCHEMA.names) <= set(results.column_names) and "mask" in results.column_names  # passthrough


def flagged(row: dict) -> bool:
    """worth_a_look, from a result row's columns (the test's own restatement of the definition)."""
    return (not row["monotone"]) or row["used_fallback"] or (row["p_input"] > 0.5 and row["p_counterfactual"] >= 0.5)


def assert_artifacts(results: pa.Table, policy: str) -> None:
    """uri_* set exactly on the rows the policy draws (and the PNG there), null on all others."""
    for r in results.to_pylist():
        drawn = r["status"] == "ok" and (policy == "all" or (policy == "flagged" and flagged(r)))
        assert (r["uri_figure"] is not None) == drawn, (policy, r["image_id"])
        assert (r["uri_counterfactual"] is not None) == drawn and (r["uri_traversal"] is not None) == drawn


def test_units_are_named_by_bundle_file_and_range_and_cover_what_is_not_done(tmp_path: Path) -> None:
    a, b = str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")
    name = unit_name("b1", a, 0, 4)
    assert name == unit_name("b1", a, 0, 4) == unit_name("b1", f"file://{a}", 0, 4)
    assert len({name, unit_name("b2", a, 0, 4), unit_name("b1", b, 0, 4), unit_name("b1", a, 0, 3)}) == 4
    units, done = plan_units([(a, 10), (b, 3)], [], "b1", rows_per_file=4)
    assert [(u.input_file, u.start, u.stop) for u in units] == [(a, 0, 4), (a, 4, 8), (a, 8, 10), (b, 0, 3)]
    assert done == 0 and len(units) == math.ceil(10 / 4) + math.ceil(3 / 4)
    # Finished: a[4, 8) of this bundle, a file of another bundle and an earlier writer's file (both ignored).
    finished = [unit_name("b1", a, 4, 8), unit_name("b2", a, 0, 4), "part-20261202T000000Z-abcdef12.parquet"]
    units, done = plan_units([(a, 10), (b, 3)], finished, "b1", rows_per_file=3)  # another size: gaps re-cut
    assert [(u.input_file, u.start, u.stop) for u in units] == [(a, 0, 3), (a, 3, 4), (a, 8, 10), (b, 0, 3)]
    assert done == 4 and all(u.name == unit_name("b1", u.input_file, u.start, u.stop) for u in units)
    with pytest.raises(ValueError, match="overlap"):
        plan_units([(a, 10)], [unit_name("b1", a, 0, 5), unit_name("b1", a, 4, 8)], "b1", rows_per_file=4)
    with pytest.raises(ValueError, match="input file changed"):
        plan_units([(a, 6)], [unit_name("b1", a, 4, 8)], "b1", rows_per_file=4)


def test_a_unit_reads_exactly_its_rows_in_batches(tmp_path: Path) -> None:
    table = pa.table({"image_id": [f"i{k}" for k in range(20)], "image": [b"x"] * 20})
    path = str(tmp_path / "in.parquet")
    pq.write_table(table, path, row_group_size=6)  # row groups [0, 6) [6, 12) [12, 18) [18, 20)
    batches = list(read_unit(WorkUnit(path, 5, 14, "x"), batch_size=4))
    assert [t.num_rows for t in batches] == [4, 4, 1]
    assert [i for t in batches for i in t["image_id"].to_pylist()] == [f"i{k}" for k in range(5, 14)]


def test_worth_a_look_flags_non_monotone_fallback_and_unflipped_positive_calls(workdir: Path, bundle: str,
                                                                              rows: pa.Table) -> None:
    from raygan.bundle import load_bundle
    from raygan.data.shards import decode_rows
    from raygan.explain.explainer import Explainer

    explainer = Explainer.from_bundle(load_bundle(bundle), device="cpu", attributions=False)
    decoded = decode_rows(rows.slice(0, 1), size=32)
    plain = dataclasses.replace(explainer.explain(decoded.images, image_ids=decoded.image_ids)[0], monotone=True,
                                used_fallback=False, p_input=0.9, p_counterfactual=0.1)
    assert not worth_a_look(plain) and not worth_a_look(dataclasses.replace(plain, p_input=0.2, p_counterfactual=0.6))
    assert worth_a_look(dataclasses.replace(plain, monotone=False))
    assert worth_a_look(dataclasses.replace(plain, used_fallback=True))
    assert worth_a_look(dataclasses.replace(plain, p_counterfactual=0.5))  # a positive call that did not flip


def test_bulk_explains_every_row_once_in_units_and_a_rerun_skips_them(
        ray_session: None, workdir: Path, bundle: str, rows: pa.Table, capsys: pytest.CaptureFixture[str]) -> None:
    from raygan.cli import main

    src, out = str(workdir / "in-local"), str(workdir / "out-local")
    write_shards(rows, src, rows_per_shard=5)  # files of 5, 5 and 3 rows
    config = dataclasses.replace(CONFIG, attributions=True, artifacts="all", max_actors=2, rows_per_file=2)
    summary = explain_bulk(src, bundle, out, config=config)
    assert (summary.rows_in, summary.ok, summary.error, summary.skipped) == (13, 12, 1, 0)
    assert summary.images_per_s > 0 and summary.bundle_id == bundle_id_of(bundle)
    assert [f.image_id for f in summary.failures] == ["corrupt"]
    files = sorted((Path(out) / "results").iterdir())
    assert len(files) == 3 + 3 + 2  # ceil(rows / rows_per_file) per input file
    results = results_of(out)
    assert_every_row_once(results, rows)
    assert_artifacts(results, "all")
    ok = results.filter(pc.equal(results["status"], "ok")).to_pylist()[0]
    assert len(ok["traversal_probs"]) == 5 and Path(ok["uri_figure"]).exists() and Path(ok["uri_ig"]).exists()
    # The single-process path still reads the bulk job's results (its rerun skips them all).
    assert existing_keys(out) == {(i, summary.bundle_id) for i in rows["image_id"].to_pylist()}
    capsys.readouterr()
    # The rerun goes through the command line (`raygan explain-bulk`, also what jobs/explain.py runs).
    assert main(["explain-bulk", "--input", src, "--bundle", bundle, "--out", out, "--batch-size", "3",
                 "--rows-per-file", "3", "--artifacts", "none", "--no-progress", "--no-attributions",
                 "--actors", "2"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (again["rows_in"], again["ok"], again["error"], again["skipped"]) == (13, 0, 0, 13)
    assert sorted((Path(out) / "results").iterdir()) == files  # nothing new written
    record = json.loads(sorted((Path(out) / "runs").iterdir())[-1].read_text())
    assert record["summary"]["skipped"] == 13 and record["config"]["batch_size"] == 3 and record["units"] == 0
    assert (record["config"]["max_actors"], record["config"]["attributions"]) == (2, False)
    assert (record["config"]["rows_per_file"], record["config"]["artifacts"]) == (3, "none")
    assert main(["explain-bulk", "--input", src, "--bundle", bundle, "--out", out, "--rows-per-file", "0"]) == 2
    assert "rows_per_file must be >= 1" in capsys.readouterr().err


class CrashingExplainUnit(ExplainUnit):
    """Raises on its second unit the first time (a marker file remembers), like a worker killed mid-job."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls = 0

    def explain_unit(self, unit: WorkUnit) -> dict:
        self.calls += 1
        marker = Path(self.out_uri) / "crashed-once"
        if self.calls == 2 and not marker.exists():
            marker.write_text("x")
            raise RuntimeError("simulated crash in the middle of the job")
        return super().explain_unit(unit)


def test_a_crashed_job_rerun_ends_with_every_row_exactly_once(ray_session: None, workdir: Path, bundle: str,
                                                               rows: pa.Table) -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actor needs this test's class
    src, out = str(workdir / "in-crash"), workdir / "out-crash"
    write_shards(rows, src, rows_per_shard=13)  # one file, 4 units of <= 4 rows
    with pytest.raises(Exception, match="simulated crash"):
        explain_bulk(src, bundle, str(out), config=CONFIG, udf=CrashingExplainUnit)
    partial = results_of(str(out))
    assert 0 < partial.num_rows < rows.num_rows and partial.num_rows % 4 == 0  # whole units only
    (out / "results" / ".tmp-deadbeef-part-x.parquet.partial").write_bytes(b"PAR1 half a file")  # a killed write
    summary = explain_bulk(src, bundle, str(out), config=CONFIG, udf=CrashingExplainUnit)
    assert summary.skipped == partial.num_rows and summary.ok + summary.error + summary.skipped == 13
    assert_every_row_once(results_of(str(out)), rows)
    assert not [p for p in (out / "results").iterdir() if p.name.startswith(".tmp-")]
    assert len(list((out / "results").iterdir())) == 4 and not (out / "artifacts").exists()  # artifacts "none"
    # A unit lost some other way (its file deleted): the next rerun redoes exactly that unit.
    lost = sorted((out / "results").iterdir())[1]
    lost_rows = pq.read_table(lost).num_rows
    lost.unlink()
    summary = explain_bulk(src, bundle, str(out), config=dataclasses.replace(CONFIG, rows_per_file=3))
    assert (summary.ok + summary.error, summary.skipped) == (lost_rows, 13 - lost_rows)
    assert_every_row_once(results_of(str(out)), rows)


class DyingExplainUnit(ExplainUnit):
    """Its process dies (os._exit, as on a lost node) in the middle of the unit starting at row 4, the first time."""

    def explain_unit(self, unit: WorkUnit) -> dict:
        marker = Path(self.out_uri) / "died-once"
        if unit.start == 4 and not marker.exists():
            marker.write_text("x")
            os._exit(1)
        return super().explain_unit(unit)


def test_a_dead_actor_loses_only_its_unit_which_ray_data_retries(ray_session: None, workdir: Path, bundle: str,
                                                                 rows: pa.Table) -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    src, out = str(workdir / "in-dying"), workdir / "out-dying"
    rows = rows.slice(rows.num_rows - 8)  # 7 phantoms and the corrupt row: units [0, 4) [4, 8)
    write_shards(rows, src, rows_per_shard=8)
    summary = explain_bulk(src, bundle, str(out), config=CONFIG, udf=DyingExplainUnit)  # one run: the unit is retried
    assert (out / "died-once").exists() and (summary.ok + summary.error, summary.skipped) == (8, 0)
    assert_every_row_once(results_of(str(out)), rows)
    assert len(list((out / "results").iterdir())) == 2


def test_bulk_skips_rows_an_earlier_writer_recorded(ray_session: None, workdir: Path, bundle: str,
                                                   rows: pa.Table) -> None:
    src, out = str(workdir / "in-earlier"), str(workdir / "out-earlier")
    rows = rows.slice(rows.num_rows - 6)  # 5 phantoms and the corrupt row
    write_shards(rows, src, rows_per_shard=6)
    bundle_id = bundle_id_of(bundle)
    schema = pa.schema(list(RESULT_SCHEMA) + [pa.field("mask", pa.binary())])
    # `raygan explain`'s (or an older bulk job's) file: 4 rows of this bundle (a whole unit among them), one of another.
    earlier = [{"image_id": i, "bundle_id": bundle_id, "status": "ok"} for i in rows["image_id"].to_pylist()[1:5]]
    write_results(earlier + [{"image_id": "x", "bundle_id": "another", "status": "ok"}], out, schema=schema)
    config = dataclasses.replace(CONFIG, rows_per_file=2)  # units [0, 2) [2, 4) [4, 6): the middle one all done
    summary = explain_bulk(src, bundle, out, config=config)
    assert (summary.ok + summary.error, summary.skipped) == (2, 4)
    assert len(list((Path(out) / "results").iterdir())) == 1 + 3  # the earlier file, and one per unit
    summary = explain_bulk(src, bundle, out, config=config)  # every unit has its file: no Ray Data job at all
    assert (summary.ok + summary.error, summary.skipped) == (0, 6)
    results = results_of(out)
    mine = results.filter(pc.equal(results["bundle_id"], bundle_id))
    assert sorted(mine["image_id"].to_pylist()) == sorted(rows["image_id"].to_pylist())  # each row once


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
    config = dataclasses.replace(CONFIG, artifacts="flagged")
    summary = explain_bulk(src, s3_bundle, out, config=config, settings=settings, runtime_env=env)
    assert (summary.rows_in, summary.ok, summary.error) == (6, 5, 1)
    assert len(storage.list_files(f"{out}/results", suffix=".parquet", settings=settings)) == 2  # 4 + 2 rows
    results = results_of(out, settings)
    assert_every_row_once(results, rows)
    assert_artifacts(results, "flagged")
    drawn = [r for r in results.to_pylist() if r["uri_figure"]]
    for r in drawn:
        assert r["uri_figure"].startswith(f"{out}/artifacts/") and r["uri_gradcam"] is None
        assert storage.read_bytes(r["uri_figure"], settings=settings).startswith(b"\x89PNG")
    assert len(storage.list_files(f"{out}/artifacts", settings=settings)) == 5 * len(drawn)  # 4 images + diff each
    summary = explain_bulk(src, s3_bundle, out, config=config, settings=settings, runtime_env=env)
    assert (summary.ok + summary.error, summary.skipped) == (0, 6)
