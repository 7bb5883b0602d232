"""Storage: the only module that knows URIs.

A URI is a local path (the default; relative paths are made absolute), a `file://` URI, or
`s3://bucket/prefix`. Everything else in raygan passes URIs through these functions, so a run
reads and writes the same way on a laptop and on a cluster backed by object storage.

S3 endpoints: pyarrow ignores `AWS_ENDPOINT_URL(_S3)`, so one `StorageSettings` object feeds the
endpoint explicitly to both pyarrow (`endpoint_override` + `scheme`) and boto3 (`endpoint_url`).
Credentials come from the standard AWS chain (environment variables, config files, instance
roles); raygan never handles them.

Local paths need nothing but the standard library (the core install has no pyarrow); s3:// and
the Parquet helpers import pyarrow when first used (extras `s3` and `data`).
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from raygan.extras import require

if TYPE_CHECKING:
    import pyarrow.fs as pafs

_S3 = "s3://"
_FILE = "file://"


def _pafs(what: str = "s3:// storage") -> Any:
    """pyarrow.fs, or a MissingExtra naming the extra that brings it."""
    return require("pyarrow.fs", extra="s3" if what.startswith("s3") else "data", what=what)


def _local(uri: str) -> str | None:
    """The absolute local path of a local path or file:// URI; None for s3://; an error for other schemes."""
    uri = str(uri)
    if uri.startswith(_S3):
        return None
    if uri.startswith(_FILE):
        uri = uri[len(_FILE):]
    elif "://" in uri:
        raise ValueError(f"unsupported URI scheme in {uri!r}: use a local path, file:// or s3://")
    return os.path.abspath(os.path.expanduser(uri))


@dataclass(frozen=True)
class StorageSettings:
    """How to reach object storage; local paths ignore it."""

    endpoint_url: str | None = None  # S3-compatible endpoint, e.g. "http://127.0.0.1:9000"; None = AWS
    region: str | None = None  # AWS region; None lets the client choose (us-east-1 for custom endpoints)
    retries: int = 5  # max attempts per request, for transient S3 errors (both pyarrow and boto3)

    @classmethod
    def from_env(cls) -> StorageSettings:
        """RAYGAN_S3_ENDPOINT_URL (else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL), AWS_REGION / AWS_DEFAULT_REGION."""
        endpoint = (
            os.environ.get("RAYGAN_S3_ENDPOINT_URL")
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
        return cls(endpoint_url=endpoint, region=region)


def is_remote(uri: str) -> bool:
    """True for object-storage URIs (s3://), False for local paths and file:// URIs."""
    return str(uri).startswith(_S3)


def local_path(uri: str) -> str:
    """The absolute path of a local path or file:// URI (no pyarrow needed); ValueError for s3://."""
    path = _local(uri)
    if path is None:
        raise ValueError(f"{uri!r} is not a local path")
    return path


def join(uri: str, *parts: str) -> str:
    """Append path parts to a URI or local path, keeping its scheme."""
    uri = str(uri)
    if "://" in uri:
        tail = "/".join(p.strip("/") for p in parts if p.strip("/"))
        return f"{uri.rstrip('/')}/{tail}" if tail else uri
    return str(Path(uri).joinpath(*parts))


def _settings(settings: StorageSettings | None) -> StorageSettings:
    return StorageSettings.from_env() if settings is None else settings


def _split_s3(uri: str) -> tuple[str, str]:
    """'s3://bucket/a/b' -> ('bucket', 'a/b'), validating the bucket name."""
    bucket, _, key = uri[len(_S3):].partition("/")
    if len(bucket) < 3:
        raise ValueError(f"invalid S3 URI {uri!r}: bucket names need at least 3 characters")
    return bucket, key.strip("/")


def _s3_filesystem(settings: StorageSettings) -> pafs.S3FileSystem:
    pafs = _pafs()
    kwargs: dict[str, Any] = {
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=settings.retries),
    }
    if settings.endpoint_url:
        parts = urlsplit(settings.endpoint_url)
        if not parts.netloc:
            raise ValueError(f"S3 endpoint {settings.endpoint_url!r} must look like http(s)://host:port")
        kwargs["endpoint_override"] = parts.netloc
        kwargs["scheme"] = parts.scheme or "https"
        # Custom endpoints (MinIO, moto, Ceph) rarely answer the region lookup pyarrow would do.
        kwargs["region"] = settings.region or "us-east-1"
    elif settings.region:
        kwargs["region"] = settings.region
    return pafs.S3FileSystem(**kwargs)


def filesystem(uri: str, settings: StorageSettings | None = None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem for `uri` and the path to pass to it."""
    uri = str(uri)
    if uri.startswith(_S3):
        bucket, key = _split_s3(uri)
        return _s3_filesystem(_settings(settings)), f"{bucket}/{key}" if key else bucket
    path = _local(uri)
    assert path is not None
    return _pafs("Parquet files").LocalFileSystem(), path


def _to_uri(uri: str, path: str) -> str:
    """Turn a filesystem path back into a URI of the same kind as `uri`."""
    if str(uri).startswith(_S3):
        return _S3 + path
    if str(uri).startswith(_FILE):
        return _FILE + path
    return path


def s3_client(settings: StorageSettings | None = None) -> Any:
    """A boto3 S3 client for the same endpoint, region and retry policy as `filesystem`."""
    boto3 = require("boto3", extra="s3", what="s3:// storage")
    from botocore.config import Config

    s = _settings(settings)
    return boto3.client(
        "s3",
        endpoint_url=s.endpoint_url,
        region_name=s.region or ("us-east-1" if s.endpoint_url else None),
        config=Config(retries={"max_attempts": s.retries, "mode": "standard"}),
    )


def read_bytes(uri: str, settings: StorageSettings | None = None) -> bytes:
    """The whole content of one file."""
    local = _local(uri)
    if local is not None:
        return Path(local).read_bytes()
    fs, path = filesystem(uri, settings)
    with fs.open_input_stream(path) as f:
        return f.read()


def write_bytes(uri: str, data: bytes, settings: StorageSettings | None = None) -> None:
    """Write (replace) one file; local parent directories are created.

    Locally the bytes go to a temporary file beside it that then replaces it, so a reader sees the old
    file or the new one, never half of one (as with an S3 PUT)."""
    local = _local(uri)
    if local is not None:
        target = Path(local)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            temp.write_bytes(data)
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        return
    fs, path = filesystem(uri, settings)
    with fs.open_output_stream(path) as f:
        f.write(data)


def exists(uri: str, settings: StorageSettings | None = None) -> bool:
    """True if `uri` is an existing file or directory (for S3: object or non-empty prefix)."""
    local = _local(uri)
    if local is not None:
        return os.path.exists(local)
    fs, path = filesystem(uri, settings)
    return fs.get_file_info(path).type != _pafs().FileType.NotFound


def _is_temp(name: str) -> bool:
    """A `write_bytes` temporary file (gone in a moment, never a result)."""
    return name.startswith(".") and name.endswith(".tmp")


def _list_local(path: str) -> list[str]:
    """Every file under a local directory (recursive, sorted), or [path] for a file, [] if absent."""
    if os.path.isfile(path):
        return [path]
    found = []
    for root, _dirs, names in os.walk(path, followlinks=True):
        found += [os.path.join(root, n) for n in names
                  if os.path.isfile(os.path.join(root, n)) and not _is_temp(n)]
    return sorted(found)


def list_files(uri: str, *, suffix: str | None = None, settings: StorageSettings | None = None) -> list[str]:
    """URIs of all files under `uri` (recursive, sorted); `uri` itself if it is a file; [] if absent."""
    local = _local(uri)
    if local is not None:
        return [_to_uri(uri, p) for p in _list_local(local) if suffix is None or p.endswith(suffix)]
    pafs = _pafs()
    fs, path = filesystem(uri, settings)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        infos = [info]
    elif info.type == pafs.FileType.NotFound:
        return []
    else:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    paths = sorted(
        i.path for i in infos
        if i.type == pafs.FileType.File and (suffix is None or i.path.endswith(suffix))
    )
    return [_to_uri(uri, p) for p in paths]


def read_text(uri: str, settings: StorageSettings | None = None) -> str:
    """A UTF-8 text file."""
    return read_bytes(uri, settings).decode("utf-8")


def write_text(uri: str, text: str, settings: StorageSettings | None = None) -> None:
    """Write a UTF-8 text file."""
    write_bytes(uri, text.encode("utf-8"), settings)


def read_json(uri: str, settings: StorageSettings | None = None) -> Any:
    """A JSON document."""
    return json.loads(read_text(uri, settings))


def jsonable(value: Any) -> Any:
    """`value` with non-finite floats as None (strict JSON has no nan or inf) and tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def write_json(uri: str, obj: Any, settings: StorageSettings | None = None) -> None:
    """Write `obj` as indented, key-sorted, strict JSON (nan -> null; stable diffs between runs)."""
    write_text(uri, json.dumps(jsonable(obj), indent=2, sort_keys=True, allow_nan=False) + "\n", settings)


def _copy_tree(src: str, dst: str, settings: StorageSettings | None) -> int:
    """Copy every file under `src` to the same relative path under `dst`; returns the count."""
    local = _local(src)
    if local is not None:
        src_path = local
        if not os.path.exists(local):
            raise FileNotFoundError(f"nothing to copy: {src!r} does not exist (or is an empty prefix)")
        if os.path.isfile(local):
            raise NotADirectoryError(f"{src!r} is a file; expected a directory or prefix")
    else:
        pafs = _pafs()
        src_fs, src_path = filesystem(src, settings)
        kind = src_fs.get_file_info(src_path).type
        if kind == pafs.FileType.NotFound:
            raise FileNotFoundError(f"nothing to copy: {src!r} does not exist (or is an empty prefix)")
        if kind == pafs.FileType.File:
            raise NotADirectoryError(f"{src!r} is a file; expected a directory or prefix")
    files = list_files(src, settings=settings)
    for file_uri in files:
        file_path = _local(file_uri) or filesystem(file_uri, settings)[1]
        rel = file_path[len(src_path):].lstrip("/")
        # Whole-file reads keep this simple; bundles and specs are tens of MB at most.
        write_bytes(join(dst, *rel.split("/")), read_bytes(file_uri, settings), settings)
    return len(files)


def download_dir(uri: str, local_dir: str | Path, settings: StorageSettings | None = None) -> Path:
    """Copy a directory or prefix (local or remote) into `local_dir`; returns `local_dir`."""
    local = Path(local_dir).expanduser().absolute()
    local.mkdir(parents=True, exist_ok=True)
    _copy_tree(str(uri), str(local), settings)
    return local


def upload_dir(local_dir: str | Path, uri: str, settings: StorageSettings | None = None) -> None:
    """Copy every file under `local_dir` to the same relative path under `uri`."""
    local = Path(local_dir).expanduser().absolute()
    if not local.is_dir():
        raise NotADirectoryError(f"{str(local)!r} is not a directory")
    _copy_tree(str(local), str(uri), settings)


def copy_dir(src: str, dst: str, settings: StorageSettings | None = None) -> None:
    """Copy every file under `src` to the same relative path under `dst` (any mix of local and s3)."""
    _copy_tree(str(src), str(dst), settings)


TMP_PREFIX = ".tmp-"  # hidden and not *.parquet: readers listing *.parquet never see a half-written file


def write_parquet(table: Any, uri: str, settings: StorageSettings | None = None) -> str:
    """Write a pyarrow Table to `uri` whole or not at all (zstd); returns `uri`.

    Locally the file is written under a temporary name and renamed (atomic on one filesystem);
    an S3 object becomes visible only once its upload completes, so it is written in place.
    """
    import uuid

    import pyarrow.parquet as pq

    fs, path = filesystem(uri, settings)
    if _local(uri) is not None:
        directory, name = path.rsplit("/", 1)
        fs.create_dir(directory, recursive=True)
        tmp = f"{directory}/{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{name}.partial"
        pq.write_table(table, tmp, filesystem=fs, compression="zstd")
        fs.move(tmp, path)
    else:
        pq.write_table(table, path, filesystem=fs, compression="zstd")
    return uri
