"""`raygan demo` end to end at the tiny preset: phantoms -> classifier -> GAN (both on Ray Train,
one worker, as `make demo` runs them) -> evaluation -> report; a rerun skips the finished stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raygan.cli import main

TINY_DEMO = ["--preset", "tiny", "--phantoms", "48", "--classifier-epochs", "1", "--gan-epochs", "1", "--images", "2"]


@pytest.mark.timeout(400)
def test_demo_runs_end_to_end_and_resumes(
    ray_session: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *TINY_DEMO]) == 0
    printed = capsys.readouterr().out
    for stage in ("1/5 phantoms", "2/5 classifier", "3/5 GAN", "4/5 evaluation", "5/5 report"):
        assert stage in printed
    summary = json.loads(printed.strip().splitlines()[-1])
    assert 0 <= summary["class_consistency"] <= 1 and 0 <= summary["classifier_accuracy"] <= 1
    page = (out / "report.html").read_text()
    assert page.count("<img") >= 2  # a figure per explained image
    assert "Quality gate: generator class consistency" in page  # the bundle's gate, measured by raygan train
    evaluation = json.loads((out / "evaluation" / "evaluation.json").read_text())
    assert evaluation["sizes"]["class_consistency.samples"] == 250 * 4 * 4  # the demo's draw: 250 z1 x 4 x 4 repeats
    assert {"flip_rate.value", "monotone.share", "reconstruction.mse"} <= set(evaluation["values"])
    assert json.loads((out / "demo.json").read_text())["gan_epochs"] == 1

    # A rerun finds the phantoms and the classifier and does not make them again.
    assert main(["demo", "--out", str(out), *TINY_DEMO]) == 0
    again = capsys.readouterr().out
    assert "1/5 phantoms" not in again and "2/5 classifier" not in again and "5/5 report" in again
