"""GAN training on Ray Train: checkpoints, resume, surviving a worker failure, and the bundle at the end."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from raygan import storage
from raygan.bundle import load_bundle
from raygan.config import preset
from raygan.train.gan_loop import sample_grid_png
from raygan.train.gan_trainer import train_gan
from test_tracking import mlflow_runs, read_scalars

TINY = preset("tiny")
# Small batches so ~38 training phantoms give each of 2 workers two steps per epoch.
TRAIN = dataclasses.replace(TINY.train, batch_size=8, consistency_samples=4, checkpoint_every=1)


@pytest.mark.timeout(600)
def test_two_workers_on_s3_checkpoint_resume_survive_a_failure_and_bundle(
    ray_session: None, phantom_shards: str, classifier_spec: str, s3_bucket: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = f"{s3_bucket}/run"
    mlflow_uri = (tmp_path / "mlruns").as_uri()  # read by the driver, passed to rank 0 in the loop's config
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    # 1. Two data-parallel workers, one epoch: a checkpoint in Ray Train storage on S3, a bundle.
    first = train_gan(phantom_shards, classifier_spec, out, gan=TINY.gan,
                      train=dataclasses.replace(TRAIN, workers=2, epochs=1),
                      inversion=TINY.inversion, traversal=TINY.traversal)
    assert first.epochs == 1 and first.start_epoch == 0
    assert first.metrics["workers"] == 2 and first.metrics["images"] > 0
    for key in ("d_loss", "g_adv", "g_class", "class_consistency", "images_per_s"):
        assert key in first.metrics, key
    checkpoints = storage.list_files(storage.join(out, "checkpoints", "gan"), suffix="state.pt")
    assert len(checkpoints) == 1
    assert storage.exists(storage.join(out, "samples", "epoch-0000.png"))
    assert storage.read_json(storage.join(out, "train_config.json"))["train"]["workers"] == 2
    # Rank 0 tracked the epoch: TensorBoard events uploaded into the run folder on S3, and an MLflow run.
    events = storage.list_files(storage.join(out, "tensorboard", "gan"))
    assert len(events) == 1 and "events.out.tfevents" in events[0]
    local = tmp_path / "tb" / "events.out.tfevents.copy"
    local.parent.mkdir()
    local.write_bytes(storage.read_bytes(events[0]))
    assert [step for step, _ in read_scalars(local.parent)["d_loss"]] == [0]
    (run,) = mlflow_runs(mlflow_uri, "raygan")
    assert run.info.run_name == "gan" and run.data.params["train.workers"] == "2"
    assert "class_consistency" in run.data.metrics

    # 2. Relaunch with two epochs: resumes at epoch 1; the last worker fails once at epoch 1 and
    #    Ray Train restarts the group from the epoch-0 checkpoint (FailureConfig), so the run completes.
    second = train_gan(phantom_shards, classifier_spec, out, gan=TINY.gan,
                       train=dataclasses.replace(TRAIN, workers=2, epochs=2),
                       inversion=TINY.inversion, traversal=TINY.traversal, fail_once_at_epoch=1)
    assert second.epochs == 2 and second.start_epoch == 1
    assert storage.exists(storage.join(out, "checkpoints", "fail-once.marker")), "the injected failure happened"
    assert len(storage.list_files(storage.join(out, "checkpoints", "gan"), suffix="state.pt")) == 2  # num_to_keep=2

    bundle = load_bundle(out)
    assert bundle.gan == TINY.gan and bundle.meta["extras"]["epochs"] == 2
    images = bundle.generator(torch.zeros(2, TINY.gan.z1_dim), torch.zeros(2, TINY.gan.z2_dim))
    assert images.shape == (2, 1, 32, 32)


def test_sample_grid_has_a_negative_and_a_positive_row() -> None:
    from io import BytesIO

    from PIL import Image

    from raygan.models import build_generator

    generator = build_generator(TINY.gan).train()
    png = sample_grid_png(generator, torch.randn(3, TINY.gan.z1_dim), torch.randn(3, TINY.gan.z2_dim))
    image = Image.open(BytesIO(png))
    assert image.size == (3 * 34 + 2, 2 * 34 + 2) and image.mode == "L"
    assert generator.training
