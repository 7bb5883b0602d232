"""The full-pipeline sanity check at the tiny preset: three pipelines, their similarities, the document."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from raygan.fidelity.sanity import OTHER_IMAGE, SanityConfig, compare, run_sanity


def test_compare_scores_identical_pipelines_as_identical() -> None:
    g = torch.Generator().manual_seed(0)
    maps = {k: torch.rand(4, 1, 16, 16, generator=g) for k in ("diff", "path", "swap", "gradcam", "ig")}
    run = {"maps": maps, "curves": torch.rand(4, 5, generator=g)}
    other = {"maps": {k: torch.rand(4, 1, 16, 16, generator=g) for k in maps}, "curves": torch.rand(4, 5, generator=g)}
    rows = compare({"trained": run, "randomised": run, "permuted": other})
    same = {r["metric"]: r["mean"] for r in rows if r["variant"] == "randomised" and r["method"] == "raygan"}
    assert abs(same["map ssim"] - 1.0) < 1e-4 and abs(same["map spearman"] - 1.0) < 1e-6
    assert abs(same["traversal curve spearman"] - 1.0) < 1e-6
    assert same["traversal curve mean abs(p - p_trained)"] == 0.0
    floor = {r["metric"]: r["mean"] for r in rows if r["variant"] == OTHER_IMAGE and r["method"] == "raygan"}
    assert set(floor) == {"map ssim", "map spearman"} and floor["map ssim"] < 0.5  # other images: unrelated noise
    different = {r["metric"]: r["mean"] for r in rows if r["variant"] == "permuted" and r["method"] == "raygan"}
    assert different["map ssim"] < 0.5 and abs(different["map spearman"]) < 0.5


def test_tiny_sanity_run(tmp_path: Path) -> None:
    config = SanityConfig(out=str(tmp_path / "runs"), docs=str(tmp_path / "docs"), preset="tiny", phantoms=120,
                          explain=4, classifier_epochs=1, gan_epochs=1, workers=1)
    document = run_sanity(config, log=lambda _: None)
    saved = json.loads((tmp_path / "docs" / "fidelity-sanity.json").read_text())
    assert saved["target"]["metric"].startswith("mean SSIM")
    assert {r["variant"] for r in document["rows"]} == {"randomised", "permuted", OTHER_IMAGE}
    assert document["reused"] is False
    assert all(r["n"] == 4 for r in document["rows"] if r["metric"] == "map ssim")  # every explained image scored
    assert set(document["runs"]) == {"trained", "randomised", "permuted"}
    assert "Full-pipeline sanity check" in (tmp_path / "docs" / "fidelity-sanity.md").read_text()
    # A second run with the same settings reuses the three pipelines and gives the same rows.
    again = run_sanity(config, log=lambda _: None)
    assert again["reused"] is True and again["rows"] == document["rows"]
