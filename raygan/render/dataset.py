"""The dataset report: one self-contained HTML page summarising a whole explanation-results dataset.

Reads the results contract of DESIGN.md (image_id, label, status, error, p_*, traversal_*,
monotone, crossing_alpha, uri_* ...): probability and crossing-alpha distributions by label,
flip and monotone rates, mean difference map and Grad-CAM per class, the images whose maps
look at the border, corners or outside the lungs (where shortcuts live), and every error.
`dataset_report` is pure (a table and maps, or a reader callable, in; HTML out);
`write_dataset_report` is the I/O edge behind `raygan report`.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from raygan.render import charts
from raygan.render import html as H
from raygan.render.figure import MAP_TITLES, MUTED, legend, stack, text_block, tile_row
from raygan.render.images import heatmap, png_bytes, tile_side, upscale
from raygan.render.regions import (
    BORDER_FRACTION, CORNER_FRACTION, MapMass, decode_map, decode_mask, map_mass, mean_map, uniform_edge_share,
)

Reader = Callable[[str], bytes]  # URI -> file content, e.g. raygan.storage.read_bytes
Maps = Mapping[str, Mapping[str, np.ndarray]]  # image_id -> map name -> map [H, W] (float in [0, 1] or uint8)

MAP_NAMES = ("diff", "gradcam")  # the maps a dataset report reads and aggregates
TOP_K = 25  # rows of the shortcut table
ERROR_LIMIT = 500  # error rows listed in full; the rest are counted
THUMB = 64  # px, map thumbnails in the shortcut table
_COLUMNS = (  # what the report reads; everything else (z1, z2, images) stays in Arrow
    "image_id", "label", "status", "error", "bundle_id", "p_input", "p_reconstruction", "p_counterfactual",
    "recon_mse", "recon_ssim", "traversal_alphas", "traversal_probs", "monotone", "spearman", "crossing_alpha",
    "uri_figure", "uri_diff", "uri_gradcam", "uri_ig", "uri_path", "uri_swap", "lung_mask", "shortcut_mask",
    "target_class", "warning", "maps_skipped", "bundle_class_consistency", "bundle_frechet",
)


class ReportError(ValueError):
    """The results cannot be reported as asked (not a results table, or bundles that must not be mixed)."""


@dataclass(frozen=True)
class GroupStats:
    """Summary of the ok rows of one label (key None: rows without a label, or all rows when unlabelled)."""

    key: int | None  # the label
    n: int  # ok rows
    mean_p_input: float  # mean classifier p(positive) of the inputs
    mean_p_counterfactual: float  # mean p(positive) of the counterfactuals G(z1, 0)
    called_positive: int  # rows with p_input > 0.5: the flip rate's denominator
    flipped: int  # of those, rows whose counterfactual has p < 0.5
    monotone: int  # rows whose traversal is monotone
    crossed: int  # rows whose traversal reaches p = 0.5
    median_crossing: float  # median crossing alpha of the rows that cross (nan if none)
    with_shortcut: int | None  # rows whose shortcut_mask is non-empty; None without that column


def _f(value: Any) -> float:
    """A nullable number -> float, nan for null."""
    return math.nan if value is None else float(value)


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if finite else math.nan


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def shortcut_flags(rows: Sequence[Mapping[str, Any]]) -> dict[str, bool] | None:
    """image_id -> whether its shortcut_mask is non-empty; None without a shortcut_mask column."""
    if not rows or "shortcut_mask" not in rows[0]:
        return None
    return {r["image_id"]: r["shortcut_mask"] is not None and bool(decode_mask(r["shortcut_mask"]).any()) for r in rows}


def group_stats(rows: Sequence[Mapping[str, Any]], key: int | None, *,
                markers: Mapping[str, bool] | None = None) -> GroupStats:
    """GroupStats of ok result rows (dicts of the results contract); `markers` from `shortcut_flags`."""
    p_in = [_f(r.get("p_input")) for r in rows]
    p_cf = [_f(r.get("p_counterfactual")) for r in rows]
    positive = [i for i, p in enumerate(p_in) if p > 0.5]
    crossings = [c for c in (_f(r.get("crossing_alpha")) for r in rows) if math.isfinite(c)]
    return GroupStats(
        key=key, n=len(rows), mean_p_input=_mean(p_in), mean_p_counterfactual=_mean(p_cf),
        called_positive=len(positive), flipped=sum(p_cf[i] < 0.5 for i in positive),
        monotone=sum(bool(r.get("monotone")) for r in rows), crossed=len(crossings),
        median_crossing=statistics.median(crossings) if crossings else math.nan,
        with_shortcut=None if markers is None else sum(markers[r["image_id"]] for r in rows),
    )


def _group_name(key: int | None) -> str:
    return "unlabelled" if key is None else f"label {key}"


def _groups(rows: Sequence[Mapping[str, Any]]) -> dict[int | None, list[Mapping[str, Any]]]:
    """Rows by label, labels in ascending order, unlabelled rows last under None."""
    out: dict[int | None, list[Mapping[str, Any]]] = {}
    for key in sorted({r["label"] for r in rows if r.get("label") is not None}):
        out[int(key)] = [r for r in rows if r.get("label") == key]
    unlabelled = [r for r in rows if r.get("label") is None]
    if unlabelled:
        out[None] = unlabelled
    return out


def select_bundle(results: pa.Table, bundle_id: str | None) -> pa.Table:
    """Rows of one bundle (plus rows with no bundle_id); refuses to mix bundles silently (DESIGN.md)."""
    if "bundle_id" not in results.column_names:
        return results
    ids = Counter(b for b in results["bundle_id"].to_pylist() if b is not None)
    if bundle_id is None:
        if len(ids) > 1:
            listing = ", ".join(f"{b} ({n} rows)" for b, n in ids.most_common())
            raise ReportError(f"results hold rows of {len(ids)} bundles: {listing}; choose one with bundle_id "
                             "(raygan report --bundle-id)")
        return results
    if bundle_id not in ids:
        raise ReportError(f"no rows of bundle {bundle_id!r}; the results hold {sorted(ids)}")
    keep = [b is None or b == bundle_id for b in results["bundle_id"].to_pylist()]
    return results.filter(pa.array(keep))


def _read_artifacts(results: pa.Table, reader: Reader, names: Sequence[str], decode: Callable[[bytes], Any],
                    workers: int) -> dict[str, dict[str, Any]]:
    """The stored PNGs (uri_<name>) of the ok rows, read with `reader` on a few threads and decoded;
    image_id -> name -> decode(bytes)."""
    rows = results.select([c for c in ("image_id", "status", *(f"uri_{n}" for n in names))
                           if c in results.column_names]).to_pylist()
    jobs = [(r["image_id"], n, r[f"uri_{n}"]) for r in rows if r.get("status") == "ok"
            for n in names if r.get(f"uri_{n}")]
    # Object storage answers in ~10-50 ms per GET: a few threads make thousands of maps a matter of seconds.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        decoded = list(pool.map(lambda job: decode(reader(job[2])), jobs))
    out: dict[str, dict[str, Any]] = {}
    for (image_id, name, _), values in zip(jobs, decoded, strict=True):
        out.setdefault(image_id, {})[name] = values
    return out


def load_maps(results: pa.Table, reader: Reader, *, names: Sequence[str] = MAP_NAMES,
              workers: int = 8) -> dict[str, dict[str, np.ndarray]]:
    """Read the stored map PNGs (uri_<name>) of the ok rows with `reader`; image_id -> name -> uint8 [H, W]."""
    return _read_artifacts(results, reader, names, decode_map, workers)


def load_counterfactuals(results: pa.Table, reader: Reader, *, size: int, channels: int,
                         workers: int = 8) -> dict[str, Any]:
    """The stored counterfactual PNGs (uri_counterfactual) of the ok rows: image_id -> G(z1, 0) [C, S, S] in
    [-1, 1] (8-bit, as stored), what the audit recomputes the signed swap map from."""
    from raygan.data.codec import decode_image

    def decode(data: bytes) -> Any:
        return decode_image(data, size=size, channels=channels)

    stored = _read_artifacts(results, reader, ("counterfactual",), decode, workers)
    return {image_id: pictures["counterfactual"] for image_id, pictures in stored.items()}


def figure_link(uri: str | None, artifact_base: str | None) -> str | None:
    """Where a figure link points: `artifact_base` + the part of `uri` from 'artifacts/' on, or `uri` itself."""
    if not uri:
        return None
    if artifact_base is not None and "artifacts/" in uri:
        return f"{artifact_base.rstrip('/')}/{uri[uri.rindex('artifacts/'):]}"
    if "://" not in uri and uri.startswith("/"):
        return "file://" + uri
    return uri


# --- sections -----------------------------------------------------------------------------------


def _summary(all_rows: Sequence[Mapping[str, Any]], total: GroupStats, groups: Sequence[GroupStats]) -> str:
    errors = sum(r.get("status") != "ok" for r in all_rows)
    items = [
        (f"{len(all_rows):,}", "result rows"), (f"{total.n:,}", "explained (status ok)"), (f"{errors:,}", "errors"),
        (H.pct(_ratio(total.flipped, total.called_positive)), f"flip rate ({total.flipped}/{total.called_positive})"),
        (H.pct(_ratio(total.monotone, total.n)), "monotone traversals"),
        (H.fmt(total.median_crossing, digits=2), "median crossing α"),
    ]
    headers = ["group", "images", "mean p(input)", "mean p(counterfactual)", "flip rate", "monotone",
               "reaches 0.5", "median crossing α"]
    with_shortcut = total.with_shortcut is not None
    if with_shortcut:
        headers.append("with shortcut")
    rows = []
    for g in [*groups, total]:
        name = "all" if g is total else _group_name(g.key)
        row = [H.esc(name), H.fmt(g.n), H.p_cell(g.mean_p_input), H.p_cell(g.mean_p_counterfactual),
               f"{H.pct(_ratio(g.flipped, g.called_positive))} "
               f"<span class=note>({g.flipped}/{g.called_positive})</span>",
               H.pct(_ratio(g.monotone, g.n)), H.pct(_ratio(g.crossed, g.n)), H.fmt(g.median_crossing, digits=2)]
        if with_shortcut:
            row.append(H.pct(_ratio(g.with_shortcut or 0, g.n)))
        rows.append(row)
    return (
        "<h2>Summary</h2>" + H.cards(items) + "<h3>By label</h3>"
        + H.table(headers, rows, numeric=range(1, len(headers)))
        + '<p class="note">Flip rate: share of images the classifier calls positive (p &gt; 0.5) whose '
          "counterfactual G(z₁, 0) it calls negative. Monotone: p never decreases along the traversal (tolerance "
          "1e-3). Crossing α: where p first reaches 0.5.</p>"
    )


def _quality(all_rows: Sequence[Mapping[str, Any]]) -> str:
    """What the rows explain and the bundle's quality gate, with its warning when it fails."""
    first = next((r for r in all_rows if r.get("target_class") is not None), None)
    if first is None:
        return ""  # results written before rows recorded their target and quality
    consistency, frechet = first.get("bundle_class_consistency"), first.get("bundle_frechet")
    items = [
        (H.esc(first["target_class"]), "target class (p = p(target))"),
        ("n/a" if consistency is None else H.fmt(consistency, digits=3), "generator class consistency (gate 0.9)"),
        ("n/a" if frechet is None else H.fmt(frechet, digits=4), "Frechet distance, generated vs real"),
    ]
    out = "<h2>Bundle quality</h2>" + H.cards(items)
    for warning in sorted({r["warning"] for r in all_rows if r.get("warning")}):
        out += f'<div class="warning">Warning: {H.esc(warning)}</div>'
    for skipped in sorted({r["maps_skipped"] for r in all_rows if r.get("maps_skipped")}):
        out += f'<p class="note">Maps not available for this classifier: {H.esc(skipped)}</p>'
    return out


def _distributions(groups: Mapping[int | None, Sequence[Mapping[str, Any]]]) -> str:
    alphas = [float(a) for rows in groups.values() for r in rows for a in (r.get("traversal_alphas") or [])]
    a_range = (min([0.0, *alphas]), max([1.0, *alphas]))
    panels = [
        ("p(input)", {k: [_f(r.get("p_input")) for r in rows] for k, rows in groups.items()}, (0.0, 1.0)),
        ("p(counterfactual)", {k: [_f(r.get("p_counterfactual")) for r in rows] for k, rows in groups.items()},
         (0.0, 1.0)),
        ("crossing α", {k: [_f(r.get("crossing_alpha")) for r in rows] for k, rows in groups.items()}, a_range),
    ]
    never = ", ".join(f"{_group_name(k)}: {sum(not math.isfinite(_f(r.get('crossing_alpha'))) for r in rows)}"
                      for k, rows in groups.items())
    curves = {k: [(r["traversal_alphas"], r["traversal_probs"]) for r in rows
                  if r.get("traversal_alphas") and r.get("traversal_probs")] for k, rows in groups.items()}
    return (
        "<h2>Distributions</h2>"
        + H.figure(charts.histograms_png(panels), alt="histograms of p(input), p(counterfactual) and crossing alpha",
                   scale=charts.DISPLAY_SCALE,
                   caption=f"Traversals that never reach 0.5 are left out of the crossing-α panel ({never}).")
        + H.figure(charts.curve_bands_png(curves), alt="median traversal curve per label", scale=charts.DISPLAY_SCALE,
                   caption="Median p(positive) along the traversal per label; the band spans the 25th to 75th "
                           "percentile.")
    )


def _mean_maps(groups: Mapping[int | None, Sequence[Mapping[str, Any]]], maps: Maps, names: Sequence[str]) -> str:
    rows_png = []
    for name in names:
        means = {k: mean_map(ms) for k, rows in groups.items()
                 if (ms := [maps[r["image_id"]][name] for r in rows if name in maps.get(r["image_id"], {})])}
        if not means:
            continue
        counts = {k: sum(name in maps.get(r["image_id"], {}) for r in groups[k]) for k in means}
        top = max(float(m.max()) for m in means.values()) or 1.0  # one scale per row: classes stay comparable
        side = tile_side(next(iter(means.values())).shape[-1], 160)
        tiles = [(f"{_group_name(k)} (n={counts[k]})", heatmap(m / top), None, MUTED) for k, m in means.items()]
        rows_png.append(stack([text_block([(f"mean {MAP_TITLES.get(name, name)}", 15, True, "#1f2328")]),
                               tile_row(tiles, side=side, trailer=legend(side, top=f"{top:.2f}", bottom="0"))],
                              gap=4, pad=0))
    if not rows_png:
        return ""
    return H.figure(png_bytes(stack(rows_png, gap=14, pad=8)), alt="mean maps per label",
                    caption="Mean of the per-image maps (each normalised to a maximum of 1) over the explained images "
                            "of each label; each row shares one colour scale.")


@dataclass(frozen=True)
class ScoredImage:
    """One ok row with the region shares of each of its maps."""

    score: float  # the largest edge share over its maps (-1 when every map is all zero): the ranking key
    row: Mapping[str, Any]  # the result row
    masses: dict[str, MapMass]  # map name -> where that map puts its mass


def score_images(rows: Sequence[Mapping[str, Any]], maps: Maps, names: Sequence[str]) -> list[ScoredImage]:
    """Region shares of every row that has maps, highest edge share first (lung/shortcut masks from their columns)."""
    scored = []
    for r in rows:
        own = maps.get(r["image_id"], {})
        if not any(n in own for n in names):
            continue
        lung = decode_mask(r["lung_mask"]) if r.get("lung_mask") else None
        shortcut = decode_mask(r["shortcut_mask"]) if r.get("shortcut_mask") else None
        masses = {n: map_mass(own[n], lung_mask=lung, shortcut_mask=shortcut) for n in names if n in own}
        edges = [m.edge for m in masses.values() if math.isfinite(m.edge)]
        scored.append(ScoredImage(max(edges) if edges else -1.0, r, masses))
    scored.sort(key=lambda item: item.score, reverse=True)
    return scored


_FIELDS = (("edge", "border+corners"), ("corners", "corners"), ("outside_lung", "outside lungs"),
           ("on_shortcut", "on shortcut"))


def _region_summary(scored: Sequence[ScoredImage], names: Sequence[str]) -> str:
    """Mean region shares per label and map: the dataset-level view of the shortcut table."""
    keys = list(_groups([s.row for s in scored]))
    fields = [(f, label) for f, label in _FIELDS
              if any(getattr(m, f) is not None for s in scored for m in s.masses.values())]
    rows = []
    for name in names:
        for key in keys:
            masses = [s.masses[name] for s in scored if name in s.masses and s.row.get("label") == key]
            if not masses:
                continue
            means = [_mean([_f(getattr(m, f)) for m in masses if getattr(m, f) is not None]) for f, _ in fields]
            rows.append([H.esc(MAP_TITLES.get(name, name)), H.esc(_group_name(key)), H.fmt(len(masses)),
                         *(H.pct(v) for v in means)])
    headers = ["map", "group", "images", *(f"mean share {label}" for _, label in fields)]
    return H.table(headers, rows, numeric=range(2, len(headers)))


def _shortcut_table(scored: Sequence[ScoredImage], maps: Maps, names: Sequence[str], *,
                    artifact_base: str | None, top_k: int) -> str:
    """The top-k images by edge share, with map thumbnails and a link to each figure."""
    headers = ["image", "label", "p(input)", "p(counterfactual)", *(f"{MAP_TITLES.get(n, n)} map" for n in names)]
    table_rows = []
    for item in scored[:top_k]:
        r = item.row
        link = figure_link(r.get("uri_figure"), artifact_base)
        name = H.esc(r["image_id"])
        cells = [f'<a class="mono" href="{H.esc(link)}">{name}</a>' if link else f'<span class="mono">{name}</span>',
                 H.fmt(r.get("label")), H.p_cell(_f(r.get("p_input"))), H.p_cell(_f(r.get("p_counterfactual")))]
        for n in names:
            own = maps[r["image_id"]]
            if n not in own:
                cells.append("—")
                continue
            thumb = H.img(png_bytes(upscale(heatmap(own[n]), max(THUMB, own[n].shape[-1]))), alt=f"{n} map",
                          cls="thumb")
            mass = item.masses[n]
            lines = [f"<b>{H.pct(mass.edge)}</b> border+corners"] + [
                f"{H.pct(getattr(mass, f))} {label}" for f, label in _FIELDS[1:] if getattr(mass, f) is not None
            ]
            cells.append(f'<div class="mapcell">{thumb}<div>{"<br>".join(lines)}</div></div>')
        table_rows.append(cells)
    return H.table(headers, table_rows, numeric=[2, 3])


def _shortcuts(rows: Sequence[Mapping[str, Any]], maps: Maps, names: Sequence[str], *,
               artifact_base: str | None, top_k: int) -> str:
    """Region shares per label, then the images whose maps look at the border and corners most."""
    scored = score_images(rows, maps, names)
    if not scored:
        return ""
    shape = next(iter(maps[scored[0].row["image_id"]].values())).shape
    return (
        f"<h3>Where the mass falls</h3>"
        f'<p class="note">Share of each map\'s mass within {BORDER_FRACTION:.0%} of an edge or in the '
        f"{CORNER_FRACTION:.0%} corner squares (where burned-in markers live), outside the lung fields and on the "
        f"planted shortcut (where the input has those masks). A map with no preference puts "
        f"{uniform_edge_share(*shape):.0%} of its mass at the border and corners.</p>"
        + _region_summary(scored, names)
        + f"<h3>Images whose maps look at the border and corners (top {min(top_k, len(scored))} of {len(scored)})</h3>"
          '<p class="note">Sorted by the larger border+corners share of the maps. Each image links to its '
          "figure.</p>"
        + _shortcut_table(scored, maps, names, artifact_base=artifact_base, top_k=top_k)
    )


def _status(all_rows: Sequence[Mapping[str, Any]]) -> str:
    counts = Counter(str(r.get("status")) for r in all_rows)
    out = "<h2>Status</h2>" + H.table(["status", "rows"], [[H.esc(s), H.fmt(n)] for s, n in counts.most_common()],
                                      numeric=[1])
    bundles = Counter(r.get("bundle_id") for r in all_rows if r.get("bundle_id"))
    if bundles:
        listing = ", ".join(f"<code>{H.esc(b)}</code> ({n} rows)" for b, n in bundles.items())
        out += f'<p class="note">Bundle: {listing}</p>'
    errors = [r for r in all_rows if r.get("status") != "ok"]
    if errors:
        rows = [[f'<span class="mono">{H.esc(r["image_id"])}</span>', H.esc(r.get("status")),
                 f'<div class="error-msg">{H.esc(r.get("error") or "")}</div>'] for r in errors[:ERROR_LIMIT]]
        out += "<h3>Errors</h3>" + H.table(["image", "status", "message"], rows)
        if len(errors) > ERROR_LIMIT:
            out += f'<p class="note">… and {len(errors) - ERROR_LIMIT:,} more error rows not listed.</p>'
    return out


def dataset_report(results: pa.Table, *, title: str = "raygan dataset report", artifact_base: str | None = None,
                   maps: Maps | None = None, reader: Reader | None = None, bundle_id: str | None = None,
                   map_names: Sequence[str] = MAP_NAMES, top_k: int = TOP_K,
                   audit: Sequence[Any] | None = None) -> str:
    """One self-contained HTML page for a results table (DESIGN.md's results contract).

    Maps come from `maps` (image_id -> name -> [H, W]) or are read through `reader` from the
    uri_<name> columns; with neither, the map sections are left out. `artifact_base` rewrites figure
    links (e.g. "." for a report written beside the artifacts); `bundle_id` picks one bundle's rows.
    `audit` (`raygan.fidelity.audit.RegionAudit`s) adds the shortcut verdicts; without it the page
    says what a verdict needs.
    """
    missing = [c for c in ("image_id", "status") if c not in results.column_names]
    if missing:
        raise ReportError(f"not an explanation-results table: no column(s) {missing}; found {results.column_names}")
    results = select_bundle(results, bundle_id)
    if maps is None and reader is not None:
        maps = load_maps(results, reader, names=map_names)
    all_rows = results.select([c for c in _COLUMNS if c in results.column_names]).to_pylist()
    ok = [r for r in all_rows if r.get("status") == "ok"]
    groups = _groups(ok)
    markers = shortcut_flags(ok)  # decoded once: the shortcut masks are the slowest column to read
    stats = [group_stats(rows, k, markers=markers) for k, rows in groups.items()]
    body = [_quality(all_rows), _summary(all_rows, group_stats(ok, None, markers=markers), stats)]
    if ok:
        body.append(_distributions(groups))
    if maps and ok:
        with_maps = sum(bool(maps.get(r["image_id"])) for r in ok)
        # A bulk job's artifacts policy ("flagged", its default) stores maps for a subset: say so, never average it
        # silently as if it were every row.
        subset = ('' if with_maps == len(ok) else
                  f'<p class="note">Maps are stored for {with_maps:,} of the {len(ok):,} explained rows (e.g. a bulk '
                  f'job with --artifacts flagged keeps only the rows worth a look): the means and rankings below '
                  f'cover those rows only.</p>')
        body.append("<h2>Where the maps look</h2>" + subset + _mean_maps(groups, maps, map_names)
                    + _shortcuts(ok, maps, map_names, artifact_base=artifact_base, top_k=top_k))
    elif ok:
        body.append('<h2>Where the maps look</h2><p class="note">No attribution maps were given or found.</p>')
    from raygan.render.report import audit_section

    body.append("<h2>Shortcut audit: what the classifier relies on, and which map says so</h2>"
                + audit_section(list(audit or [])))
    body.append(_status(all_rows))
    return H.page(title, "".join(body), subtitle=f"{len(all_rows):,} result rows · {len(ok):,} explained")


# --- I/O edge -----------------------------------------------------------------------------------


def _results_location(uri: str, settings: Any) -> tuple[str, str]:
    """(results prefix, output root): `uri` may be the explain output root or its results/ prefix."""
    from raygan import storage

    nested = storage.join(uri, "results")
    if storage.list_files(nested, suffix=".parquet", settings=settings):
        return nested, uri
    if not storage.list_files(uri, suffix=".parquet", settings=settings):
        raise FileNotFoundError(f"no explanation results (.parquet) under {uri} or {nested}")
    stripped = uri.rstrip("/")
    root = stripped[: -len("/results")] if stripped.endswith("/results") else stripped
    return uri, root


def read_results(uri: str, *, settings: Any = None) -> pa.Table:
    """Every results Parquet file under `uri` (an explain output root or its results/ prefix) as one table."""
    import pyarrow.parquet as pq

    from raygan import storage

    prefix, _ = _results_location(uri, settings)
    tables = []
    for file_uri in storage.list_files(prefix, suffix=".parquet", settings=settings):
        fs, path = storage.filesystem(file_uri, settings)
        tables.append(pq.read_table(path, filesystem=fs))
    return pa.concat_tables(tables, promote_options="default")


def write_dataset_report(results_uri: str, out_uri: str, *, artifact_base: str | None = None,
                         bundle_id: str | None = None, title: str | None = None, settings: Any = None,
                         bundle_uri: str | None = None, input_uri: str | None = None) -> str:
    """Read results (and their map PNGs), write the dataset report's HTML; returns the URI written.

    `out_uri` is an .html file or a directory (report.html inside it). A report written into the
    output root links its figures relatively ("./artifacts/..."), so the folder can be moved or synced.
    With `bundle_uri` (its classifier) and `input_uri` (the explained shards: images and any *_mask
    columns) the page gains the shortcut audit: reliance by intervention beside each map's verdict.
    """
    from raygan import storage

    _, root = _results_location(results_uri, settings)
    target = out_uri if out_uri.endswith((".html", ".htm")) else storage.join(out_uri, "report.html")
    if artifact_base is None and storage.join(root, "report.html").rsplit("/", 1)[0] == target.rsplit("/", 1)[0]:
        artifact_base = "."
    results = select_bundle(read_results(results_uri, settings=settings), bundle_id)
    reader: Reader = lambda uri: storage.read_bytes(uri, settings)  # noqa: E731
    maps = load_maps(results, reader, names=("diff", "path", "swap", "gradcam", "ig"))
    audit = None
    if bundle_uri is not None and input_uri is not None:
        from raygan.bundle import load_bundle
        from raygan.data.shards import read_table
        from raygan.fidelity.audit import audit_shards

        bundle = load_bundle(bundle_uri, settings=settings)
        size, channels = bundle.gan.image_size, bundle.gan.channels
        audit = audit_shards(bundle.classifier, read_table(input_uri, settings=settings), maps, size=size,
                             channels=channels, counterfactuals=load_counterfactuals(results, reader, size=size,
                                                                                     channels=channels))
    text = dataset_report(
        results,
        title=title or f"raygan dataset report — {root}",
        artifact_base=artifact_base,
        maps=maps,
        audit=audit,
    )
    storage.write_text(target, text, settings)
    return target
