"""Results contract: one row per input row, error rows, reruns, bundles, single images, S3."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from explain_helpers import SIZE, small_cnn_spec

from raygan import storage
from raygan.config import preset
from raygan.data.codec import encode_png
from raygan.data.shards import write_shards
from raygan.explain import Explainer
from raygan.explain.results import (
    ARTIFACTS, RESULT_SCHEMA, artifact_dir, existing_keys, explain_rows, explain_shards, read_input,
)

TINY = preset("tiny")


def _results(out: str) -> pa.Table:
    files = storage.list_files(storage.join(out, "results"), suffix=".parquet")
    tables = []
    for f in files:
        fs, path = storage.filesystem(f)
        tables.append(pq.read_table(path, filesystem=fs))
    return pa.concat_tables(tables)


def _explainer(g, c, bundle_id: str = "bundle-a", steps: int = 2) -> Explainer:
    return Explainer(g, c, inversion=dataclasses.replace(TINY.inversion, steps=steps), traversal=TINY.traversal,
                     bundle_id=bundle_id, device="cpu")


@pytest.fixture()
def shards(tmp_path) -> str:
    rng = np.random.default_rng(0)
    rows = [
        {"image_id": f"img-{i}", "image": encode_png(rng.uniform(-1, 1, (1, 48, 48)).astype(np.float32)),
         "label": i % 2, "source": f"site-{i}"}
        for i in range(4)
    ]
    rows.insert(2, {"image_id": "broken", "image": b"\x89PNG not really", "label": 1, "source": "site-x"})
    uri = str(tmp_path / "shards")
    write_shards(rows, uri, rows_per_shard=3)
    return uri


def test_rows_out_equal_rows_in_with_an_error_row(tmp_path, shards, tiny_generator, tiny_classifier):
    out = str(tmp_path / "out")
    summary = explain_shards(shards, out, explainer=_explainer(tiny_generator, tiny_classifier), batch_size=3,
                             progress=False)
    assert (summary.rows_in, summary.ok, summary.error, summary.skipped) == (5, 4, 1, 0)
    table = _results(out)
    assert table.num_rows == 5
    assert table.schema.names == RESULT_SCHEMA.names + ["source"]
    for name in ("z1", "z2", "traversal_alphas", "traversal_probs"):
        assert table.schema.field(name).type == pa.list_(pa.float32())
    rows = {r["image_id"]: r for r in table.to_pylist()}
    bad = rows["broken"]
    assert bad["status"] == "error" and "cannot decode" in bad["error"] and bad["source"] == "site-x"
    assert bad["bundle_id"] == "bundle-a" and bad["z1"] is None and bad["uri_figure"] is None
    good = rows["img-3"]
    assert good["status"] == "ok" and good["error"] is None and good["label"] == 1 and good["source"] == "site-3"
    assert len(good["z1"]) == 16 and len(good["traversal_probs"]) == len(good["traversal_alphas"]) == 5
    assert good["crossing_alpha"] is None or 0 <= good["crossing_alpha"] <= 1
    for name in ARTIFACTS:
        uri = good[f"uri_{name}"]
        assert uri.startswith(artifact_dir(out, "img-3", "bundle-a")) and uri.endswith(f"{name}.png")
        assert storage.read_bytes(uri)[:4] == b"\x89PNG"


def test_rerun_skips_and_other_bundle_adds_rows(tmp_path, shards, tiny_generator, tiny_classifier):
    out = str(tmp_path / "out")
    explain_shards(shards, out, explainer=_explainer(tiny_generator, tiny_classifier), progress=False)
    again = explain_shards(shards, out, explainer=_explainer(tiny_generator, tiny_classifier), progress=False)
    assert (again.ok, again.error, again.skipped) == (0, 0, 5)
    assert _results(out).num_rows == 5
    other = explain_shards(shards, out, explainer=_explainer(tiny_generator, tiny_classifier, "bundle-b"),
                           progress=False)
    assert (other.ok, other.error, other.skipped) == (4, 1, 0)
    table = _results(out)
    assert table.num_rows == 10
    assert existing_keys(out) == {(i, b) for i in table["image_id"].to_pylist() for b in ("bundle-a", "bundle-b")}
    # each bundle keeps its own pictures
    uris = {r["uri_figure"] for r in table.to_pylist() if r["image_id"] == "img-0"}
    assert len(uris) == 2


def test_single_image_file_uses_its_stem(tmp_path, tiny_generator, tiny_classifier):
    path = tmp_path / "scan_042.png"
    path.write_bytes(encode_png(np.zeros((1, 40, 40), np.float32)))
    assert read_input(str(path))["image_id"].to_pylist() == ["scan_042"]
    out = str(tmp_path / "out")
    summary = explain_shards(str(path), out, explainer=_explainer(tiny_generator, tiny_classifier), progress=False)
    assert (summary.rows_in, summary.ok) == (1, 1)
    row = _results(out).to_pylist()[0]
    assert row["image_id"] == "scan_042" and row["label"] is None and row["status"] == "ok"


def test_explain_rows_honours_skip_and_odd_ids(tmp_path, tiny_generator, tiny_classifier):
    png = encode_png(np.zeros((1, SIZE, SIZE), np.float32))
    table = pa.table({"image_id": ["a/../b", "done"], "image": [png, png], "status": ["x", "y"]})
    out = str(tmp_path / "out")
    rows = explain_rows(table, out, explainer=_explainer(tiny_generator, tiny_classifier, steps=1),
                        skip={("done", "bundle-a")})
    assert [r["image_id"] for r in rows] == ["a/../b"]
    assert rows[0]["input_status"] == "x" and rows[0]["status"] == "ok"  # a clashing column is renamed
    assert "/artifacts/a%2F..%2Fb/bundle-a/" in rows[0]["uri_diff"]


def test_results_on_s3(s3_bucket, shards, tiny_generator, tiny_classifier):
    out = f"{s3_bucket}/explained"
    summary = explain_shards(shards, out, explainer=_explainer(tiny_generator, tiny_classifier, steps=1),
                             progress=False)
    assert (summary.ok, summary.error) == (4, 1)
    assert len(existing_keys(out)) == 5
    row = next(r for r in _results(out).to_pylist() if r["status"] == "ok")
    assert row["uri_figure"].startswith(f"{s3_bucket}/explained/artifacts/")
    assert storage.read_bytes(row["uri_figure"])[:4] == b"\x89PNG"


def test_rows_say_what_they_explain_and_take_class_names(tmp_path, tiny_generator):
    from raygan.models import FrozenClassifier, build_classifier
    from raygan.quality import Quality

    spec = dataclasses.replace(small_cnn_spec(), classes=("normal", "covid"))
    classifier = FrozenClassifier(build_classifier("small_cnn", image_size=SIZE), spec)
    weak = Quality(class_consistency=0.6, consistency_samples=32, frechet=3.5, frechet_samples=8)
    explainer = Explainer(tiny_generator, classifier, inversion=dataclasses.replace(TINY.inversion, steps=2),
                          traversal=TINY.traversal, bundle_id="b", device="cpu", quality=weak)
    image = encode_png(np.zeros((1, 32, 32), np.float32))
    rows = pa.table({"image_id": ["a", "b", "c"], "image": [image] * 3, "label": ["covid", "normal", "flu"]})
    out = explain_rows(rows, str(tmp_path / "out"), explainer=explainer, skip=set())
    assert [r["label"] for r in out] == [1, 0, None] and [r["status"] for r in out] == ["ok", "ok", "error"]
    assert "'flu' is not one of the classes" in out[2]["error"]
    for r in out:
        assert r["target_class"] == "covid" and r["warning"] == weak.warning and r["bundle_frechet"] == 3.5
        assert r["bundle_class_consistency"] == 0.6 and r["maps_skipped"] is None
