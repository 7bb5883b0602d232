"""The Python API (raygan.load / Pipeline): inputs of every kind, typed results, save and load, s3,
and the same answer as `raygan explain` for the same image."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from bundle_helpers import save_tiny_bundle
from PIL import Image

import raygan
from raygan.data.codec import ImageDecodeError
from raygan.storage import StorageSettings


@pytest.fixture(scope="module")
def bundle_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_tiny_bundle(tmp_path_factory.mktemp("api"), steps=4)


def _png(path: Path, *, seed: int = 0, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(seed)
    shape = (40, 48, 3) if mode == "RGB" else (40, 48)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def test_explain_every_kind_of_input(bundle_uri: str, tmp_path: Path) -> None:
    pipe = raygan.load(bundle_uri, device="cpu")
    assert isinstance(pipe, raygan.Pipeline) and pipe.target_class == "1" and pipe.classes == ()
    assert pipe.quality == raygan.Quality.unmeasured() and (pipe.image_size, pipe.channels) == (32, 1)
    path = _png(tmp_path / "scan-7.png")
    data = path.read_bytes()
    results = pipe.explain([Image.open(path), str(path), data], frames=2)
    assert [type(r) for r in results] == [raygan.Explanation] * 3
    assert [r.image_id for r in results] == ["scan-7", "scan-7", "image-2"]  # file stems, else image-<i>
    assert results[0].p_input == results[1].p_input == results[2].p_input  # one decoding path for all three
    r = results[0]
    assert r.target_class == "1" and r.warning == raygan.Quality.unmeasured().warning
    assert sorted(r.maps) == ["diff", "gradcam", "ig", "path", "swap"] and r.maps_skipped == {}
    assert r.maps["diff"].shape == (1, 32, 32) and len(r.traversal_probs) == 3 and r.steps_used <= 4
    # A [N, C, H, W] batch of float tensors in [-1, 1] (any size: center-cropped and resized), and uint8.
    batch = torch.rand(2, 3, 40, 50) * 2 - 1
    as_tensors = pipe(batch, image_ids=["a", "b"], attributions=False, steps=2)
    assert [e.image_id for e in as_tensors] == ["a", "b"] and sorted(as_tensors[0].maps) == ["diff"]
    assert as_tensors[0].steps_used <= 2
    assert len(pipe.explain(torch.randint(0, 256, (1, 32, 32), dtype=torch.uint8), attributions=False)) == 1


def test_bad_inputs_are_clear_errors(bundle_uri: str) -> None:
    pipe = raygan.load(bundle_uri, device="cpu")
    with pytest.raises(ValueError, match=r"must be in \[-1, 1\]"):
        pipe.explain(torch.full((1, 32, 32), 5.0))
    with pytest.raises(ValueError, match="2 image_ids for 1 images"):
        pipe.explain(torch.zeros(1, 32, 32), image_ids=["a", "b"])
    with pytest.raises(TypeError):
        pipe.explain(torch.zeros(1, 32, 32), None, 3)  # options are keyword-only
    with pytest.raises(ImageDecodeError, match="cannot decode image"):  # the codec's clear error
        pipe.explain([b"not an image"])


def test_same_answer_as_raygan_explain(bundle_uri: str, tmp_path: Path) -> None:
    from raygan.cli import main

    path = _png(tmp_path / "chest.png", seed=3, mode="L")
    assert main(["explain", str(path), "--bundle", bundle_uri, "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    row = pq.read_table(tmp_path / "out" / "results").to_pylist()[0]
    (api,) = raygan.load(bundle_uri, device="cpu").explain([Image.open(path)])
    assert row["image_id"] == api.image_id == "chest" and row["target_class"] == api.target_class
    assert row["p_input"] == pytest.approx(api.p_input, abs=1e-6)
    assert row["p_counterfactual"] == pytest.approx(api.p_counterfactual, abs=1e-5)
    assert row["warning"] == api.warning and row["bundle_class_consistency"] is None
    summary = raygan.load(bundle_uri, device="cpu").explain_files(str(path), str(tmp_path / "again"), progress=False)
    assert summary.ok == 1


def test_save_and_load_round_trip_local_and_s3(bundle_uri: str, tmp_path: Path, s3_bucket: str,
                                               s3_endpoint: str) -> None:
    pipe = raygan.load(bundle_uri, device="cpu")
    image = torch.rand(1, 1, 32, 32) * 2 - 1
    (before,) = pipe.explain(image, image_ids=["x"], attributions=False)
    copy = pipe.save(tmp_path / "copy")
    again = raygan.Pipeline.load(copy, device="cpu")
    assert again.bundle.fingerprint == pipe.bundle.fingerprint and again.target_class == pipe.target_class
    assert again.bundle.meta["copied_from"] == bundle_uri
    (after,) = again.explain(image, image_ids=["x"], attributions=False)
    assert after.p_counterfactual == pytest.approx(before.p_counterfactual, abs=1e-6)
    settings = StorageSettings(endpoint_url=s3_endpoint)
    remote = pipe.save(f"{s3_bucket}/bundles/one", settings=settings)
    from_s3 = raygan.load(remote, device="cpu", settings=settings)
    (on_s3,) = from_s3.explain(image, image_ids=["x"], attributions=False)
    assert on_s3.p_counterfactual == pytest.approx(before.p_counterfactual, abs=1e-6)


def test_pil_images_keep_16_bit_precision(bundle_uri: str) -> None:
    pipe = raygan.load(bundle_uri, device="cpu")
    ramp = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    image = Image.fromarray(ramp)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    (a,) = pipe.explain([image], image_ids=["r"], attributions=False)
    (b,) = pipe.explain([buffer.getvalue()], image_ids=["r"], attributions=False)
    assert torch.equal(a.image, b.image)
