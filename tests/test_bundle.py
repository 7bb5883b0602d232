"""The bundle: round trip (local and S3), classifier fingerprint check, settings history."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from raygan import storage
from raygan.bundle import BUNDLE_FILE, CLASSIFIER_DIR, BundleError, load_bundle, save_bundle, update_settings
from raygan.config import preset
from raygan.models import build_classifier, build_generator, save_classifier
from raygan.models.classifier import factory_path
from raygan.models.frozen import ClassifierSpec

TINY = preset("tiny")


def _classifier_spec(directory: str) -> str:
    torch.manual_seed(0)
    spec = ClassifierSpec(format="factory", weights="model.pt", factory=factory_path("small_cnn"),
                          factory_kwargs={"image_size": 32}, size=32)
    uri = save_classifier(build_classifier("small_cnn", image_size=32), directory, spec=spec)
    # Unrelated files in a spec directory (e.g. training checkpoints) stay out of the bundle.
    storage.write_text(storage.join(uri, "checkpoints", "junk.txt"), "not part of the spec")
    return uri


def _save(out: str, classifier_uri: str) -> torch.nn.Module:
    torch.manual_seed(1)
    generator = build_generator(TINY.gan)
    save_bundle(out, generator=generator, classifier_uri=classifier_uri, train=TINY.train,
                inversion=TINY.inversion, traversal=TINY.traversal, extras={"note": "test"})
    return generator


def _assert_round_trip(out: str, generator: torch.nn.Module) -> None:
    bundle = load_bundle(out)
    assert bundle.gan == TINY.gan and bundle.train == TINY.train
    assert bundle.inversion == TINY.inversion and bundle.traversal == TINY.traversal
    for name, tensor in generator.state_dict().items():
        assert torch.equal(bundle.generator.state_dict()[name], tensor), name
    assert not bundle.generator.training
    z1, z2 = torch.zeros(2, TINY.gan.z1_dim), torch.ones(2, TINY.gan.z2_dim)
    assert bundle.classifier.p_positive(bundle.generator(z1, z2)).shape == (2,)
    assert bundle.meta["extras"] == {"note": "test"}
    assert bundle.fingerprint == bundle.bundle_id(bundle.inversion, bundle.traversal)
    assert bundle.bundle_id(dataclasses.replace(bundle.inversion, steps=7), bundle.traversal) != bundle.fingerprint


def test_round_trip_local(tmp_path: Path) -> None:
    classifier_uri = _classifier_spec(str(tmp_path / "classifier"))
    generator = _save(str(tmp_path / "bundle"), classifier_uri)
    _assert_round_trip(str(tmp_path / "bundle"), generator)
    copied = sorted(p.name for p in (tmp_path / "bundle" / CLASSIFIER_DIR).iterdir())
    assert copied == ["classifier.json", "model.pt"]


def test_round_trip_s3(tmp_path: Path, s3_bucket: str) -> None:
    classifier_uri = _classifier_spec(f"{s3_bucket}/classifier")
    generator = _save(f"{s3_bucket}/bundle", classifier_uri)
    _assert_round_trip(f"{s3_bucket}/bundle", generator)


def test_a_different_classifier_is_refused(tmp_path: Path) -> None:
    classifier_uri = _classifier_spec(str(tmp_path / "classifier"))
    out = str(tmp_path / "bundle")
    _save(out, classifier_uri)
    # Someone swaps the bundle's classifier weights for another model's.
    torch.manual_seed(99)
    other = build_classifier("small_cnn", image_size=32).state_dict()
    torch.save(other, tmp_path / "bundle" / CLASSIFIER_DIR / "model.pt")
    with pytest.raises(BundleError, match="not the one this generator was trained against"):
        load_bundle(out)


def test_missing_bundle_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no bundle at"):
        load_bundle(str(tmp_path / "nothing"))


def test_update_settings_keeps_history(tmp_path: Path) -> None:
    out = str(tmp_path / "bundle")
    _save(out, _classifier_spec(str(tmp_path / "classifier")))
    before = load_bundle(out)
    tuned = dataclasses.replace(TINY.inversion, lr=0.123, steps=11)
    update_settings(out, inversion=tuned, traversal=TINY.traversal, source="tune-1", scores={"objective": 0.5})
    update_settings(out, inversion=tuned, traversal=dataclasses.replace(TINY.traversal, frames=6), source="tune-2")
    after = load_bundle(out)
    assert after.inversion == tuned and after.traversal.frames == 6
    history = json.loads((tmp_path / "bundle" / BUNDLE_FILE).read_text())["history"]
    assert [h["by"] for h in history] == ["tune-1", "tune-2"]
    assert history[0]["inversion"] == dataclasses.asdict(TINY.inversion)
    assert history[1]["inversion"]["lr"] == 0.123
    assert after.meta["settings_source"] == {"by": "tune-2", "scores": {}}
    # The weights did not change, so the weights fingerprint did not; the settings-aware id did.
    assert after.meta["fingerprints"] == before.meta["fingerprints"]
    assert after.fingerprint != before.fingerprint


def test_an_encoder_gets_its_own_bundle_id_and_a_tampered_one_is_refused(tmp_path: Path) -> None:
    import hashlib

    from bundle_helpers import save_tiny_bundle

    from raygan.bundle import attach_encoder, settings_fingerprint
    from raygan.models import build_encoder

    uri = save_tiny_bundle(tmp_path, steps=4)
    before = load_bundle(uri)
    # The from-scratch bundle_id hashes what it hashed before encoders existed (no encoder_steps).
    legacy = {k: v for k, v in dataclasses.asdict(before.inversion).items() if k != "encoder_steps"}
    payload = json.dumps({"weights": before.meta["fingerprints"]["weights"], "inversion": legacy,
                           "traversal": dataclasses.asdict(before.traversal)}, sort_keys=True)
    assert before.fingerprint == hashlib.sha256(payload.encode()).hexdigest()[:16]
    assert before.bundle_id(dataclasses.replace(before.inversion, encoder_steps=9), before.traversal) == before.fingerprint
    with pytest.raises(BundleError, match="no encoder"):
        before.bundle_id(before.inversion, before.traversal, encoder=True)

    section = attach_encoder(uri, encoder=build_encoder(before.gan, preset("tiny").encoder), data="d", metrics={},
                             epochs=1)
    after = load_bundle(uri)
    assert after.encoder is not None and not after.encoder.training
    assert after.fingerprint == settings_fingerprint(before.meta["fingerprints"]["weights"], after.inversion,
                                                     after.traversal, encoder=section["fingerprint"])
    assert after.fingerprint != before.fingerprint
    assert after.bundle_id(dataclasses.replace(after.inversion, encoder_steps=9), after.traversal) != after.fingerprint
    assert after.bundle_id(after.inversion, after.traversal, encoder=False) == before.fingerprint
    copy = after.save(str(tmp_path / "copy"))
    assert load_bundle(copy).encoder_fingerprint == section["fingerprint"]

    (tmp_path / "bundle" / "encoder.pt").write_bytes(b"not the recorded weights")
    with pytest.raises(BundleError, match="not the encoder recorded"):
        load_bundle(uri)
