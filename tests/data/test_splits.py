"""Splits: 80/10/10 by sha256 of image_id, stable and disjoint."""

from __future__ import annotations

import hashlib
from collections import Counter

import pyarrow as pa
import pytest

from raygan.data.splits import SPLITS, filter_split, split_of


def test_split_follows_sha256_mod_100() -> None:
    for i in range(200):
        image_id = f"id-{i}"
        bucket = int(hashlib.sha256(image_id.encode()).hexdigest(), 16) % 100
        expected = "train" if bucket < 80 else "val" if bucket < 90 else "test"
        assert split_of(image_id) == expected


def test_proportions_are_about_80_10_10() -> None:
    counts = Counter(split_of(f"image-{i}") for i in range(10_000))
    assert set(counts) == set(SPLITS)
    assert counts["train"] / 10_000 == pytest.approx(0.8, abs=0.02)
    assert counts["val"] / 10_000 == pytest.approx(0.1, abs=0.015)
    assert counts["test"] / 10_000 == pytest.approx(0.1, abs=0.015)


def test_filter_split_partitions_a_table() -> None:
    table = pa.table({"image_id": [f"x{i}" for i in range(300)], "label": list(range(300))})
    parts = {s: filter_split(table, s) for s in SPLITS}
    assert sum(p.num_rows for p in parts.values()) == 300
    assert all(split_of(i) == s for s, p in parts.items() for i in p["image_id"].to_pylist())
    assert filter_split(table, ["val", "test"]).num_rows == parts["val"].num_rows + parts["test"].num_rows
    with pytest.raises(ValueError, match="unknown split"):
        filter_split(table, "validation")
