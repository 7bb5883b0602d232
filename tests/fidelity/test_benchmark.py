"""The fidelity benchmark end to end at the tiny preset: cells in worker processes, the summary, the documents."""

from __future__ import annotations

import json
from pathlib import Path

from raygan.cli import main
from raygan.fidelity.benchmark import load_cell


def test_fidelity_benchmark_tiny(tmp_path: Path) -> None:
    out, docs = tmp_path / "runs", tmp_path / "docs"
    args = ["fidelity", "--preset", "tiny", "--out", str(out), "--docs", str(docs), "--seeds", "5", "--workers", "2",
            "--phantoms", "160", "--explain", "8", "--gan-epochs", "1", "--classifier-epochs", "1"]
    assert main(args) == 0
    document = json.loads((docs / "fidelity.json").read_text())
    cells = {(c["world"], c["shortcut_kind"]) for c in document["cells"]}
    assert cells == {("lesion_only", "marker"), ("shortcut_only", "marker"), ("shortcut_only", "stamp"),
                     ("mixed", "marker")}
    keys = {"world", "shortcut_kind", "seed", "method", "n", "reliance_shortcut", "reliance_lesions", "shortcut_mass",
            "shortcut_chance", "lesion_auprc", "lesion_chance", "twin_agreement", "cf_removes_shortcut", "verdict",
            "ci95"}
    assert document["rows"] and all(keys <= set(row) for row in document["rows"])
    assert len(document["rows"]) == 4 * 5  # cells x methods (raygan difference map, traversal attribution and
    # counterfactual swap, Grad-CAM, IG)
    assert {r["seed"] for r in document["pooled"]} == {"all"}
    assert all(r["verdict"] in ("relies", "does not", "unscored") for r in document["rows"])
    assert any(t["target"].startswith("verdict") for t in document["targets"])
    markdown = (docs / "fidelity.md").read_text()
    assert "## Pooled over seeds" in markdown and "stamp" in markdown and "Integrated Gradients" in markdown
    # Finished cells are kept: a rerun skips them and reproduces the same rows.
    finished = sorted((out / "cells").glob("*.json"))
    assert len(finished) == 4 and load_cell(finished[0]).config.seed == 5
    before = {p: p.stat().st_mtime for p in finished}
    assert main(args) == 0
    assert {p: p.stat().st_mtime for p in finished} == before
    assert json.loads((docs / "fidelity.json").read_text())["rows"] == document["rows"]
