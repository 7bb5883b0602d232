"""Input shards: Parquet files of images in the schema every raygan job reads.

| column   | type                         | required                         |
|----------|------------------------------|----------------------------------|
| image_id | string, unique               | yes                              |
| image    | binary: PNG or JPEG bytes    | yes                              |
| label    | int class index, or name     | no (needed for training)         |
| other    | anything                     | no; passed through to results    |

The label is the class index in the classifier's output order (for two classes, 1 = positive)
or the class name from `classifier.json`'s `classes`.
Shards are `part-00000.parquet`, `part-00001.parquet`, ... under a prefix, zstd-compressed.
A bad image never fails a whole batch: `decode_rows` reports it as a `RowError` and decodes
the rest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from raygan import storage
from raygan.data.codec import ImageDecodeError, decode_image

REQUIRED_COLUMNS = ("image_id", "image")
SHARD_PATTERN = "part-{index:05d}.parquet"
# What decode_rows accepts: a table, a column mapping (a Ray Data batch) or a list of row dicts.
Rows = pa.Table | pa.RecordBatch | Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class RowError:
    """One row (or source file) that could not be used, and why."""

    image_id: str  # the row's image_id
    message: str  # what is wrong, readable by a user


@dataclass(frozen=True)
class DecodedBatch:
    """The rows of a table that decoded, as tensors, plus the ones that did not."""

    image_ids: list[str]  # image_id of each decoded row, in input order
    images: torch.Tensor  # [N, C, S, S] float32 in [-1, 1], one per image_id
    labels: torch.Tensor | None  # [N] int64; -1 where a row has no label; None without a label column
    errors: list[RowError]  # rows whose image failed to decode, in input order
    passthrough: dict[str, list[Any]] = field(default_factory=dict)  # other columns (label included), decoded rows only
    indices: list[int] = field(default_factory=list)  # position of each decoded row in the input


def check_schema(schema: pa.Schema, where: str) -> None:
    """Raise ValueError (naming `where`) unless `schema` has the input-shard columns with their types."""
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise ValueError(
            f"{where} lacks required column(s) {missing}: input shards need image_id (string) and "
            f"image (PNG/JPEG bytes); found columns {schema.names}"
        )
    id_type, image_type = schema.field("image_id").type, schema.field("image").type
    if not (pa.types.is_string(id_type) or pa.types.is_large_string(id_type)):
        raise ValueError(f"{where}: column image_id must be string, found {id_type}")
    if not (pa.types.is_binary(image_type) or pa.types.is_large_binary(image_type)):
        raise ValueError(f"{where}: column image must be binary (PNG/JPEG bytes), found {image_type}")
    label_type = schema.field("label").type if "label" in schema.names else pa.int64()
    if not (pa.types.is_integer(label_type) or pa.types.is_null(label_type) or pa.types.is_string(label_type)
            or pa.types.is_large_string(label_type)):
        raise ValueError(f"{where}: column label must be a class index (integer) or a class name (string), "
                         f"found {label_type}")


def _duplicates(ids: Sequence[str]) -> list[str]:
    return sorted(i for i, n in Counter(ids).items() if n > 1)


def _fix_types(table: pa.Table) -> pa.Table:
    """Cast the schema's own columns to one type each, so every shard has the same schema."""
    for name, typ in {"image_id": pa.string(), "image": pa.binary(), "label": pa.int64()}.items():
        if name == "label" and "label" in table.schema.names and (
                pa.types.is_string(table.schema.field(name).type) or pa.types.is_large_string(table.schema.field(name).type)):
            typ = pa.string()  # class names stay names
        if name in table.schema.names and table.schema.field(name).type != typ:
            table = table.set_column(table.schema.get_field_index(name), name, table[name].cast(typ))
    return table


def _tables(rows: Iterable[Mapping[str, Any]] | pa.Table, n: int) -> Iterator[pa.Table]:
    """Tables of at most n rows in the first one's schema: slices of a table, or streamed row dicts."""
    if isinstance(rows, pa.Table):
        rows = _fix_types(rows)
        yield from (rows.slice(i, n) for i in range(0, rows.num_rows, n))
        return
    source = iter(rows)
    schema: pa.Schema | None = None
    while chunk := list(islice(source, n)):
        table = pa.Table.from_pylist(chunk, schema=schema)
        if schema is None:
            table = _fix_types(table)
            schema = table.schema
        yield table


def write_shards(
    rows: Iterable[Mapping[str, Any]] | pa.Table,
    uri: str,
    *,
    rows_per_shard: int = 1000,
    settings: storage.StorageSettings | None = None,
) -> list[str]:
    """Write rows as zstd Parquet shards part-NNNNN.parquet under `uri`; returns the shard URIs.

    Rows are streamed (at most one shard in memory). Refuses a prefix that already holds Parquet
    files, so a rerun never mixes old and new shards.
    """
    if rows_per_shard <= 0:
        raise ValueError(f"rows_per_shard must be positive, got {rows_per_shard}")
    if storage.list_files(uri, suffix=".parquet", settings=settings):
        raise FileExistsError(f"{uri} already holds .parquet files; remove them or choose another output")
    seen: set[str] = set()
    written: list[str] = []
    for table in _tables(rows, rows_per_shard):
        check_schema(table.schema, f"shard {len(written)}")
        ids = table["image_id"].to_pylist()
        dup = sorted(seen.intersection(ids)) + _duplicates(ids)
        if dup:
            raise ValueError(f"image_id must be unique; duplicated: {dup[:5]}")
        seen.update(ids)
        shard = storage.join(uri, SHARD_PATTERN.format(index=len(written)))
        fs, path = storage.filesystem(shard, settings)
        if not storage.is_remote(shard):
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        pq.write_table(table, path, filesystem=fs, compression="zstd")
        written.append(shard)
    return written


def read_table(
    uri: str, *, columns: Sequence[str] | None = None, settings: storage.StorageSettings | None = None
) -> pa.Table:
    """All *.parquet files under a prefix (sorted), or one .parquet file, as one table.

    Raises FileNotFoundError when there is no Parquet file and ValueError when image_id or image
    is missing, mistyped or not unique.
    """
    files = storage.list_files(uri, suffix=".parquet", settings=settings)
    if not files:
        raise FileNotFoundError(f"no .parquet files at {uri}")
    tables = []
    for f in files:
        fs, path = storage.filesystem(f, settings)
        schema = pq.read_schema(path, filesystem=fs)
        check_schema(schema, f)
        if columns is not None:
            absent = [c for c in columns if c not in schema.names]
            if absent:
                raise ValueError(f"{f} has no column(s) {absent}; found {schema.names}")
        tables.append(pq.read_table(path, filesystem=fs, columns=list(columns) if columns is not None else None))
    table = pa.concat_tables(tables, promote_options="default")
    if "image_id" in table.schema.names and pc.count_distinct(table["image_id"]).as_py() != table.num_rows:
        dup = _duplicates(table["image_id"].to_pylist())
        raise ValueError(f"image_id must be unique under {uri}; duplicated: {dup[:5]}")
    return table


def _columns(table_or_rows: Rows) -> dict[str, list[Any]]:
    """A table, a column mapping (e.g. a Ray Data batch) or a list of row dicts -> column lists."""
    if isinstance(table_or_rows, (pa.Table, pa.RecordBatch)):
        return table_or_rows.to_pydict()
    if isinstance(table_or_rows, Mapping):
        return {k: list(v) for k, v in table_or_rows.items()}
    rows = list(table_or_rows)
    names = list(dict.fromkeys(k for r in rows for k in r))
    return {k: [r.get(k) for r in rows] for k in names}


def label_index(value: Any, classes: Sequence[str] = ()) -> int:
    """A label (class index, or class name from `classes`) as a class index; ValueError if it is neither."""
    if isinstance(value, str) and value in classes:
        return list(classes).index(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    known = f"one of the classes {list(classes)}" if classes else "a class index (no class names are known here)"
    raise ValueError(f"label {value!r} is not {known}")


def decode_rows(
    table_or_rows: Rows,
    *,
    size: int,
    channels: int = 1,
    classes: Sequence[str] = (),
) -> DecodedBatch:
    """Decode the image column of input-shard rows; rows that fail become RowErrors.

    Labels become class indices: integers as they are, names through `classes` (the
    classifier's class names); a label that is neither makes its row a RowError.
    """
    cols = _columns(table_or_rows)
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise ValueError(f"rows lack required column(s) {missing}; found {sorted(cols)}")
    ids, images, indices, errors = [], [], [], []
    for i, (image_id, data) in enumerate(zip(cols["image_id"], cols["image"], strict=True)):
        image_id = str(image_id)
        if data is None:
            errors.append(RowError(image_id, "image is null"))
            continue
        label = cols["label"][i] if "label" in cols else None
        try:
            if label is not None:
                label_index(label, classes)
        except ValueError as e:
            errors.append(RowError(image_id, str(e)))
            continue
        try:
            images.append(decode_image(bytes(data), size=size, channels=channels))  # [C, S, S]
        except ImageDecodeError as e:
            errors.append(RowError(image_id, str(e)))
            continue
        ids.append(image_id)
        indices.append(i)
    batch = torch.stack(images) if images else torch.zeros((0, channels, size, size))  # [N, C, S, S]
    labels = None
    if "label" in cols:
        raw = [cols["label"][i] for i in indices]
        labels = torch.tensor([-1 if v is None else label_index(v, classes) for v in raw], dtype=torch.int64)
    passthrough = {k: [v[i] for i in indices] for k, v in cols.items() if k not in REQUIRED_COLUMNS}
    return DecodedBatch(ids, batch, labels, errors, passthrough, indices)
