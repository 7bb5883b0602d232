"""Explanation results: the I/O edge that turns input shards into result rows and PNG artifacts.

Results contract (DESIGN.md, "Explanation results"): Parquet files under `<out>/results/`, one
row per input row, never fewer. A row whose image does not decode, or whose label is not one of
the classifier's classes, gets status "error" and the message; a rerun over the same `<out>`
skips every (image_id, bundle_id) already there, and a different bundle gets its own rows.
Every row says which class it explains (`target_class`; the p_* columns are p(target)), the
bundle's quality gate (`bundle_class_consistency`, `bundle_frechet`, `warning`) and which maps the
classifier could not give (`maps_skipped`). Result files are `part-<UTC time>-<uuid8>.parquet` and are
only ever added, so reruns never clobber earlier results.

Artifacts are PNGs under `<out>/artifacts/<image_id>/<bundle_id>/` (directly under
`<image_id>/` when the bundle_id is empty), so two bundles explaining the same image never
overwrite each other's pictures. Which rows get them is an `ArtifactPolicy`: every ok row
("all", what `raygan explain` writes), only the rows `worth_a_look` ("flagged"), or none; a row
without pictures has null uri_* columns. Maps are stored as 8-bit gray PNGs (255 = 1.0), the form
`raygan.render` reads back.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from raygan import storage
from raygan.data.codec import ImageDecodeError, decode_image
from raygan.data.shards import label_index, read_table
from raygan.explain.explainer import Explainer, Explanation

RESULTS_DIR = "results"
ARTIFACTS_DIR = "artifacts"
INPUT_COLUMNS = ("image_id", "image", "label")  # input columns with a fixed place; the rest pass through
ARTIFACTS = ("figure", "reconstruction", "counterfactual", "traversal", "diff", "gradcam", "ig", "path", "swap")

_F32_LIST = pa.list_(pa.float32())
RESULT_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("label", pa.int64()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("bundle_id", pa.string()),
    ("p_input", pa.float64()),
    ("p_reconstruction", pa.float64()),
    ("p_counterfactual", pa.float64()),
    ("recon_mse", pa.float64()),
    ("recon_ssim", pa.float64()),
    ("z1", _F32_LIST),
    ("z2", _F32_LIST),
    ("traversal_alphas", _F32_LIST),
    ("traversal_probs", _F32_LIST),
    ("monotone", pa.bool_()),
    ("spearman", pa.float64()),
    ("crossing_alpha", pa.float64()),
    ("used_fallback", pa.bool_()),
    ("steps_used", pa.int64()),
    ("final_loss", pa.float64()),
    *[(f"uri_{name}", pa.string()) for name in ARTIFACTS],
    ("target_class", pa.string()),
    ("warning", pa.string()),
    ("maps_skipped", pa.string()),
    ("bundle_class_consistency", pa.float64()),
    ("bundle_frechet", pa.float64()),
])


ArtifactPolicy = Literal["none", "flagged", "all"]  # which ok rows get PNG artifacts (see worth_a_look)
ARTIFACT_POLICIES: tuple[ArtifactPolicy, ...] = ("none", "flagged", "all")
POSITIVE = 0.5  # p(target) above which the classifier calls an image positive (DESIGN.md's flip rate)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".bmp", ".webp", ".dcm")  # folder input:
# files with these suffixes become rows (those the codec refuses become error rows, never silently missing)
FAILURES_KEPT = 20  # error rows whose reason an ExplainSummary keeps for printing


@dataclass(frozen=True)
class RowFailure:
    """One row written with status "error" and why."""

    image_id: str  # the row's image_id
    error: str  # the message in its error column


@dataclass(frozen=True)
class ExplainSummary:
    """What one explain run did (`explain_shards` in one process, or the Ray Data bulk job)."""

    rows_in: int  # rows in the input
    ok: int  # rows explained in this run
    error: int  # rows written with status "error" in this run
    skipped: int  # rows already in the results for this bundle_id
    seconds: float  # wall time of the run (reading, explaining, writing)
    images_per_s: float  # (ok + error) / seconds
    bundle_id: str  # the bundle_id of the rows written
    results_uri: str  # the results directory, <out>/results
    failures: tuple[RowFailure, ...] = ()  # the first FAILURES_KEPT error rows of this run, with their reasons
    retried: int = 0  # earlier error rows explained again (retry_errors) and replaced by this run's rows

    def describe(self) -> str:
        """One line for people: counts, time, rate and where the results are."""
        retried = f" ({self.retried} earlier error(s) retried)" if self.retried else ""
        return (f"bundle_id {self.bundle_id}: {self.rows_in} row(s) in, {self.ok} explained, {self.error} error(s), "
                f"{self.skipped} already done{retried}; {self.seconds:.1f} s ({self.images_per_s:.2f} images/s); "
                f"results in {self.results_uri}")

    def failure_lines(self) -> list[str]:
        """One line per kept failure (and how many more there were), for the terminal."""
        lines = [f"error: {f.image_id}: {f.error}" for f in self.failures]
        if self.error > len(self.failures):
            lines.append(f"... and {self.error - len(self.failures)} more error row(s) in {self.results_uri}")
        return lines


def passthrough_name(name: str) -> str:
    """The result column of input column `name`: itself, or `input_<name>` where it would clash."""
    return f"input_{name}" if name in RESULT_SCHEMA.names else name


def result_schema(input_schema: pa.Schema) -> pa.Schema:
    """RESULT_SCHEMA followed by the input's passthrough columns (every column but image_id, image, label)."""
    extra = [pa.field(passthrough_name(f.name), f.type) for f in input_schema if f.name not in INPUT_COLUMNS]
    return pa.schema(list(RESULT_SCHEMA) + extra)


def artifact_dir(out_uri: str, image_id: str, bundle_id: str) -> str:
    """`<out>/artifacts/<image_id>/<bundle_id>`, with the id made safe as a single path segment."""
    safe = quote(image_id, safe="-_.")
    safe = f"_{safe}" if safe in ("", ".", "..") else safe
    parts = [ARTIFACTS_DIR, safe] + ([quote(bundle_id, safe="-_.")] if bundle_id else [])
    return storage.join(out_uri, *parts)


def write_artifacts(
    expl: Explanation, directory: str, *, settings: storage.StorageSettings | None = None
) -> dict[str, str | None]:
    """Write the PNGs of one explanation under `directory`; returns {"uri_<name>": uri or None}."""
    from raygan.render import explanation_figure, png_bytes, traversal_strip

    pictures: dict[str, Any] = {
        "figure": explanation_figure(expl),
        "reconstruction": png_bytes(expl.reconstruction, kind="image"),
        "counterfactual": png_bytes(expl.counterfactual, kind="image"),
        "traversal": traversal_strip(expl.traversal_frames, expl.traversal_probs, expl.traversal_alphas),
    }
    for name in ("diff", "gradcam", "ig", "path", "swap"):
        if name in expl.maps:
            pictures[name] = png_bytes(expl.maps[name], kind="map")
    uris: dict[str, str | None] = {f"uri_{name}": None for name in ARTIFACTS}
    for name, picture in pictures.items():
        uri = storage.join(directory, f"{name}.png")
        data = picture if isinstance(picture, bytes) else png_bytes(picture)
        storage.write_bytes(uri, data, settings=settings)
        uris[f"uri_{name}"] = uri
    return uris


def worth_a_look(expl: Explanation) -> bool:
    """True for an explanation a person should look at, the rows the "flagged" artifacts policy draws.

    That is a traversal that is not monotone (the classifier does not rise steadily along the
    walk), one that walked the fallback direction (the image's own z2 was ~0), or a positive call
    (p_input > 0.5) whose counterfactual stays positive (p_counterfactual >= 0.5: it did not flip).
    The bundle's quality-gate warning is deliberately not a criterion: it is the same for every row
    of a bundle (and already on every row), so it would turn "flagged" into "all". Error rows
    have no explanation and never get pictures.
    """
    did_not_flip = expl.p_input > POSITIVE and expl.p_counterfactual >= POSITIVE
    return (not expl.monotone) or expl.used_fallback or did_not_flip


def _base_row(image_id: str, bundle_id: str, explainer: Explainer, passthrough: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {name: None for name in RESULT_SCHEMA.names}
    quality = explainer.quality
    skipped = "; ".join(f"{name}: {why}" for name, why in sorted(explainer.maps_skipped.items())) or None
    row.update(image_id=image_id, bundle_id=bundle_id, target_class=explainer.classifier.target_name,
               warning=quality.warning, maps_skipped=skipped, bundle_class_consistency=quality.class_consistency,
               bundle_frechet=quality.frechet)
    row.update({passthrough_name(k): v for k, v in passthrough.items()})
    return row


def _ok_fields(expl: Explanation) -> dict[str, Any]:
    return {
        "status": "ok",
        "p_input": expl.p_input,
        "p_reconstruction": expl.p_reconstruction,
        "p_counterfactual": expl.p_counterfactual,
        "recon_mse": expl.recon_mse,
        "recon_ssim": expl.recon_ssim,
        "z1": expl.z1.float().tolist(),
        "z2": expl.z2.float().tolist(),
        "traversal_alphas": list(expl.traversal_alphas),
        "traversal_probs": list(expl.traversal_probs),
        "monotone": expl.monotone,
        "spearman": expl.spearman,
        "crossing_alpha": expl.crossing_alpha,
        "used_fallback": expl.used_fallback,
        "steps_used": expl.steps_used,
        "final_loss": expl.extras.get("final_loss"),
    }


def explain_rows(
    rows: pa.Table,
    out_uri: str,
    *,
    explainer: Explainer,
    skip: set[tuple[str, str]],
    settings: storage.StorageSettings | None = None,
    artifacts: ArtifactPolicy = "all",
) -> list[dict[str, Any]]:
    """Explain the input-shard rows of `rows` (one batch) and write the PNG artifacts `artifacts` asks for.

    Returns one result dict per row not in `skip` (keys: `result_schema(rows.schema).names`), in
    input order; a row whose image is null or does not decode gets status "error" and the message.
    Rows without pictures (policy "none", or "flagged" and not `worth_a_look`) keep null uri_* columns.
    """
    if artifacts not in ARTIFACT_POLICIES:
        raise ValueError(f"artifacts must be one of {ARTIFACT_POLICIES}, got {artifacts!r}")
    bundle_id = explainer.bundle_id
    cols = rows.to_pydict()
    ids = [str(i) for i in cols["image_id"]]
    labels = cols.get("label", [None] * len(ids))
    others = [k for k in cols if k not in INPUT_COLUMNS]
    out: list[dict[str, Any]] = []
    todo: list[tuple[int, Any]] = []  # (position in out, decoded image [C, S, S])
    for i, image_id in enumerate(ids):
        if (image_id, bundle_id) in skip:
            continue
        row = _base_row(image_id, bundle_id, explainer, {k: cols[k][i] for k in others})
        data = cols["image"][i]
        try:
            if labels[i] is not None:
                # A class index, or a class name from classifier.json (stored as its index).
                row["label"] = label_index(labels[i], explainer.classifier.spec.classes)
            if data is None:
                raise ImageDecodeError("image is null")
            todo.append((len(out), decode_image(bytes(data), size=explainer.image_size, channels=explainer.channels)))
        except (ImageDecodeError, ValueError) as e:
            row.update(status="error", error=str(e))
        out.append(row)
    if todo:
        import torch

        images = torch.stack([img for _, img in todo])  # [N, C, S, S]
        explanations = explainer.explain(images, image_ids=[out[j]["image_id"] for j, _ in todo])
        for (j, _), expl in zip(todo, explanations, strict=True):
            out[j].update(_ok_fields(expl))
            if artifacts == "all" or (artifacts == "flagged" and worth_a_look(expl)):
                out[j].update(write_artifacts(expl, artifact_dir(out_uri, expl.image_id, bundle_id),
                                              settings=settings))
    return out


def write_results(
    rows: list[dict[str, Any]], out_uri: str, *, schema: pa.Schema, settings: storage.StorageSettings | None = None
) -> str:
    """Append `rows` as a new `<out>/results/part-<UTC time>-<uuid8>.parquet`; returns its URI."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    uri = storage.join(out_uri, RESULTS_DIR, f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet")
    return storage.write_parquet(pa.Table.from_pylist(rows, schema=schema), uri, settings)


def existing_keys(out_uri: str, *, settings: storage.StorageSettings | None = None,
                  ok_only: bool = False) -> set[tuple[str, str]]:
    """(image_id, bundle_id) of every row already under `<out>/results/` (of the "ok" rows with `ok_only`)."""
    keys: set[tuple[str, str]] = set()
    for uri in storage.list_files(storage.join(out_uri, RESULTS_DIR), suffix=".parquet", settings=settings):
        fs, path = storage.filesystem(uri, settings)
        table = pq.read_table(path, filesystem=fs, columns=["image_id", "bundle_id", "status"])
        ids, bundles, status = (table[c].to_pylist() for c in ("image_id", "bundle_id", "status"))
        keys.update((i, b) for i, b, s in zip(ids, bundles, status, strict=True) if not ok_only or s == "ok")
    return keys


def result_files(out_uri: str, *, settings: storage.StorageSettings | None = None) -> list[str]:
    """The Parquet files under `<out>/results/`."""
    return storage.list_files(storage.join(out_uri, RESULTS_DIR), suffix=".parquet", settings=settings)


def drop_rows(files: list[str], keys: set[tuple[str, str]], *, status: str,
              settings: storage.StorageSettings | None = None) -> int:
    """Rewrite those of the result `files` holding rows with these (image_id, bundle_id) keys and `status`
    without them (atomically, file by file); returns the rows dropped. Used after a retry wrote their new rows."""
    import pyarrow.compute as pc

    dropped = 0
    for uri in files:
        fs, path = storage.filesystem(uri, settings)
        table = pq.read_table(path, filesystem=fs)
        hit = pa.array([(i, b) in keys and s == status for i, b, s in zip(
            table["image_id"].to_pylist(), table["bundle_id"].to_pylist(), table["status"].to_pylist(), strict=True)],
            type=pa.bool_())
        n = pc.sum(hit).as_py() or 0
        if n:
            storage.write_parquet(table.filter(pc.invert(hit)), uri, settings)
            dropped += n
    return dropped


def _image_rows(files: list[str], root: str, *, settings: storage.StorageSettings | None) -> pa.Table:
    """Image files as input rows: image_id = the path under `root` without its suffix ('/' kept)."""
    prefix = str(root).rstrip("/") + "/"
    ids = [PurePosixPath(f[len(prefix):] if f.startswith(prefix) else PurePosixPath(f).name).with_suffix("").as_posix()
           for f in files]
    return pa.table({"image_id": ids, "image": [storage.read_bytes(f, settings=settings) for f in files]},
                    schema=pa.schema([("image_id", pa.string()), ("image", pa.binary())]))


def read_input(input_uri: str, *, settings: storage.StorageSettings | None = None) -> pa.Table:
    """Input shards under a prefix or one .parquet file; one image file (named by its stem); or a folder
    of image files without shards (each named by its path under the folder, without the suffix)."""
    files = storage.list_files(input_uri, settings=settings)
    if not files:
        raise FileNotFoundError(f"no such file or folder (or an empty one): {input_uri}")
    single = len(files) == 1 and files[0].rstrip("/") == str(input_uri).rstrip("/")
    if single and not str(input_uri).lower().endswith(".parquet"):
        return _image_rows(files, str(PurePosixPath(str(input_uri).rstrip("/")).parent), settings=settings)
    if not any(f.endswith(".parquet") for f in files):
        images = [f for f in files if f.lower().endswith(IMAGE_SUFFIXES)]
        if not images:
            raise FileNotFoundError(f"no .parquet shards and no image files ({', '.join(IMAGE_SUFFIXES)}) under "
                                    f"{input_uri}")
        return _image_rows(images, str(input_uri), settings=settings)
    return read_table(input_uri, settings=settings)


def explain_shards(
    input_uri: str,
    out_uri: str,
    *,
    explainer: Explainer,
    batch_size: int = 16,
    rows_per_file: int = 1024,
    settings: storage.StorageSettings | None = None,
    progress: bool = True,
    retry_errors: bool = False,
) -> ExplainSummary:
    """Explain every row of the input shards, image folder or image file into `<out>` in one process.

    Rows already explained by this bundle_id are skipped (with `retry_errors`, earlier "error"
    rows are explained again, and the old error rows are removed once the new rows are written);
    results are flushed to a new Parquet file every `rows_per_file` rows, so an interrupted run
    keeps most of its work.
    """
    from raygan import console

    if batch_size < 1 or rows_per_file < 1:
        raise ValueError(f"batch_size and rows_per_file must be >= 1, got {batch_size} and {rows_per_file}")
    start = time.monotonic()
    table = read_input(input_uri, settings=settings)
    schema = result_schema(table.schema)
    earlier_files = result_files(out_uri, settings=settings)  # the files a retry may rewrite (not this run's)
    done = existing_keys(out_uri, settings=settings, ok_only=retry_errors)
    earlier = existing_keys(out_uri, settings=settings) - done if retry_errors else set()
    ids = table["image_id"].to_pylist()
    todo = [i for i, image_id in enumerate(ids) if (image_id, explainer.bundle_id) not in done]
    ok = error = 0
    failures: list[RowFailure] = []
    buffer: list[dict[str, Any]] = []
    bar = console.progress(desc="explain", total=len(todo), unit="img", disable=not progress)
    for lo in range(0, len(todo), batch_size):
        rows = explain_rows(table.take(todo[lo:lo + batch_size]), out_uri, explainer=explainer, skip=set(),
                            settings=settings)
        ok += sum(r["status"] == "ok" for r in rows)
        error += sum(r["status"] == "error" for r in rows)
        failures += [RowFailure(r["image_id"], r["error"]) for r in rows if r["status"] == "error"]
        buffer.extend(rows)
        if len(buffer) >= rows_per_file:
            write_results(buffer, out_uri, schema=schema, settings=settings)
            buffer = []
        bar.update(len(rows))
    bar.close()
    if buffer:
        write_results(buffer, out_uri, schema=schema, settings=settings)
    retried = {(ids[i], explainer.bundle_id) for i in todo} & earlier
    if retried:  # only now, after their new rows are written: a crash before this leaves both, never neither
        drop_rows(earlier_files, retried, status="error", settings=settings)
    seconds = time.monotonic() - start
    return ExplainSummary(
        rows_in=len(ids), ok=ok, error=error, skipped=len(ids) - len(todo), seconds=seconds,
        images_per_s=(ok + error) / seconds if seconds > 0 else 0.0, bundle_id=explainer.bundle_id,
        results_uri=storage.join(out_uri, RESULTS_DIR), failures=tuple(failures[:FAILURES_KEPT]),
        retried=len(retried),
    )


__all__ = [
    "ARTIFACTS", "ARTIFACT_POLICIES", "ArtifactPolicy", "ExplainSummary", "IMAGE_SUFFIXES", "RESULT_SCHEMA", "RowFailure", "artifact_dir", "drop_rows",
    "existing_keys", "explain_rows", "explain_shards", "read_input", "result_files", "result_schema",
    "worth_a_look", "write_artifacts",
    "write_results",
]
