"""Experiment tracking: TensorBoard event files and a file-backed MLflow run are written, then read back
with TensorBoard's own reader and MLflow's client (the GAN training test checks the same from Ray Train)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raygan.tracking import Tracker, TrackingConfig


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in the TensorBoard event files under `folder`, as (step, value) pairs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(folder.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            series.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return series


def mlflow_runs(uri: str, experiment: str) -> list[object]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r} at {uri}"
    return client.search_runs([found.experiment_id])


def test_tracker_writes_tensorboard_events_and_an_mlflow_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    config = TrackingConfig.for_run(str(tmp_path / "run"), run_name="gan", params={"train": {"lr": 2e-4, "epochs": 2}},
                                    experiment="raygan-test")
    assert config.mlflow_uri == uri and config.params == {"train.lr": 2e-4, "train.epochs": 2}
    tracker = Tracker(config, tags={"start_epoch": "0"})
    for epoch, loss in enumerate((0.9, 0.5)):
        tracker.log({"d_loss": loss, "workers": 1, "flag": True, "bad": float("nan"), "note": "x"}, step=epoch)
    tracker.close()

    scalars = read_scalars(tmp_path / "run" / "tensorboard" / "gan")
    assert scalars["d_loss"] == [(0, pytest.approx(0.9)), (1, pytest.approx(0.5))]
    assert set(scalars) == {"d_loss", "workers"}  # booleans, nan and strings are not scalars

    (run,) = mlflow_runs(uri, "raygan-test")
    assert run.info.run_name == "gan" and run.info.status == "FINISHED"
    assert run.data.params == {"train.lr": "0.0002", "train.epochs": "2"} and run.data.tags["start_epoch"] == "0"
    history = MlflowClient(tracking_uri=uri).get_metric_history(run.info.run_id, "d_loss")
    assert [(m.step, m.value) for m in history] == [(0, pytest.approx(0.9)), (1, pytest.approx(0.5))]


def test_without_a_tracking_uri_there_is_no_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = TrackingConfig.for_run(str(tmp_path), run_name="classifier", params={})
    assert config.mlflow_uri is None
