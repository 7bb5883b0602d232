"""Bring your own classifier, end to end, as users do: a torchvision ResNet-18 (RGB, 224 px, random
weights, 3 softmax classes, explained for "covid") and a TorchScript CNN (gray, 3 sigmoid labels,
explained for label 1). A tiny GAN is trained against each with `raygan train --target-class`, then
one image is explained through the CLI, the Python API and the service: every map the model allows,
and a message for the ones it does not (Grad-CAM needs layer hooks, which TorchScript lacks).

Cost control (a ResNet-18 at 224 px is slow on 2 CPU cores): 10 images at 32 px, one epoch of batch
4, and the bundles' inversion cut to 3 steps and 2 traversal frames with `update_settings` (as
`raygan tune` would), so the CLI, the API and the service all explain with the same settings.
"""

from __future__ import annotations

import dataclasses
import io
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import requests
import torch
import torchvision
from PIL import Image
from service_helpers import wait_healthy

import raygan
from raygan.bundle import load_bundle, update_settings
from raygan.cli import main
from raygan.data.phantoms import PhantomConfig, write_phantoms
from raygan.data.shards import read_table, write_shards
from raygan.models.classifier import small_cnn
from raygan.models.frozen import ClassifierSpec, save_classifier

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32  # the generator's side; the ResNet sees 224
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


@dataclass(frozen=True)
class Case:
    """One user classifier, its data, and the bundle trained against it."""

    name: str  # also the service's route prefix
    bundle: str  # the bundle URI
    data: str  # input shards
    image: Path  # one PNG to explain
    target: str  # expected target_class
    has_gradcam: bool  # the model allows Grad-CAM
    train_output: str  # what `raygan train` printed


def _colour_rows(n: int) -> list[dict]:
    """RGB images whose colour carries information (a red or a blue disc), labelled by class name."""
    rng = np.random.default_rng(0)
    rows = []
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(n):
        img = rng.integers(60, 120, (SIZE, SIZE, 3), dtype=np.uint8)
        disc = (yy - 16) ** 2 + (xx - 12 - i % 8) ** 2 < 40
        img[disc] = (220, 40, 40) if i % 2 else (40, 40, 220)
        buffer = io.BytesIO()
        Image.fromarray(img, "RGB").save(buffer, format="PNG")
        rows.append({"image_id": f"rgb-{i:02d}", "image": buffer.getvalue(),
                     "label": ("normal", "pneumonia", "covid")[i % 3]})
    return rows


class _capture:
    """capsys for a module fixture: stdout of main() into a buffer."""

    def __enter__(self) -> _capture:
        import contextlib

        self.buffer = io.StringIO()
        self._redirect = contextlib.redirect_stdout(self.buffer)
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._redirect.__exit__(*exc)

    @property
    def out(self) -> str:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return text


def _train(data: str, classifier: str, bundle: str, target: str, capture: _capture) -> str:
    assert main(["train", "--data", data, "--classifier", classifier, "--out", bundle, "--preset", "tiny",
                 "--epochs", "1", "--workers", "0", "--batch-size", "4", "--image-size", str(SIZE),
                 "--target-class", target]) == 0
    out = capture.out
    meta = load_bundle(bundle)
    update_settings(bundle, inversion=dataclasses.replace(meta.inversion, steps=3),
                    traversal=dataclasses.replace(meta.traversal, frames=2), source="test: fewer steps on 2 cores")
    return out


@pytest.fixture(scope="module")
def cases(serve_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    root = tmp_path_factory.mktemp("byo")
    out: dict[str, Case] = {}

    # A torchvision ResNet-18, 3 channels at 224 px, random weights, three softmax classes.
    torch.manual_seed(0)
    rgb = str(root / "rgb")
    rows = _colour_rows(10)
    write_shards(rows, rgb)
    resnet_spec = ClassifierSpec(format="torchvision", arch="resnet18", num_classes=3, weights="model.pt", size=224,
                                 channels=3, classes=("normal", "pneumonia", "covid"), positive_index=0, **IMAGENET)
    save_classifier(torchvision.models.resnet18(weights=None, num_classes=3), root / "resnet", spec=resnet_spec)
    rgb_png = root / "rgb-01.png"
    rgb_png.write_bytes(rows[1]["image"])

    # A TorchScript CNN from "another team": gray 32 px, three independent (sigmoid) labels.
    gray = str(root / "gray")
    write_phantoms(PhantomConfig(n=10, size=SIZE, seed=0), gray)
    script_spec = ClassifierSpec(format="torchscript", weights="model.ts", size=SIZE, channels=1, activation="sigmoid",
                                 classes=("effusion", "nodule", "marker"))
    save_classifier(small_cnn(image_size=SIZE, channels=1, num_classes=3).eval(), root / "script", spec=script_spec)
    gray_png = root / "phantom.png"
    gray_png.write_bytes(read_table(gray).column("image")[0].as_py())

    with _capture() as capture:
        for name, data, spec_dir, target, expected, png, gradcam in (
            ("resnet18", rgb, root / "resnet", "covid", "covid", rgb_png, True),
            ("torchscript", gray, root / "script", "1", "nodule", gray_png, False),
        ):
            bundle = str(root / f"bundle-{name}")
            printed = _train(data, str(spec_dir), bundle, target, capture)
            out[name] = Case(name, bundle, data, png, expected, gradcam, printed)
    return out


@pytest.fixture(scope="module")
def serve_url(ray_session: None) -> Iterator[str]:
    """A real Ray Serve on loopback, started before the training: Serve gives its HTTP proxy a fixed
    60 s to come up, which the proxy's imports can exceed on 2 cores busy with training."""
    from ray import serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


@pytest.fixture(scope="module")
def service(serve_url: str, cases: dict[str, Case]) -> str:
    """Both bundles behind that one Serve, one application per route prefix."""
    from ray import serve

    from raygan.service.app import build_app

    for case in cases.values():
        args = {"bundle_uri": case.bundle, "max_batch_size": 2, "batch_wait_timeout_s": 0.05, "num_cpus": 1,
                "request_timeout_s": 600, "env_vars": {"PYTHONPATH": str(ROOT)}}
        serve.run(build_app(args), name=case.name, route_prefix=f"/{case.name}", blocking=False)
    for case in cases.values():
        wait_healthy(f"{serve_url}/{case.name}", timeout=300)
    return serve_url


def _direct_p(case: Case, image: torch.Tensor) -> float:
    """p(target) computed by hand from the user's own model on the image as the generator sees it."""
    bundle = load_bundle(case.bundle)
    c = bundle.classifier
    logits = c.model(c.prepare(image[None]))  # the user's model on its own size, channels, normalisation
    if c.spec.activation == "softmax":
        return float(torch.softmax(logits, dim=1)[0, c.target])
    return float(torch.sigmoid(logits[0, c.target]))


@pytest.mark.timeout(1800)  # about a minute per case on an idle 2-core box; far more where other jobs saturate it
@pytest.mark.parametrize("name", ["resnet18", "torchscript"])
def test_train_and_explain_through_cli_api_and_service(cases: dict[str, Case], service: str, name: str,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = cases[name]
    meta = json.loads((Path(case.bundle) / "bundle.json").read_text())
    quality = raygan.Quality.from_json(meta["quality"])
    assert meta["target"]["name"] == case.target and quality.class_consistency is not None
    assert f"explains class {case.target!r}" in case.train_output and "quality gate: generator class" in case.train_output
    assert (quality.frechet is not None) == case.has_gradcam  # TorchScript: no features() for the Frechet distance
    assert meta["gan"]["channels"] == (3 if name == "resnet18" else 1)  # the classifier's channels by default

    # 1. the CLI
    assert main(["explain", str(case.image), "--bundle", case.bundle, "--out", str(tmp_path / "cli"),
                 "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    (row,) = pq.read_table(tmp_path / "cli" / "results").to_pylist()
    assert row["status"] == "ok" and row["target_class"] == case.target
    assert row["warning"] == quality.warning and row["bundle_class_consistency"] == quality.class_consistency
    assert row["uri_diff"] and row["uri_ig"] and row["uri_path"]
    if case.has_gradcam:
        assert row["uri_gradcam"] and row["maps_skipped"] is None
    else:
        assert row["uri_gradcam"] is None and "gradcam: Grad-CAM needs a forward hook" in row["maps_skipped"]
        assert "TorchScript" in row["maps_skipped"] and "note: gradcam skipped" in captured.err

    # 2. the Python API: the same image, the same numbers
    pipe = raygan.load(case.bundle, device="cpu")
    (api,) = pipe.explain([Image.open(case.image)])
    assert api.image_id == row["image_id"] and api.target_class == case.target
    assert api.p_input == pytest.approx(row["p_input"], abs=1e-5)
    assert api.p_input == pytest.approx(_direct_p(case, api.image), abs=1e-5)  # p of the chosen class / label
    assert sorted(api.maps) == (["diff", "gradcam", "ig", "path", "swap"] if case.has_gradcam
                                else ["diff", "ig", "path", "swap"])
    assert ("gradcam" in api.maps_skipped) != case.has_gradcam and api.warning == quality.warning
    if name == "resnet18":
        assert api.image.shape[0] == 3 and not torch.equal(api.image[0], api.image[2])  # colour kept, not gray

    # 3. the service
    model = requests.get(f"{service}/{name}/v1/model", timeout=60).json()
    assert model["target_class"] == case.target and case.target in model["classes"] and len(model["classes"]) == 3
    assert model["quality"]["class_consistency"] == quality.class_consistency
    assert model["quality"]["warning"] == quality.warning and model["channels"] == meta["gan"]["channels"]
    answer = requests.post(f"{service}/{name}/v1/explain", files={"file": (case.image.name, case.image.read_bytes())},
                           data={"image_id": row["image_id"]}, timeout=600)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["target_class"] == case.target and body["warning"] == quality.warning
    assert body["p_input"] == pytest.approx(api.p_input, abs=1e-5)
    assert (body["pictures"]["gradcam"] is not None) == case.has_gradcam and body["pictures"]["ig"]
    assert ("gradcam" in body["maps_skipped"]) != case.has_gradcam


@pytest.mark.timeout(600)
def test_torchscript_evaluation_skips_what_it_cannot_measure(cases: dict[str, Case], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    case = cases["torchscript"]
    assert main(["evaluate", "--bundle", case.bundle, "--data", case.data, "--split", "all", "--limit", "2",
                 "--n-z1", "2", "--sanity-images", "2", "--device", "cpu", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert set(report["skipped"]) == {"gradcam", "sanity", "frechet"}
    assert "reset_parameters" in report["skipped"]["sanity"] and "features()" in report["skipped"]["frechet"]
    assert not any(k.startswith(("sanity.", "frechet.")) or ".gradcam." in k for k in report["values"])
    assert "faithfulness.ig.deletion_auc" in report["values"]
    assert "not computed: sanity" in capsys.readouterr().out
