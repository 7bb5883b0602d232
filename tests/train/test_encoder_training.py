"""Encoder training end to end in Train V2 local mode: `raygan train-encoder` on a tiny bundle, then
explanations that start from E(x), and the property that makes an encoder worth having."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from bundle_helpers import responsive, save_tiny_bundle

from raygan.bundle import load_bundle
from raygan.cli import main
from raygan.config import preset
from raygan.data.codec import encode_png
from raygan.data.shards import decode_rows, write_shards
from raygan.data.splits import split_of
from raygan.explain.explainer import Explainer
from raygan.models.encoder import build_encoder
from raygan.models.generator import sample_latents
from raygan.train.encoder_trainer import compare_starts

TINY = preset("tiny")


def _generated_shards(bundle_uri: str, out: Path, n: int = 64) -> tuple[str, torch.Tensor]:
    """Shards of the bundle's own images G(z) (8-bit PNG), training-like images this G can make, and
    the first 16 of their training split as decoded from the shards [16, 1, S, S]."""
    generator = load_bundle(bundle_uri).generator
    labels = torch.arange(n) % 2
    z1, z2 = sample_latents(labels, z1_dim=TINY.gan.z1_dim, z2_dim=TINY.gan.z2_dim,
                            generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        images = generator(z1, z2)
    rows = [{"image_id": f"g{i:03d}", "image": encode_png(images[i]), "label": int(labels[i])} for i in range(n)]
    write_shards(rows, str(out))
    train = pa.Table.from_pylist([r for r in rows if split_of(r["image_id"]) == "train"][:16])
    return str(out), decode_rows(train, size=TINY.gan.image_size).images


@pytest.mark.timeout(300)
def test_train_encoder_then_explain_from_it(ray_session: None, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    uri = save_tiny_bundle(tmp_path, steps=20, adjust=responsive)
    data, images = _generated_shards(uri, tmp_path / "generated")
    before = load_bundle(uri)
    assert before.encoder is None
    assert main(["train-encoder", "--bundle", uri, "--data", data, "--workers", "0", "--epochs", "8",
                 "--batch-size", "8", "--lr", "3e-3", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "encoder written to" in out and "preset tiny, seed 1" in out and "8 epoch(s)" in out
    assert (tmp_path / "bundle" / "encoder.pt").is_file()
    section = json.loads((tmp_path / "bundle" / "bundle.json").read_text())["encoder"]
    assert section["seed"] == 1 and section["config"]["epochs"] == 8 and section["epochs"] == 8
    assert section["generator"] == before.meta["fingerprints"]["generator"] and section["data"] == data
    assert {"loss", "latent_mse", "real_loss", "start_loss_encoder"} <= set(section["final_metrics"])

    bundle = load_bundle(uri)
    assert bundle.encoder is not None and bundle.encoder_fingerprint == section["fingerprint"]
    # Results of the two inversions never mix: the encoder's fingerprint is in the bundle_id, and
    # the from-scratch bundle_id is still the one the bundle had before it got an encoder.
    assert bundle.fingerprint != before.fingerprint
    assert bundle.bundle_id(bundle.inversion, bundle.traversal, encoder=False) == before.fingerprint

    # The point of an encoder: on training-like images E(x) starts the inversion lower than the
    # optimisation's own start and than z = 0 -- which an untrained encoder (E(x) ~ 0) does not.
    trained = compare_starts(bundle.encoder, bundle, images)
    torch.manual_seed(0)
    untrained = compare_starts(build_encoder(bundle.gan, TINY.encoder), bundle, images)
    for starts, holds in ((trained, True), (untrained, False)):
        lower = starts["start_loss_encoder"] < 0.9 * min(starts["start_loss_scratch"], starts["start_loss_zero"])
        assert lower == holds, (trained, untrained)

    explainer = Explainer.from_bundle(bundle, device="cpu", attributions=False)
    scratch = Explainer.from_bundle(bundle, device="cpu", attributions=False, no_encoder=True)
    assert explainer.encoder is not None and scratch.encoder is None
    assert explainer.bundle_id == bundle.fingerprint and scratch.bundle_id == before.fingerprint
    ids = [f"img-{i}" for i in range(4)]
    fast, slow = explainer.explain(images[:4], image_ids=ids), scratch.explain(images[:4], image_ids=ids)
    k = bundle.inversion.encoder_steps
    assert all(e.steps_used <= k and len(e.loss_curve) <= k for e in fast)
    assert all(e.steps_used == 20 for e in slow)
