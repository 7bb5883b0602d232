"""Train/val/test splits, 80/10/10 by a hash of image_id.

The split depends only on the image_id, so it is the same on every machine, every run and every
shard layout, and adding images never moves existing ones between splits. The GAN sees the
training split only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Literal

import pyarrow as pa

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


def split_of(image_id: str) -> Split:
    """"train" if sha256(image_id) mod 100 < 80, "val" if < 90, else "test"."""
    bucket = int.from_bytes(hashlib.sha256(str(image_id).encode("utf-8")).digest(), "big") % 100
    if bucket < 80:
        return "train"
    return "val" if bucket < 90 else "test"


def filter_split(table: pa.Table, split: Split | Iterable[Split]) -> pa.Table:
    """The rows of `table` whose image_id falls in `split` (one name or several)."""
    wanted = {split} if isinstance(split, str) else set(split)
    unknown = wanted - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; expected some of {SPLITS}")
    if "image_id" not in table.schema.names:
        raise ValueError(f"table has no image_id column; found {table.schema.names}")
    mask = pa.array([split_of(i) in wanted for i in table["image_id"].to_pylist()], type=pa.bool_())
    return table.filter(mask)
