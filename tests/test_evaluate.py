"""End to end: evaluate_bundle on a tiny untrained bundle and a few phantom rows."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from raygan.bundle import load_bundle, save_bundle
from raygan.config import preset
from raygan.data.phantoms import PhantomConfig, write_phantoms
from raygan.evaluate import EvaluationConfig, evaluate_bundle, to_json, to_markdown, write_report
from raygan.models.classifier import build_classifier, factory_path
from raygan.models.frozen import ClassifierSpec, save_classifier
from raygan.models.generator import build_generator

TINY = preset("tiny")
N_IMAGES = 4


@pytest.fixture(scope="module")
def bundle_and_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("evaluate")
    torch.manual_seed(0)
    size = TINY.gan.image_size
    spec = ClassifierSpec(format="factory", weights="weights.pt", factory=factory_path("small_cnn"),
                          factory_kwargs={"image_size": size}, size=size)
    classifier_uri = save_classifier(build_classifier("small_cnn", image_size=size), root / "classifier", spec=spec)
    bundle = save_bundle(str(root / "bundle"), generator=build_generator(TINY.gan).eval(),
                         classifier_uri=str(classifier_uri), train=TINY.train,
                         inversion=dataclasses.replace(TINY.inversion, steps=4), traversal=TINY.traversal)
    # Every phantom positive and marked, so each carries a lesion and a shortcut to find.
    data = str(root / "phantoms")
    write_phantoms(PhantomConfig(n=N_IMAGES + 2, size=size, seed=0, positive_fraction=1.0, shortcut_given_positive=1.0), data)
    return bundle, data


def test_evaluate_with_phantom_data(bundle_and_data: tuple[str, str], tmp_path: Path):
    bundle_uri, data_uri = bundle_and_data
    config = EvaluationConfig(limit=N_IMAGES, split=None, n_z1=4, deletion_steps=4, sanity_images=2, batch_size=3)
    report = evaluate_bundle(load_bundle(bundle_uri), data_uri=data_uri, config=config, device="cpu")

    assert report.sizes["data.images"] == N_IMAGES and report.sizes["data.decode_errors"] == 0
    assert report.sizes["class_consistency.samples"] == 16
    assert report.sizes["frechet.n_real"] == report.sizes["frechet.n_generated"] == N_IMAGES
    assert report.sizes["monotone.count"] == N_IMAGES and report.sizes["reconstruction.count"] == N_IMAGES
    for name in ("diff", "gradcam", "ig"):
        assert report.sizes[f"localisation.{name}.count"] == N_IMAGES  # every phantom is positive
        assert report.sizes[f"sanity.{name}.total_layers"] > 0
        for key in ("localisation.{}.auprc", "localisation.{}.chance", "shortcut_mass.{}.chance",
                    "outside_lung_mass.{}.chance", "border_mass.{}.chance", "faithfulness.{}.deletion_auc"):
            assert f"{key.format(name)}" in report.values
        assert 0 < report.values[f"localisation.{name}.chance"] < 1
    for key in ("class_consistency.accuracy", "reconstruction.mse", "reconstruction.ssim", "proximity.value",
                "frechet.value", "monotone.share"):
        assert math.isfinite(report.values[key]), key
    eligible = report.sizes["flip_rate.eligible"]
    assert report.sizes["faithfulness.diff.count"] == eligible  # faithfulness follows positive calls only
    assert len(report.curves["faithfulness.ig.deletion_curve"]) == 5

    markdown = to_markdown(report)
    assert "| localisation | auprc |" in markdown and "| flip_rate | value |" in markdown
    written = write_report(report, str(tmp_path / "eval"))
    loaded = json.loads(Path(written[0]).read_text())
    assert loaded["sizes"] == report.sizes and loaded["config"]["limit"] == N_IMAGES
    assert json.dumps(to_json(report), allow_nan=False)


def test_evaluate_generator_only(bundle_and_data: tuple[str, str]):
    bundle_uri, _ = bundle_and_data
    report = evaluate_bundle(load_bundle(bundle_uri), config=EvaluationConfig(n_z1=4, repeats=2), device="cpu")
    assert set(report.values) == {"class_consistency.accuracy", "class_consistency.std",
                                  "class_consistency.negative_accuracy", "class_consistency.positive_accuracy"}
    assert report.sizes == {"class_consistency.samples": 32} and report.data_uri is None
    assert "none (generator metrics only)" in to_markdown(report)


def test_cli_evaluate_with_data(bundle_and_data: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from raygan.cli import main

    bundle_uri, data_uri = bundle_and_data
    out = tmp_path / "cli"
    code = main(["evaluate", "--bundle", bundle_uri, "--data", data_uri, "--split", "all", "--limit", "2",
                 "--n-z1", "2", "--sanity-images", "0", "--out", str(out), "--device", "cpu"])
    assert code == 0
    loaded = json.loads((out / "evaluation.json").read_text())
    assert loaded["sizes"]["data.images"] == 2 and loaded["config"]["split"] is None
    assert "localisation.diff.auprc" in loaded["values"] and not any(k.startswith("sanity") for k in loaded["values"])
    assert "| shortcut_mass | value |" in capsys.readouterr().out


def test_evaluate_says_whether_the_inversions_started_from_an_encoder(tmp_path: Path) -> None:
    from bundle_helpers import save_tiny_bundle

    from raygan.bundle import attach_encoder
    from raygan.models import build_encoder

    uri = save_tiny_bundle(tmp_path, steps=2)
    tiny = preset("tiny")
    section = attach_encoder(uri, encoder=build_encoder(tiny.gan, tiny.encoder), data="d", metrics={}, epochs=1)
    config = EvaluationConfig(n_z1=2, sanity_images=0)
    used = evaluate_bundle(load_bundle(uri), config=config, device="cpu")
    scratch = evaluate_bundle(load_bundle(uri), config=dataclasses.replace(config, no_encoder=True), device="cpu")
    assert used.encoder == section["fingerprint"] and scratch.encoder is None
    assert used.bundle_id != scratch.bundle_id
    assert f"from the bundle's encoder `{section['fingerprint']}`, at most 5 refinement steps" in to_markdown(used)
    assert "from scratch, at most 2 steps" in to_markdown(scratch)
    assert to_json(used)["encoder"] == {"used": True, "fingerprint": section["fingerprint"], "encoder_steps": 5}
    assert to_json(scratch)["encoder"]["used"] is False
