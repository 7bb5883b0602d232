"""Training input as a Ray Data dataset: input shards -> one split -> decoded float images.

Rows whose image fails to decode are dropped here, with a logged count: training only needs
good images. (Explanations keep such rows as status "error"; that path lives in raygan.explain.)
Ray is imported inside the functions, so this module imports without Ray starting.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from raygan import storage
from raygan.data.shards import decode_rows
from raygan.data.splits import Split, split_of

if TYPE_CHECKING:
    import ray.data

logger = logging.getLogger(__name__)

CACHE_LIMIT_BYTES = 2 * 2**30  # decoded training splits up to this size are materialised once (object store)


class DecodeSplit:
    """map_batches function: keep the rows of `splits`, decode their images to [C, S, S] float32.

    Output batch: "image" [n, C, S, S] float32 in [-1, 1] and, when `with_labels`, "label" [n] int64.
    """

    def __init__(self, *, splits: Iterable[Split], size: int, channels: int, with_labels: bool) -> None:
        self.splits = frozenset(splits)
        self.size = size
        self.channels = channels
        self.with_labels = with_labels

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        keep = pa.array([split_of(i) in self.splits for i in batch["image_id"].to_pylist()], type=pa.bool_())
        decoded = decode_rows(batch.filter(keep), size=self.size, channels=self.channels)
        if decoded.errors:
            # Training drops undecodable rows; say how many and why (first one), never silently.
            logger.warning(
                "dropped %d of %d training rows that failed to decode (first: %s: %s)",
                len(decoded.errors), len(decoded.errors) + len(decoded.image_ids),
                decoded.errors[0].image_id, decoded.errors[0].message,
            )
        out = {"image": decoded.images.numpy()}  # [n, C, S, S]
        if self.with_labels:
            if decoded.labels is None:
                raise ValueError("training a classifier needs a 'label' column (1 = positive) in the input shards")
            labels = decoded.labels.numpy()  # [n]
            if (labels < 0).any():
                raise ValueError("training a classifier needs a label on every row; found rows with a null label")
            out["label"] = labels
        return out


def split_dataset(
    uri: str,
    *,
    size: int,
    channels: int = 1,
    splits: Iterable[Split] = ("train",),
    with_labels: bool = False,
    batch_size: int = 256,
    settings: storage.StorageSettings | None = None,
) -> ray.data.Dataset:
    """A lazy Ray dataset of the decoded images of `splits` from the input shards under `uri`."""
    import ray.data

    files = storage.list_files(uri, suffix=".parquet", settings=settings)
    if not files:
        raise FileNotFoundError(f"no .parquet input shards at {uri}")
    fs, _ = storage.filesystem(uri, settings)
    paths = [storage.filesystem(f, settings)[1] for f in files]
    if with_labels:
        import pyarrow.parquet as pq

        names = pq.read_schema(paths[0], filesystem=fs).names
        if "label" not in names:
            raise ValueError(f"training a classifier needs a 'label' column (1 = positive); {files[0]} has {names}")
    columns = ["image_id", "image"] + (["label"] if with_labels else [])
    ds = ray.data.read_parquet(paths, filesystem=fs, columns=columns)
    return ds.map_batches(
        DecodeSplit(splits=splits, size=size, channels=channels, with_labels=with_labels),
        batch_format="pyarrow",
        batch_size=batch_size,
    )


def count_rows(uri: str, *, settings: storage.StorageSettings | None = None) -> int:
    """Rows in all input shards under `uri`, from the Parquet footers (no data read)."""
    import pyarrow.parquet as pq

    total = 0
    for f in storage.list_files(uri, suffix=".parquet", settings=settings):
        fs, path = storage.filesystem(f, settings)
        total += pq.read_metadata(path, filesystem=fs).num_rows
    return total


def training_dataset(
    uri: str,
    *,
    size: int,
    channels: int = 1,
    with_labels: bool = False,
    cache_limit_bytes: int = CACHE_LIMIT_BYTES,
    settings: storage.StorageSettings | None = None,
) -> ray.data.Dataset:
    """The decoded training split; decoded once and kept in the object store when it is small.

    Every epoch re-runs a lazy pipeline (list, read, decode), which costs seconds of task startup
    even for a few images; below `cache_limit_bytes` of decoded float32 pixels the dataset is
    materialised once here instead. Larger data streams from storage every epoch.
    """
    ds = split_dataset(uri, size=size, channels=channels, splits=("train",), with_labels=with_labels, settings=settings)
    decoded_bytes = count_rows(uri, settings=settings) * channels * size * size * 4
    if decoded_bytes <= cache_limit_bytes:
        logger.info("caching the decoded training split in the object store (at most %.1f MiB)", decoded_bytes / 2**20)
        return ds.materialize()
    return ds


__all__ = ["CACHE_LIMIT_BYTES", "DecodeSplit", "count_rows", "split_dataset", "training_dataset"]
