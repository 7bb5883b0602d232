"""Ingest: turn a user's image folder or CSV into input shards.

Sources (local or s3://):
- a folder in class-per-subfolder layout, `SRC/<class name>/.../<file>`;
- a CSV with header `path,label` (label a class name or 0/1; relative paths resolve against
  the CSV's folder; any further columns are passed through as strings).
Files are recognized by content, not extension: DICOM (the "DICM" magic, or a .dcm/.dicom
name), else anything PIL opens (PNG, JPEG, ...). Every stored image is an 8-bit grayscale PNG of
size x size (center-cropped to a square, then resized; see raygan.data.codec).
Label 1 is the positive class. A file that fails to decode is reported in `IngestResult.errors`
and left out of the shards; it never stops the ingest.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from raygan import __version__, storage
from raygan.data.codec import ImageDecodeError, decode_image, encode_png
from raygan.data.shards import RowError, write_shards

_OWN_COLUMNS = ("image_id", "image", "label", "label_name", "source_path")


@dataclass(frozen=True)
class IngestResult:
    """What an ingest wrote and what it skipped."""

    rows: int  # images written to the shards
    errors: list[RowError]  # skipped files: image_id of the file, message "<path>: <reason>"
    shards: list[str]  # URIs of the shards written, in order
    classes: dict[str, int]  # class name -> label (1 = positive class)


@dataclass(frozen=True)
class _Source:
    """One file to ingest."""

    uri: str  # where to read it
    rel: str  # path relative to the source folder / CSV (hashed into image_id, stored as source_path)
    label_name: str  # its class name as the user wrote it
    extra: dict[str, str] = field(default_factory=dict)  # further CSV columns, passed through


def image_id_of(rel_path: str) -> str:
    """Stable image_id of a file: the first 16 hex digits of sha256 of its relative path."""
    return hashlib.sha256(rel_path.encode("utf-8")).hexdigest()[:16]


def _is_dicom(data: bytes, name: str) -> bool:
    return data[128:132] == b"DICM" or name.lower().endswith((".dcm", ".dicom"))


def _dicom_view(data: bytes) -> np.ndarray:
    """DICOM bytes -> uint8 [H, W] (gray) or [3, H, W] (color), as a viewer would show it by default.

    Gray: modality LUT (rescale to physical units), then the VOI LUT or the window centre/width
    (scaled over the window's output range), else the full min-max range; MONOCHROME1 is inverted
    so that bright always means dense.
    """
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    if "PixelData" not in ds:
        raise ImageDecodeError("DICOM file has no pixel data")
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageDecodeError(f"multi-frame DICOM ({frames} frames) is not supported; export one frame")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        # Color: pydicom has converted it to RGB already; scale by the stored bit depth.
        top = 2.0 ** int(ds.get("BitsStored", 8)) - 1
        rgb = np.clip(np.round(arr.astype(np.float64) / top * 255.0), 0, 255).astype(np.uint8)
        return np.transpose(rgb, (2, 0, 1))  # [3, H, W]
    values = apply_modality_lut(arr, ds)
    voi_seq = ds.get("VOILUTSequence")
    if voi_seq and "LUTDescriptor" in voi_seq[0] and "LUTData" in voi_seq[0]:
        lo, hi = 0.0, 2.0 ** int(voi_seq[0].LUTDescriptor[2]) - 1  # the LUT's output bit depth
        values = apply_voi_lut(values, ds)
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        # Values far outside the window clip to its ends: this probes the output range.
        lo, hi = (float(v) for v in apply_voi_lut(np.array([-1e30, 1e30]), ds))
        values = apply_voi_lut(values, ds)
    else:
        lo, hi = float(values.min()), float(values.max())
    x = (values.astype(np.float64) - lo) / (hi - lo) if hi > lo else np.zeros(values.shape)
    x = np.clip(x, 0.0, 1.0)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        x = 1.0 - x
    return np.round(x * 255.0).astype(np.uint8)  # [H, W]


def _to_png(data: bytes, name: str, *, size: int) -> bytes:
    """Any supported file -> 8-bit grayscale PNG of size x size; raises ImageDecodeError."""
    if _is_dicom(data, name):
        try:
            data = encode_png(_dicom_view(data))
        except ImageDecodeError:
            raise
        except Exception as e:  # pydicom raises many types for bad files or missing codecs
            raise ImageDecodeError(f"cannot read DICOM: {type(e).__name__}: {e}") from e
    # Any format PIL reads (TIFF, BMP, ...): ingest converts it to the PNG the shards promise.
    return encode_png(decode_image(data, size=size, channels=1, formats=None))  # [1, size, size] -> 8-bit PNG


def _folder_sources(src: str, settings: storage.StorageSettings | None) -> list[_Source]:
    _, root = storage.filesystem(src, settings)
    sources = []
    for uri in storage.list_files(src, settings=settings):
        _, path = storage.filesystem(uri, settings)
        rel = path[len(root):].lstrip("/")
        parts = rel.split("/")
        if any(p.startswith(".") for p in parts):
            continue  # hidden files and folders (.DS_Store, .ipynb_checkpoints) are not data
        # Top-level files have no class: label_name "" makes them a reported error below.
        sources.append(_Source(uri, rel, parts[0] if len(parts) > 1 else ""))
    return sources


def _csv_sources(src: str, settings: storage.StorageSettings | None) -> list[_Source]:
    reader = csv.DictReader(io.StringIO(storage.read_text(src, settings)))
    names = reader.fieldnames or []
    if "path" not in names or "label" not in names:
        raise ValueError(f"{src}: the CSV needs a header with columns path,label; found {names}")
    clash = [n for n in names if n in _OWN_COLUMNS and n != "label"]
    if clash:
        raise ValueError(f"{src}: column(s) {clash} are reserved for the shards; rename them")
    base = src.rsplit("/", 1)[0] if "://" in src else str(storage.filesystem(src)[1].rsplit("/", 1)[0])
    sources = []
    for line, row in enumerate(reader, start=2):
        path, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        if not path or not label:
            raise ValueError(f"{src}, line {line}: path and label must both be set, got {row}")
        absolute = path.startswith("/") or "://" in path
        extra = {k: v for k, v in row.items() if k not in ("path", "label") and k is not None}
        sources.append(_Source(path if absolute else storage.join(base, path), path, label, extra))
    return sources


def _class_labels(names: list[str], positive_class: str | None) -> dict[str, int]:
    """Class name -> label: 1 for the positive class, 0 for every other one."""
    if positive_class is not None:
        if positive_class not in names:
            raise ValueError(f"positive class {positive_class!r} is not among the classes found: {names}")
        return {n: int(n == positive_class) for n in names}
    if set(names) <= {"0", "1"}:
        return {n: int(n) for n in names}
    raise ValueError(
        f"found classes {names}: say which one is the positive class (label 1) with "
        f"--positive-class NAME (positive_class=...); every other class becomes label 0"
    )


def ingest(
    src: str,
    out: str,
    *,
    size: int = 128,
    rows_per_shard: int = 1000,
    positive_class: str | None = None,
    settings: storage.StorageSettings | None = None,
) -> IngestResult:
    """Convert a class-per-subfolder folder or a path,label CSV into input shards under `out`.

    Writes part-NNNNN.parquet (image_id, image, label, label_name, source_path, CSV extras) and
    ingest.json (the settings, classes and skipped files) under `out`.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    src = str(src)
    sources = _csv_sources(src, settings) if src.lower().endswith(".csv") else _folder_sources(src, settings)
    if not sources:
        raise FileNotFoundError(f"no image files found at {src}")
    classes = _class_labels(sorted({s.label_name for s in sources if s.label_name}), positive_class)
    errors: list[RowError] = []

    def rows():
        seen: set[str] = set()
        for s in tqdm(sources, desc="ingest", unit="img"):
            image_id = image_id_of(s.rel)
            if not s.label_name:
                errors.append(RowError(image_id, f"{s.rel}: not inside a class folder; skipped"))
                continue
            if image_id in seen:
                errors.append(RowError(image_id, f"{s.rel}: listed more than once; kept the first"))
                continue
            try:
                # Other read errors (permissions, network) are not the file's fault: they stop the ingest.
                png = _to_png(storage.read_bytes(s.uri, settings), s.rel, size=size)
            except FileNotFoundError:
                errors.append(RowError(image_id, f"{s.rel}: file not found ({s.uri})"))
                continue
            except ImageDecodeError as e:
                errors.append(RowError(image_id, f"{s.rel}: {e}"))
                continue
            seen.add(image_id)
            yield {"image_id": image_id, "image": png, "label": classes[s.label_name],
                   "label_name": s.label_name, "source_path": s.rel, **s.extra}

    shards = write_shards(rows(), out, rows_per_shard=rows_per_shard, settings=settings)
    result = IngestResult(rows=len(sources) - len(errors), errors=errors, shards=shards, classes=classes)
    storage.write_json(storage.join(out, "ingest.json"), {
        "raygan_version": __version__, "src": src, "size": size, "rows_per_shard": rows_per_shard,
        "positive_class": positive_class, "classes": classes, "rows": result.rows,
        "shards": shards, "errors": [{"image_id": e.image_id, "message": e.message} for e in errors],
    }, settings)
    return result
