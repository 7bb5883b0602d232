"""dataset_report over a small synthetic results table, write_dataset_report and `raygan report`."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from raygan import storage
from raygan.cli import main
from raygan.render import ReportError, dataset_report, write_dataset_report

KINDS = ["centre", "corner", "centre", "corner", "centre", "centre"]


def _local_reader(uri: str) -> bytes:
    return Path(uri).read_bytes()


def _shortcut_order(page: str) -> list[str]:
    """image_ids in the order the shortcut table lists them."""
    table = page[page.index("Images whose maps look at the border"):]
    table = table[: table.index("</table>")]
    return re.findall(r'class="mono"[^>]*>([a-z]+-\d+)<', table)


def test_border_heavy_images_come_first(tmp_path: Path, write_results) -> None:
    results = write_results(str(tmp_path), kinds=KINDS, lungs=True, markers=True)
    page = dataset_report(results, reader=_local_reader, title="dataset")
    order = _shortcut_order(page)
    assert sorted(order) == sorted(f"{k}-{i}" for i, k in enumerate(KINDS))
    assert set(order[:2]) == {"corner-1", "corner-3"}
    assert "outside lungs" in page  # the lung_mask column adds the outside-lung share
    assert "with shortcut" in page and "100.0% on shortcut" in page  # shortcut_mask: how many carry one, map mass on it
    # Every image id, the error with its message, the label table, distributions, inline images.
    assert "broken-0" in page and "cannot decode image (3 bytes, starting b&#x27;xyz&#x27;): broken 0" in page
    assert "By label" in page and "label 0" in page and "label 1" in page
    assert page.count("data:image/png;base64,") >= 3 + len(KINDS) * 2  # charts, mean maps, thumbnails
    assert "file://" + str(tmp_path / "artifacts" / "corner-1" / "figure.png") in page


def test_maps_given_directly_and_figure_links_rebased(tmp_path: Path, write_results) -> None:
    from raygan.render.regions import decode_map

    results = write_results(str(tmp_path), kinds=KINDS)
    maps = {f"{k}-{i}": {"diff": decode_map((tmp_path / "artifacts" / f"{k}-{i}" / "diff.png").read_bytes())}
            for i, k in enumerate(KINDS)}
    page = dataset_report(results, maps=maps, map_names=("diff",), artifact_base="https://example.org/run")
    assert _shortcut_order(page)[:2] in (["corner-1", "corner-3"], ["corner-3", "corner-1"])
    assert 'href="https://example.org/run/artifacts/corner-1/figure.png"' in page
    assert "Maps are stored for" not in page
    # A bulk job with --artifacts flagged stores maps for some rows only: the page says the maps cover a subset.
    page = dataset_report(results, maps={k: maps[k] for k in ("corner-1", "centre-2")}, map_names=("diff",))
    assert "Maps are stored for 2 of the 6 explained rows" in page


def test_without_maps_the_report_still_summarises(tmp_path: Path, write_results) -> None:
    page = dataset_report(write_results(str(tmp_path), kinds=KINDS, errors=3), title="no maps")
    assert "No attribution maps" in page and page.count("broken-") == 3
    assert re.search(r">error</td><td class=num>3<", page)


def test_mixed_bundles_are_refused_unless_one_is_chosen(tmp_path: Path, write_results) -> None:
    bundles = ["bundle-a", "bundle-b"] * 3
    results = write_results(str(tmp_path), kinds=KINDS, bundle_ids=bundles)
    with pytest.raises(ReportError, match="2 bundles"):
        dataset_report(results)
    page = dataset_report(results, bundle_id="bundle-b", reader=_local_reader)
    assert "corner-1" in page and "centre-0" not in page
    with pytest.raises(ReportError, match="no rows of bundle"):
        dataset_report(results, bundle_id="nope")


def test_not_a_results_table() -> None:
    import pyarrow as pa

    with pytest.raises(ReportError, match="status"):
        dataset_report(pa.table({"image_id": ["a"]}))


def test_write_dataset_report_and_cli(tmp_path: Path, write_results) -> None:
    out = tmp_path / "run"
    (out / "results").mkdir(parents=True)
    pq.write_table(write_results(str(out), kinds=KINDS), out / "results" / "part-0.parquet")

    written = write_dataset_report(str(out), str(out))  # beside the artifacts: relative links
    assert written == str(out / "report.html")
    page = (out / "report.html").read_text()
    assert 'href="./artifacts/corner-1/figure.png"' in page
    assert _shortcut_order(page)[0].startswith("corner")

    elsewhere = tmp_path / "reports" / "r.html"
    assert main(["report", "--results", str(out / "results"), "--out", str(elsewhere), "--title", "T"]) == 0
    assert "<title>T</title>" in elsewhere.read_text()
    assert main(["report", "--results", str(tmp_path / "missing"), "--out", str(elsewhere)]) == 2


def test_write_dataset_report_on_s3(s3_bucket: str, write_results) -> None:
    import io

    out = storage.join(s3_bucket, "run")
    buf = io.BytesIO()
    pq.write_table(write_results(out, kinds=KINDS), buf)
    storage.write_bytes(storage.join(out, "results", "part-0.parquet"), buf.getvalue())

    written = write_dataset_report(out, storage.join(s3_bucket, "reports"))
    assert written == storage.join(s3_bucket, "reports", "report.html")
    page = storage.read_text(written)
    assert _shortcut_order(page)[:2] in (["corner-1", "corner-3"], ["corner-3", "corner-1"])
    assert f'href="{out}/artifacts/corner-1/figure.png"' in page


def test_quality_gate_and_target_in_the_report(tmp_path: Path, write_results) -> None:
    import pyarrow as pa

    results = write_results(str(tmp_path), kinds=KINDS[:2], errors=0)
    n = results.num_rows
    warning = "generator class consistency 0.750 is below 0.9: the GAN often makes images ..."
    gated = (results.append_column("target_class", pa.array(["covid"] * n))
             .append_column("warning", pa.array([warning] * n))
             .append_column("maps_skipped", pa.array(["gradcam: TorchScript modules do not support hooks"] * n))
             .append_column("bundle_class_consistency", pa.array([0.75] * n))
             .append_column("bundle_frechet", pa.array([12.5] * n)))
    page = dataset_report(gated, reader=_local_reader)
    assert "Bundle quality" in page and "covid" in page and "0.750" in page and "12.5000" in page
    assert 'class="warning">Warning: generator class consistency 0.750 is below 0.9' in page
    assert "Maps not available for this classifier: gradcam: TorchScript" in page
    assert "Bundle quality" not in dataset_report(results, reader=_local_reader)  # older results: no section


def test_report_with_the_shortcut_audit(tmp_path) -> None:
    """`raygan report --bundle --input`: reliance on every *_mask region and the border band, each map's verdict."""
    from bundle_helpers import save_tiny_bundle

    from raygan.bundle import load_bundle
    from raygan.cli import main
    from raygan.data.phantoms import PhantomConfig, write_phantoms
    from raygan.explain.explainer import Explainer
    from raygan.explain.results import explain_shards

    bundle = save_tiny_bundle(tmp_path, steps=3)
    data = str(tmp_path / "phantoms")
    write_phantoms(PhantomConfig(n=12, size=32, seed=0, shortcut_given_positive=1.0, shortcut_given_negative=0.0), data)
    out = str(tmp_path / "explained")
    explain_shards(data, out, explainer=Explainer.from_bundle(load_bundle(bundle), device="cpu"), progress=False)
    plain = tmp_path / "plain.html"
    assert main(["report", "--results", out, "--out", str(plain)]) == 0
    assert "No shortcut verdict can be given" in plain.read_text()
    audited = tmp_path / "audited.html"
    assert main(["report", "--results", out, "--out", str(audited), "--bundle", bundle, "--input", data]) == 0
    page = audited.read_text()
    assert "Shortcut audit" in page and "No shortcut verdict" not in page
    # What the audit recomputes the signed swap map from: every ok row's stored counterfactual, as explained.
    from raygan.render.dataset import load_counterfactuals, read_results

    results = read_results(out)
    size = load_bundle(bundle).gan.image_size
    stored = load_counterfactuals(results, _local_reader, size=size, channels=1)
    ok = {r["image_id"] for r in results.select(["image_id", "status"]).to_pylist() if r["status"] == "ok"}
    assert ok and set(stored) == ok
    assert all(v.shape == (1, size, size) and -1 <= float(v.min()) <= float(v.max()) <= 1 for v in stored.values())
    for region in ("shortcut_mask", "mask", "lung_mask", "border band"):
        assert f"<td>{region}</td>" in page, region
