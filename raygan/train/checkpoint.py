"""Training checkpoints: one `state.pt` (a dict of tensors and plain values) per checkpoint directory.

Inside a Ray Train loop, `report_epoch` reports metrics from every rank and attaches a checkpoint
from rank 0; `restore_state` returns the latest state to resume from. Ray Train persists and
prunes checkpoints under the run's storage path, and a relaunch with the same storage path and
name gets the latest one from `ray.train.get_checkpoint()`.

Train V2's local mode (`ScalingConfig(num_workers=0)`) persists nothing: its `get_checkpoint()`
only returns what the same process reported. So in local mode the loops pass `local_root`, and
checkpoints are written (and pruned, and found again on relaunch) there by this module.
"""

from __future__ import annotations

import functools
import io
import logging
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch

from raygan import storage

STATE_FILE = "state.pt"
LOCAL_PREFIX = "epoch-"


def save_state(state: dict[str, Any], directory: str | Path) -> None:
    """Write `state` as `<directory>/state.pt`."""
    torch.save(state, Path(directory) / STATE_FILE)


def load_state_bytes(data: bytes) -> dict[str, Any]:
    """A state written by `save_state`, on the CPU (tensors and plain values only: weights_only)."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def load_checkpoint_state(checkpoint: Any) -> dict[str, Any]:
    """The state inside a `ray.train.Checkpoint` (downloaded when it lives in object storage)."""
    with checkpoint.as_directory() as directory:
        return load_state_bytes((Path(directory) / STATE_FILE).read_bytes())


def _local_dirs(local_root: str, settings: storage.StorageSettings | None) -> list[str]:
    """Names of the epoch-NNNN checkpoint directories under `local_root`, oldest first."""
    fs, root = storage.filesystem(local_root, settings)
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    return sorted(
        i.base_name for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith(LOCAL_PREFIX)
    )


def restore_state(
    *, local_root: str | None = None, settings: storage.StorageSettings | None = None
) -> dict[str, Any] | None:
    """The latest checkpointed state of this run, or None for a fresh start (call on every rank)."""
    import ray.train

    return state_of(ray.train.get_checkpoint(), local_root=local_root, settings=settings)


def state_of(checkpoint: Any, *, local_root: str | None = None, settings: storage.StorageSettings | None = None
             ) -> dict[str, Any] | None:
    """The state in a Ray Train checkpoint, else the newest under the local-mode root, else None."""
    if checkpoint is not None:
        return load_checkpoint_state(checkpoint)
    return latest_local_state(local_root, settings=settings) if local_root is not None else None


def latest_local_state(local_root: str, *, settings: storage.StorageSettings | None = None) -> dict[str, Any] | None:
    """The newest state under a local-mode checkpoint root, or None when there is none."""
    for name in reversed(_local_dirs(local_root, settings)):
        uri = storage.join(local_root, name, STATE_FILE)
        # A directory without state.pt is a write cut short: fall back to the one before.
        if storage.exists(uri, settings=settings):
            return load_state_bytes(storage.read_bytes(uri, settings=settings))
    return None


def _persist_local(
    directory: str, *, epoch: int, local_root: str, keep: int, settings: storage.StorageSettings | None
) -> Any:
    """Copy a checkpoint directory to `<local_root>/epoch-NNNN`, prune to `keep`; returns a Checkpoint there."""
    import ray.train

    target = storage.join(local_root, f"{LOCAL_PREFIX}{epoch:04d}")
    storage.upload_dir(directory, target, settings=settings)
    fs, _ = storage.filesystem(local_root, settings)
    for name in _local_dirs(local_root, settings)[:-keep]:
        fs.delete_dir(storage.filesystem(storage.join(local_root, name), settings)[1])
    fs, path = storage.filesystem(target, settings)
    return ray.train.Checkpoint(path=path, filesystem=fs)


@functools.cache
def _quiet_report_log() -> None:
    """Ray Train 2.60 logs each report's whole metrics dict at INFO from every worker, which buries
    the epoch progress bar (the same numbers) in the driver's output: keep its warnings only.
    Its logger is named after the module's file, an internal path of the pinned Ray version."""
    from ray.train.v2._internal.execution import context

    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def report_epoch(
    metrics: dict[str, Any],
    *,
    state: dict[str, Any] | None,
    rank: int,
    local_root: str | None = None,
    keep: int = 2,
    settings: storage.StorageSettings | None = None,
) -> None:
    """Report `metrics` (every rank must call this), with `state` as a checkpoint from rank 0."""
    import ray.train

    _quiet_report_log()
    if state is None or rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        save_state(state, tmp)
        if local_root is not None:
            checkpoint = _persist_local(
                tmp, epoch=int(state["epoch"]), local_root=local_root, keep=keep, settings=settings
            )
        else:
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        # Synchronous upload (the default): the temporary directory may go once report returns.
        ray.train.report(metrics, checkpoint=checkpoint)


__all__ = [
    "STATE_FILE", "latest_local_state", "load_checkpoint_state", "load_state_bytes", "report_epoch", "restore_state",
    "save_state", "state_of",
]
