"""The model bundle: what `raygan train` produces and every later step loads.

Layout (DESIGN.md, "Bundle"): `bundle.json` (version, commit, time, configs, default inversion
and traversal settings, fingerprints, settings history, the target class it explains and the
generator's quality), `generator.pt`, `classifier/` (a copy of the classifier spec, so a bundle
is self-contained on a cluster), optional extras, and beside them `checkpoints/` and `samples/`.

An encoder (`raygan train-encoder`) adds `encoder.pt` and an `encoder` section in bundle.json
(its config, seed, data, the generator it was trained against, its fingerprint and final
metrics). Explanations that start from the encoder get a bundle_id of their own (the encoder's
fingerprint is hashed in), so results of the two inversions never mix.

A GAN is trained for one target class (z2 = 0: not the target, z2 ~ N(0, I): the target), so
the bundle records it (`target`: index and name) and loads its classifier reading that class.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import raygan
from raygan import storage
from raygan.config import EncoderConfig, GanConfig, InversionConfig, TrainConfig, TraversalConfig, from_dict
from raygan.models.encoder import Encoder, build_encoder
from raygan.models.frozen import SPEC_FILE, ClassifierSpec, FrozenClassifier, load_classifier, spec_fingerprint
from raygan.models.generator import Generator, build_generator
from raygan.quality import Quality

BUNDLE_FILE = "bundle.json"
GENERATOR_FILE = "generator.pt"
ENCODER_FILE = "encoder.pt"
CLASSIFIER_DIR = "classifier"


class BundleError(ValueError):
    """A bundle that is missing, malformed, or does not match its classifier."""


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: generator and frozen classifier in eval mode on the CPU, plus settings."""

    uri: str  # where it was loaded from
    gan: GanConfig  # generator shapes
    train: TrainConfig  # the recipe it was trained with
    inversion: InversionConfig  # default inversion settings (tuned ones after `raygan tune`)
    traversal: TraversalConfig  # default traversal settings
    generator: Generator  # G in eval mode
    classifier: FrozenClassifier  # C, frozen
    fingerprint: str  # hash of the generator, the classifier and the default settings
    meta: dict[str, Any]  # the whole bundle.json
    quality: Quality = Quality.unmeasured()  # the generator's class consistency and Frechet distance (quality gate)
    encoder: Encoder | None = None  # E(x) -> (z1, z2) in eval mode when the bundle has one (`raygan train-encoder`)

    @classmethod
    def load(cls, uri: str, *, settings: storage.StorageSettings | None = None) -> Bundle:
        """The bundle at `uri` (local or s3): `load_bundle`."""
        return load_bundle(uri, settings=settings)

    def save(self, out: str, *, settings: storage.StorageSettings | None = None) -> str:
        """Write this bundle (generator, classifier spec, bundle.json) to `out` (local or s3); returns `out`.

        The classifier files are copied from where the bundle was loaded; bundle.json keeps its
        history, fingerprints, target and quality, and notes where it was copied from.
        """
        storage.write_bytes(storage.join(out, GENERATOR_FILE), _state_bytes(self.generator), settings=settings)
        if self.encoder is not None:
            storage.write_bytes(storage.join(out, ENCODER_FILE),
                                storage.read_bytes(storage.join(self.uri, ENCODER_FILE), settings=settings),
                                settings=settings)
        _copy_classifier_spec(storage.join(self.uri, CLASSIFIER_DIR), storage.join(out, CLASSIFIER_DIR),
                              settings=settings)
        meta = {**self.meta, "copied_from": self.uri}
        storage.write_json(storage.join(out, BUNDLE_FILE), meta, settings=settings)
        return out

    @property
    def target_class(self) -> str:
        """The class this bundle explains (name, or output index as text)."""
        return self.classifier.target_name

    @property
    def encoder_fingerprint(self) -> str | None:
        """The fingerprint of the bundle's encoder weights; None without an encoder."""
        return self.meta["encoder"]["fingerprint"] if self.encoder is not None else None

    def bundle_id(self, inversion: InversionConfig, traversal: TraversalConfig, *, encoder: bool | None = None) -> str:
        """Fingerprint of this bundle's weights with `inversion`/`traversal` (keys result rows).

        `encoder`: whether the inversion starts from the bundle's encoder (None: whenever it has one).
        """
        use = self.encoder is not None if encoder is None else encoder
        if use and self.encoder is None:
            raise BundleError(f"the bundle at {self.uri} has no encoder (train one with `raygan train-encoder`)")
        return settings_fingerprint(self.meta["fingerprints"]["weights"], inversion, traversal,
                                    encoder=self.encoder_fingerprint if use else None)


def settings_fingerprint(weights_fp: str, inversion: InversionConfig, traversal: TraversalConfig, *,
                         encoder: str | None = None) -> str:
    """16-hex hash of a weights fingerprint and the settings that shape an explanation.

    `encoder` is the fingerprint of the encoder the inversion starts from (None: from scratch).
    Without one, `encoder_steps` shapes nothing and is left out, so a from-scratch bundle_id is the
    same as before encoders existed (reruns still skip the rows already written).
    """
    settings = dataclasses.asdict(inversion)
    content: dict[str, Any] = {"weights": weights_fp, "traversal": dataclasses.asdict(traversal)}
    if encoder is None:
        settings.pop("encoder_steps")
    else:
        content["encoder"] = encoder
    content["inversion"] = settings
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def bundle_id_of_meta(meta: dict[str, Any], *, no_encoder: bool = False) -> str:
    """The bundle_id of an Explainer built from bundle.json `meta` with its default settings
    (starting from its encoder when it has one, unless `no_encoder`), without loading any weights."""
    encoder = None if no_encoder or "encoder" not in meta else meta["encoder"]["fingerprint"]
    return settings_fingerprint(meta["fingerprints"]["weights"], from_dict(InversionConfig, meta["inversion"]),
                                from_dict(TraversalConfig, meta["traversal"]), encoder=encoder)


def _git_commit() -> str | None:
    """The source tree's git commit, when raygan runs from a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _state_bytes(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getvalue()


def _copy_classifier_spec(src: str, dst: str, *, settings: storage.StorageSettings | None) -> None:
    """Copy `classifier.json` and its weights file only: a spec directory may hold other things
    (training checkpoints, logs) that do not belong in a bundle."""
    spec_bytes = storage.read_bytes(storage.join(src, SPEC_FILE), settings=settings)
    weights = ClassifierSpec.from_json(json.loads(spec_bytes)).weights
    data = storage.read_bytes(storage.join(src, weights), settings=settings)
    storage.write_bytes(storage.join(dst, weights), data, settings=settings)
    storage.write_bytes(storage.join(dst, SPEC_FILE), spec_bytes, settings=settings)


def save_bundle(
    out: str,
    *,
    generator: Generator,
    classifier_uri: str,
    train: TrainConfig,
    inversion: InversionConfig,
    traversal: TraversalConfig,
    extras: dict[str, Any] | None = None,
    target: int | str | None = None,
    quality: Quality | None = None,
    settings: storage.StorageSettings | None = None,
) -> str:
    """Write a self-contained bundle to `out` (local or s3); returns `out`.

    `target` (class name or index; None: the spec's positive_index) is the class the generator
    was trained to explain; `quality` its measured quality (None: not measured).
    """
    spec = ClassifierSpec.from_json(storage.read_json(storage.join(classifier_uri, SPEC_FILE), settings=settings))
    index = spec.positive_index if target is None else spec.class_index(target)
    weights = _state_bytes(generator)
    storage.write_bytes(storage.join(out, GENERATOR_FILE), weights, settings=settings)
    _copy_classifier_spec(classifier_uri, storage.join(out, CLASSIFIER_DIR), settings=settings)
    weights_fp = hashlib.sha256(weights).hexdigest()[:16]
    classifier_fp = spec_fingerprint(storage.join(out, CLASSIFIER_DIR), settings=settings)
    combined = hashlib.sha256(f"{weights_fp}:{classifier_fp}".encode()).hexdigest()[:16]
    meta = {
        "raygan_version": raygan.__version__,
        "git_commit": _git_commit(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "gan": dataclasses.asdict(generator.config),
        "train": dataclasses.asdict(train),
        "inversion": dataclasses.asdict(inversion),
        "traversal": dataclasses.asdict(traversal),
        "fingerprints": {"generator": weights_fp, "classifier": classifier_fp, "weights": combined},
        "classifier_source": str(classifier_uri),
        "history": [],
        "extras": extras or {},
        "target": {"index": index, "name": spec.class_name(index), "activation": spec.activation},
        "quality": (quality or Quality.unmeasured()).to_json(),
    }
    storage.write_json(storage.join(out, BUNDLE_FILE), meta, settings=settings)
    return out


def read_meta(uri: str, *, settings: storage.StorageSettings | None = None) -> dict[str, Any]:
    """The parsed `bundle.json` at `uri`, with a clear error when there is none."""
    path = storage.join(uri, BUNDLE_FILE)
    if not storage.exists(path, settings=settings):
        raise BundleError(f"no bundle at {uri}: {BUNDLE_FILE} not found (make one with `raygan train`)")
    return storage.read_json(path, settings=settings)


def load_bundle(uri: str, *, settings: storage.StorageSettings | None = None) -> Bundle:
    """Load the bundle at `uri`; refuses a classifier whose fingerprint differs from the recorded one."""
    meta = read_meta(uri, settings=settings)
    classifier_uri = storage.join(uri, CLASSIFIER_DIR)
    recorded = meta["fingerprints"]["classifier"]
    actual = spec_fingerprint(classifier_uri, settings=settings)
    if actual != recorded:
        raise BundleError(
            f"the classifier in {classifier_uri} (fingerprint {actual}) is not the one this generator was "
            f"trained against ({recorded}); retrain with `raygan train --classifier ...`"
        )
    gan = from_dict(GanConfig, meta["gan"])
    generator = build_generator(gan)
    state = torch.load(io.BytesIO(storage.read_bytes(storage.join(uri, GENERATOR_FILE), settings=settings)),
                       map_location="cpu", weights_only=True)
    generator.load_state_dict(state)
    generator.eval().requires_grad_(False)
    inversion = from_dict(InversionConfig, meta["inversion"])
    traversal = from_dict(TraversalConfig, meta["traversal"])
    target = (meta.get("target") or {}).get("index")  # None (older bundles): the spec's positive_index
    encoder = _load_encoder(uri, meta, gan, settings=settings) if "encoder" in meta else None
    return Bundle(
        uri=uri,
        gan=gan,
        train=from_dict(TrainConfig, meta["train"]),
        inversion=inversion,
        traversal=traversal,
        generator=generator,
        classifier=load_classifier(classifier_uri, target=target, settings=settings),
        fingerprint=settings_fingerprint(meta["fingerprints"]["weights"], inversion, traversal,
                                         encoder=meta["encoder"]["fingerprint"] if encoder is not None else None),
        meta=meta,
        quality=Quality.from_json(meta.get("quality")),
        encoder=encoder,
    )


def _load_encoder(uri: str, meta: dict[str, Any], gan: GanConfig, *,
                  settings: storage.StorageSettings | None) -> Encoder:
    """The bundle's encoder in eval mode; refuses one whose weights or generator are not the recorded ones."""
    section = meta["encoder"]
    if section.get("generator") != meta["fingerprints"]["generator"]:
        raise BundleError(f"the encoder in {uri} was trained against generator {section.get('generator')}, not this "
                          f"bundle's {meta['fingerprints']['generator']}; retrain it with `raygan train-encoder`")
    path = storage.join(uri, ENCODER_FILE)
    if not storage.exists(path, settings=settings):
        raise BundleError(f"bundle.json at {uri} names an encoder but {ENCODER_FILE} is missing")
    data = storage.read_bytes(path, settings=settings)
    if hashlib.sha256(data).hexdigest()[:16] != section["fingerprint"]:
        raise BundleError(f"{path} is not the encoder recorded in bundle.json (fingerprint "
                          f"{hashlib.sha256(data).hexdigest()[:16]}, recorded {section['fingerprint']})")
    encoder = build_encoder(gan, from_dict(EncoderConfig, section["config"]))
    encoder.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    return encoder.eval().requires_grad_(False)


def attach_encoder(
    uri: str,
    *,
    encoder: Encoder,
    data: str,
    metrics: dict[str, Any],
    epochs: int,
    settings: storage.StorageSettings | None = None,
) -> dict[str, Any]:
    """Write `encoder.pt` into the bundle at `uri` and its `encoder` section into bundle.json; returns the section.

    The section records the encoder's config (and so its seed), the data it was trained on, the
    generator it inverts, the fingerprint of its weights and its final metrics.
    """
    meta = read_meta(uri, settings=settings)
    weights = _state_bytes(encoder)
    storage.write_bytes(storage.join(uri, ENCODER_FILE), weights, settings=settings)
    section = {
        "config": dataclasses.asdict(encoder.config),
        "seed": encoder.config.seed,
        "data": data,
        "epochs": epochs,
        "generator": meta["fingerprints"]["generator"],
        "fingerprint": hashlib.sha256(weights).hexdigest()[:16],
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "final_metrics": metrics,
    }
    meta["encoder"] = section
    storage.write_json(storage.join(uri, BUNDLE_FILE), meta, settings=settings)
    return section


def update_settings(
    uri: str,
    *,
    inversion: InversionConfig,
    traversal: TraversalConfig,
    source: str,
    scores: dict[str, float] | None = None,
    settings: storage.StorageSettings | None = None,
) -> dict[str, Any]:
    """Make `inversion`/`traversal` the bundle's defaults; the previous ones go to its history."""
    meta = read_meta(uri, settings=settings)
    meta["history"].append({
        "replaced": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "inversion": meta["inversion"],
        "traversal": meta["traversal"],
        "by": source,
    })
    meta["inversion"] = dataclasses.asdict(inversion)
    meta["traversal"] = dataclasses.asdict(traversal)
    meta["settings_source"] = {"by": source, "scores": scores or {}}
    storage.write_json(storage.join(uri, BUNDLE_FILE), meta, settings=settings)
    return meta
