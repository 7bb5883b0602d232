"""The user path end to end in Train V2 local mode (--workers 0): `raygan train-classifier`,
`raygan train` (and its resume), `raygan evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raygan.cli import main


@pytest.mark.timeout(400)
def test_train_classifier_then_train_then_evaluate(
    ray_session: None, phantom_shards: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, bundle = str(tmp_path / "classifier"), str(tmp_path / "bundle")
    assert main(["train-classifier", "--data", phantom_shards, "--out", spec, "--preset", "tiny",
                 "--epochs", "1", "--workers", "0", "--batch-size", "8"]) == 0
    assert "held-out test: accuracy" in capsys.readouterr().out

    assert main(["train", "--data", phantom_shards, "--classifier", spec, "--out", bundle, "--preset", "tiny",
                 "--epochs", "1", "--workers", "0", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert f"bundle written to {bundle}: 1 epoch(s)" in out and "class consistency" in out
    assert "explains class '1'" in out and "quality gate: generator class consistency" in out
    first = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert first["target"] == {"index": 1, "name": "1", "activation": "softmax"}
    assert first["quality"]["consistency_samples"] == 4 * 8 and first["quality"]["frechet"] is not None
    # Rerun with more epochs: local mode keeps its own checkpoints, so this resumes at epoch 1.
    assert main(["train", "--data", phantom_shards, "--classifier", spec, "--out", bundle, "--preset", "tiny",
                 "--epochs", "2", "--workers", "0", "--batch-size", "8"]) == 0
    assert f"bundle written to {bundle}: 2 epoch(s) (this run from epoch 1)" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "bundle" / "samples").iterdir()) == ["epoch-0000.png", "epoch-0001.png"]
    meta = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert meta["extras"]["final_metrics"]["epoch"] == 1 and meta["train"]["epochs"] == 2

    assert main(["evaluate", "--bundle", bundle, "--n-z1", "4", "--repeats", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "class_consistency" in out and "accuracy" in out
    report = json.loads((tmp_path / "bundle" / "evaluation.json").read_text())
    assert report["sizes"]["class_consistency.samples"] == 2 * 4 * 4
    assert 0 <= report["values"]["class_consistency.accuracy"] <= 1


def test_missing_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--bundle", str(tmp_path / "none")]) == 2
    assert "no bundle at" in capsys.readouterr().err


def test_train_refuses_bad_target_size_and_classifier(classifier_spec: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "b"), "--preset", "tiny"]
    assert main([*base, "--classifier", classifier_spec, "--target-class", "covid"]) == 2
    assert "unknown class 'covid'" in capsys.readouterr().err
    assert main([*base, "--classifier", classifier_spec, "--image-size", "48"]) == 2
    assert "power-of-two image_size" in capsys.readouterr().err
    assert main([*base, "--classifier", str(tmp_path / "nowhere")]) == 2
    assert "raygan train: error:" in capsys.readouterr().err
