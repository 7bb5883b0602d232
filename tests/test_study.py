"""The study: the whole results pipeline through benchmarks/gpu_realdata.sh, without Ray, and its pure parts."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from raygan.config import AUTHORS_INVERSION, preset
from raygan.data.phantoms import PhantomConfig, write_phantoms
from raygan.models import ClassifierSpec, FrozenClassifier, build_classifier, build_generator
from raygan.models.classifier import factory_path
from raygan.study import MIN_AUTHORS_IMAGES, authors_sample_size

ROOT = Path(__file__).resolve().parents[1]
TINY = preset("tiny")
HEADLINE = ("classifier_test_accuracy", "classifier_test_auc", "class_consistency", "monotone_share", "monotone_own",
            "monotone_fallback", "flip_rate", "judge_flip_rate", "p_gap", "recon_mse", "proximity", "judge_test_accuracy")


def _block(folder: Path, *names: str) -> Path:
    """A folder of stand-in packages that refuse to import, like on the GPU machine that lacks them."""
    for name in names:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed on the GPU machine')\n")
    return folder


@pytest.mark.timeout(240)
def test_gpu_script_runs_the_whole_study_without_ray(tmp_path: Path) -> None:
    """`bash benchmarks/gpu_realdata.sh` with the tiny preset on phantoms: every stage, no Ray, no boto3."""
    data = str(tmp_path / "phantoms")
    write_phantoms(PhantomConfig(n=120, size=TINY.gan.image_size, seed=0, rows_per_shard=60), data)
    out = tmp_path / "out"
    blocked = _block(tmp_path / "blocked", "ray", "boto3")
    env = {
        **os.environ, "OUT": str(out), "RAYGAN_STUDY_PRESET": "tiny", "RAYGAN_STUDY_DATA": data,
        "RAYGAN_STUDY_WORK": str(tmp_path / "work"), "PYTHON": sys.executable, "PYTHONPATH": str(blocked),
        "OMP_NUM_THREADS": "1",
        "RAYGAN_STUDY_ARGS": "--classifier-epochs 2 --gan-epochs 2 --images 12 --eval-batch 8 --authors-steps 15 "
                             "--consistency-z1 25 --consistency-repeats 2 --sanity-images 2 --encoder-epochs 1",
    }
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_realdata.sh")], check=False, env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=230)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

    results = json.loads((out / "results.json").read_text())
    for key in HEADLINE + tuple(f"authors_{k}" for k in HEADLINE[3:-1]):  # the authors' side: explanation metrics
        assert results[key] is None or isinstance(results[key], float), (key, results.get(key, "missing"))
    assert results["flip_rate"] is None or 0 <= results["flip_rate"] <= 1  # None: no test image was called positive
    assert 0 <= results["class_consistency"] <= 1 and 0 <= results["classifier_test_accuracy"] <= 1
    assert results["preset"] == "tiny" and results["gpu"].startswith("cpu: ") and results["torch"] == torch.__version__
    assert isinstance(results["date"], str)
    sizes = results["sample_sizes"]
    assert sizes["test_explained"] == 12 and sizes["authors_images"] == 12
    assert sizes["class_consistency_samples"] == 25 * 4 * 2
    assert sizes["train"] + sizes["val"] + sizes["test"] == 120
    assert results["epochs"] == {"classifier": 2, "classifier_planned": 2, "gan": 2, "gan_planned": 2}
    assert set(results["seconds"]) == {"data", "classifier", "gan", "evaluation", "authors", "encoder", "figures",
                                       "total"}
    encoder = results["encoder"]  # issue 14's stage: trained, attached, the same images explained from E(x)
    assert encoder["epochs"] == 1 and encoder["images"] == 12 and encoder["scores"]["images"] == 12
    assert encoder["scores"]["mean_steps"] <= encoder["encoder_steps"]
    assert encoder["minus_shipped"]["recon_mse"]["n"] == 12 and encoder["inversion_seconds"]["shipped"] > 0
    assert results["inversion"]["authors"]["steps"] == 15 and results["inversion"]["authors"]["mse_weight"] == 4.0

    pictures = sorted((out / "figures").glob("*.png"))
    assert 2 <= len(pictures) <= 5 and any(p.name.startswith("authors-") for p in pictures)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pictures)
    assert "authors' recipe" in (out / "results.md").read_text()
    assert "=== 3/5 GAN" in (out / "log.txt").read_text()
    work = tmp_path / "work" / "study"
    assert (work / "bundle" / "bundle.json").exists() and (work / "classifier" / "classifier.json").exists()
    assert (work / "bundle" / "encoder.pt").exists() and "Encoder (amortised inversion)" in (out / "results.md").read_text()


def test_gpu_script_fails_clearly_without_cuda_for_the_paper_preset(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable, "RAYGAN_STUDY_PRESET": "paper"}
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_realdata.sh")], check=False, env=env,
                         capture_output=True,
                         text=True, timeout=120)
    assert run.returncode != 0 and "needs a CUDA GPU" in run.stderr


def test_authors_sample_size_halves_the_sample_until_the_prediction_fits() -> None:
    torch.manual_seed(0)
    generator = build_generator(TINY.gan).eval()
    spec = ClassifierSpec(format="factory", weights="w.pt", factory=factory_path("small_cnn"),
                          factory_kwargs={"image_size": 32}, size=32)
    classifier = FrozenClassifier(build_classifier("small_cnn", image_size=32), spec)
    images = torch.rand(16, 1, 32, 32) * 2 - 1
    ids = [f"img-{i}" for i in range(16)]
    config = AUTHORS_INVERSION  # 5000 steps: the prediction is what is tested, nothing runs that long
    kwargs = {"config": config, "batch": 16, "device": torch.device("cpu")}

    n, predicted = authors_sample_size(generator, classifier, images, ids, cap_s=math.inf, **kwargs)
    assert n == 16 and predicted > 0
    n, predicted = authors_sample_size(generator, classifier, images, ids, cap_s=0.0, **kwargs)
    assert n == 0 and predicted > 0  # halved down to MIN_AUTHORS_IMAGES, still too slow: skipped, not overrun
    assert MIN_AUTHORS_IMAGES < 16
