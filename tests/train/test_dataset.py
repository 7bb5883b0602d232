"""The training input's decode step (runs without Ray): split filter, dropped rows, labels."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from raygan.data.codec import encode_png
from raygan.data.splits import split_of
from raygan.train.dataset import DecodeSplit


def _rows(n: int) -> pa.Table:
    ids = [f"img-{i}" for i in range(n)]
    images = [encode_png(np.full((8, 8), i * 8, dtype=np.uint8)) for i in range(n)]
    images[1] = b"not an image"
    return pa.table({"image_id": ids, "image": images, "label": [i % 2 for i in range(n)]})


def test_keeps_the_split_decodes_and_drops_bad_rows(caplog: pytest.LogCaptureFixture) -> None:
    table = _rows(30)
    train_ids = [i for i in table["image_id"].to_pylist() if split_of(i) == "train"]
    assert "img-1" in train_ids  # the bad row is in the training split, so it must be dropped
    out = DecodeSplit(splits=["train"], size=4, channels=1, with_labels=True)(table)
    assert out["image"].shape == (len(train_ids) - 1, 1, 4, 4) and out["image"].dtype == np.float32
    assert out["image"].min() >= -1 and out["image"].max() <= 1
    assert out["label"].tolist() == [int(i.split("-")[1]) % 2 for i in train_ids if i != "img-1"]
    assert "dropped 1 of" in caplog.text and "img-1" in caplog.text


def test_labels_are_required_when_asked_for() -> None:
    table = _rows(30).drop_columns(["label"])
    assert DecodeSplit(splits=["train"], size=4, channels=1, with_labels=False)(table)["image"].shape[1:] == (1, 4, 4)
    with pytest.raises(ValueError, match="label"):
        DecodeSplit(splits=["train"], size=4, channels=1, with_labels=True)(table)
