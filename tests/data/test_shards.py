"""Input shards: write/read round trips (local and S3), per-row decode errors, schema checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from raygan import storage
from raygan.data.codec import encode_png
from raygan.data.shards import DecodedBatch, RowError, decode_rows, read_table, write_shards


def _rows(n: int, *, corrupt: int | None = None) -> list[dict]:
    rows = []
    for i in range(n):
        img = np.full((8, 8), i * 10, dtype=np.uint8)
        rows.append({
            "image_id": f"img-{i:03d}",
            "image": b"not a png" if i == corrupt else encode_png(img),
            "label": i % 2,
            "site": f"hospital-{i % 3}",  # a passthrough column
        })
    return rows


def _check_round_trip(uri: str) -> None:
    shards = write_shards(_rows(7), uri, rows_per_shard=3)
    assert [s.rsplit("/", 1)[1] for s in shards] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    table = read_table(uri)
    assert table.num_rows == 7
    assert table.column_names == ["image_id", "image", "label", "site"]
    assert table.schema.field("image_id").type == pa.string()
    assert table.schema.field("image").type == pa.binary()
    assert table.schema.field("label").type == pa.int64()
    assert table["image_id"].to_pylist() == [f"img-{i:03d}" for i in range(7)]
    assert read_table(shards[1]).num_rows == 3  # one file
    assert read_table(uri, columns=["image_id", "label"]).column_names == ["image_id", "label"]
    with pytest.raises(FileExistsError, match="already holds"):
        write_shards(_rows(2), uri)  # never mix a rerun's shards with old ones


def test_round_trip_local(tmp_path: Path) -> None:
    _check_round_trip(str(tmp_path / "shards"))
    fs, path = storage.filesystem(str(tmp_path / "shards" / "part-00000.parquet"))
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_round_trip_s3(s3_bucket: str) -> None:
    _check_round_trip(storage.join(s3_bucket, "data", "shards"))


def test_decode_rows_reports_corrupt_row_and_keeps_others(tmp_path: Path) -> None:
    write_shards(_rows(5, corrupt=2), str(tmp_path))
    batch = decode_rows(read_table(str(tmp_path)), size=4)
    assert isinstance(batch, DecodedBatch)
    assert batch.image_ids == ["img-000", "img-001", "img-003", "img-004"]
    assert batch.images.shape == (4, 1, 4, 4) and batch.images.dtype == torch.float32
    assert batch.labels is not None and batch.labels.tolist() == [0, 1, 1, 0]
    assert len(batch.errors) == 1 and batch.errors[0].image_id == "img-002"
    assert "cannot decode" in batch.errors[0].message
    assert batch.passthrough["site"] == ["hospital-0", "hospital-1", "hospital-0", "hospital-1"]
    assert batch.indices == [0, 1, 3, 4]
    # Pixel values survive the round trip: image i is the constant i * 10.
    assert batch.images[2].mean().item() == pytest.approx(30 / 255 * 2 - 1, abs=1e-5)


def test_decode_rows_accepts_rows_and_column_batches() -> None:
    rows = _rows(3)
    for rows_in in (rows, {k: [r[k] for r in rows] for k in rows[0]}, pa.Table.from_pylist(rows)):
        batch = decode_rows(rows_in, size=8, channels=3)
        assert batch.images.shape == (3, 3, 8, 8) and batch.errors == []
    unlabeled = [{"image_id": "a", "image": rows[0]["image"]}, {"image_id": "b", "image": None}]
    batch = decode_rows(unlabeled, size=8)
    assert batch.labels is None
    assert batch.errors == [RowError("b", "image is null")]
    empty = decode_rows([unlabeled[1]], size=8)
    assert empty.images.shape == (0, 1, 8, 8) and empty.image_ids == []
    with pytest.raises(ValueError, match="image_id"):
        decode_rows([{"image": rows[0]["image"]}], size=8)


def test_missing_or_mistyped_columns_are_clear_errors(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": ["a"], "image": [b"x"]}), str(tmp_path / "bad.parquet"))
    with pytest.raises(ValueError, match=r"lacks required column\(s\) \['image_id'\]"):
        read_table(str(tmp_path / "bad.parquet"))
    pq.write_table(pa.table({"image_id": ["a"], "image": ["text"]}), str(tmp_path / "typed.parquet"))
    with pytest.raises(ValueError, match="image must be binary"):
        read_table(str(tmp_path / "typed.parquet"))
    with pytest.raises(ValueError, match="lacks required"):
        write_shards([{"image_id": "a"}], str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="no .parquet"):
        read_table(str(tmp_path / "nothing"))


def test_duplicate_image_ids_rejected(tmp_path: Path) -> None:
    rows = _rows(4)
    rows[3]["image_id"] = "img-000"
    with pytest.raises(ValueError, match="unique"):
        write_shards(rows, str(tmp_path / "a"), rows_per_shard=2)  # duplicate across shards
    (tmp_path / "b").mkdir()
    for name in ("x", "y"):  # two files, the same image_id: unique across a whole prefix
        pq.write_table(pa.table({"image_id": ["same"], "image": [b"x"]}), str(tmp_path / "b" / f"{name}.parquet"))
    with pytest.raises(ValueError, match="unique"):
        read_table(str(tmp_path / "b"))


def test_write_from_table_normalizes_types(tmp_path: Path) -> None:
    png = encode_png(np.zeros((4, 4), dtype=np.uint8))
    table = pa.table({
        "image_id": ["a", "b", "c"],
        "image": pa.array([png] * 3, pa.large_binary()),
        "label": pa.array([0, 1, None], pa.int8()),
    })
    assert len(write_shards(table, str(tmp_path), rows_per_shard=2)) == 2
    back = read_table(str(tmp_path))
    assert back.schema.field("image").type == pa.binary() and back.schema.field("label").type == pa.int64()
    assert decode_rows(back, size=4).labels.tolist() == [0, 1, -1]  # -1: row without a label


def test_labels_may_be_class_names(tmp_path: Path) -> None:
    rows = [{"image_id": f"n-{i}", "image": encode_png(np.zeros((8, 8), np.uint8)), "label": name}
            for i, name in enumerate(["covid", "normal", "pneumonia", "flu"])]
    uri = str(tmp_path / "named")
    write_shards(rows, uri)
    table = read_table(uri)
    assert table.schema.field("label").type == pa.string()
    batch = decode_rows(table, size=8, classes=("normal", "pneumonia", "covid"))
    assert batch.labels.tolist() == [2, 0, 1] and batch.image_ids == ["n-0", "n-1", "n-2"]
    assert [e.image_id for e in batch.errors] == ["n-3"] and "not one of the classes" in batch.errors[0].message
    unnamed = decode_rows(table, size=8)  # names without the classifier's class names: clear row errors
    assert len(unnamed.errors) == 4 and "no class names" in unnamed.errors[0].message
