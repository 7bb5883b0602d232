"""Experiment tracking: TensorBoard event files in the run folder, and MLflow when MLFLOW_TRACKING_URI is set.

Training loops make one `Tracker` on rank 0 and log each epoch's scalars to it. TensorBoard
events go to `<run>/tensorboard/` (`tensorboard --logdir <run>`); for an object-storage run they
are written to a local directory and uploaded after every epoch, since TensorBoard's writer
only knows local files. MLflow gets the same scalars, the run's parameters and tags when the
driver's environment has MLFLOW_TRACKING_URI (read on the driver and passed to the workers in
`TrackingConfig`, because workers on other nodes do not share the driver's environment).
Tune sweeps use Ray Tune's own loggers (`tune_callbacks`): TensorBoard files per trial, and
`MLflowLoggerCallback` under the same condition. mlflow is an optional extra (`raygan[tracking]`).
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from raygan import storage

MLFLOW_ENV = "MLFLOW_TRACKING_URI"
TENSORBOARD_DIR = "tensorboard"


@dataclass(frozen=True)
class TrackingConfig:
    """Where one training run's metrics go."""

    tensorboard_uri: str | None  # directory (local or s3://) for TensorBoard event files; None = none
    mlflow_uri: str | None  # MLflow tracking URI; None = no MLflow
    experiment: str  # MLflow experiment name
    run_name: str  # MLflow run name and TensorBoard subdirectory
    params: dict[str, Any] = field(default_factory=dict)  # flat parameters logged once per run

    @classmethod
    def for_run(cls, out: str, *, run_name: str, params: dict[str, Any], experiment: str = "raygan") -> TrackingConfig:
        """TensorBoard under `<out>/tensorboard/<run_name>`; MLflow when this process's environment names a server."""
        return cls(tensorboard_uri=storage.join(out, TENSORBOARD_DIR, run_name),
                   mlflow_uri=os.environ.get(MLFLOW_ENV) or None, experiment=experiment, run_name=run_name,
                   params=flatten(params))


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> one level with dotted keys (MLflow parameters are flat strings)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


class Tracker:
    """Logs scalars per step to TensorBoard and (when configured) MLflow; make it on rank 0 only."""

    def __init__(self, config: TrackingConfig, *, settings: storage.StorageSettings | None = None,
                 tags: dict[str, str] | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.config = config
        self.settings = settings
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._writer = None
        if config.tensorboard_uri is not None:
            local = config.tensorboard_uri
            if storage.is_remote(local):
                self._scratch = tempfile.TemporaryDirectory(prefix="raygan-tb-")
                local = self._scratch.name
            self._writer = SummaryWriter(log_dir=storage.filesystem(local)[1])
        self._mlflow = None
        if config.mlflow_uri:
            import mlflow  # the `tracking` extra; a clear ImportError says which package is missing

            mlflow.set_tracking_uri(config.mlflow_uri)
            mlflow.set_experiment(config.experiment)
            mlflow.start_run(run_name=config.run_name, tags=tags or {})
            mlflow.log_params({k: str(v)[:500] for k, v in config.params.items()})  # MLflow caps values at 6000
            self._mlflow = mlflow

    def log(self, metrics: dict[str, Any], *, step: int) -> None:
        """Record the finite numeric values of `metrics` at `step` (an epoch)."""
        scalars = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}
        if self._writer is not None:
            for key, value in scalars.items():
                self._writer.add_scalar(key, value, global_step=step)
            self._writer.flush()
            if self._scratch is not None:  # object storage: upload what the writer has flushed
                storage.upload_dir(self._scratch.name, self.config.tensorboard_uri, settings=self.settings)
        if self._mlflow is not None:
            self._mlflow.log_metrics(scalars, step=step)

    def close(self) -> None:
        """Flush and close the writers (ends the MLflow run)."""
        if self._writer is not None:
            self._writer.close()
            if self._scratch is not None:
                storage.upload_dir(self._scratch.name, self.config.tensorboard_uri, settings=self.settings)
                self._scratch.cleanup()
        if self._mlflow is not None:
            self._mlflow.end_run()


def tune_callbacks(*, experiment: str = "raygan-tune") -> list[Any]:
    """Extra Ray Tune callbacks: MLflow when MLFLOW_TRACKING_URI is set. (Tune writes TensorBoard files
    per trial by itself, through tensorboardX, which ray[tune] installs.)"""
    uri = os.environ.get(MLFLOW_ENV)
    if not uri:
        return []
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    return [MLflowLoggerCallback(tracking_uri=uri, experiment_name=experiment, log_params_on_trial_end=True)]


__all__ = ["MLFLOW_ENV", "TENSORBOARD_DIR", "Tracker", "TrackingConfig", "flatten", "tune_callbacks"]
