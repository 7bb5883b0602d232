"""explanation_report: one self-contained HTML page."""

from __future__ import annotations

import base64
import io
import re

from PIL import Image

from raygan.render import explanation_report


def test_report_is_self_contained_and_complete(make_explanation) -> None:
    explanations = [make_explanation(f"img-{i}", shift=0.2 + 0.2 * i) for i in range(3)]
    explanations.append(make_explanation("<script>alert(1)</script>", crossing=False))
    metrics = {"class_consistency": 0.9115, "flip_rate": 0.75}
    page = explanation_report(explanations, metrics, title="Audit & review")

    assert page.startswith("<!DOCTYPE html>") and "<title>Audit &amp; review</title>" in page
    for e in explanations[:3]:
        assert e.image_id in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "class_consistency" in page and "0.9115" in page and "flip_rate" in page and "0.7500" in page
    # Nothing external: no http(s) URL, no src/href pointing anywhere but inline data or anchors.
    assert not re.search(r"https?://", page)
    assert all(v.startswith(("data:image/png;base64,", "#")) for v in re.findall(r'(?:src|href)="([^"]*)"', page))
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2 * len(explanations) + 1  # figure + curve per image, and the combined chart
    for data in images:
        Image.open(io.BytesIO(base64.b64decode(data))).verify()


def test_report_with_no_metrics(make_explanation) -> None:
    page = explanation_report([make_explanation()], {}, title="t")
    assert "No metrics" in page
