"""One Ray Train run: its storage arguments, the TorchTrainer set-up and the state it ended with.

The GAN, classifier and encoder drivers all launch their loop the same way: `workers` Ray Train
workers (0 = Train V2 local mode, in-process), checkpoints under one storage URI (local or S3),
a relaunch with the same name resuming from the latest one. `fit_run` does that and returns the
final checkpointed state; a relaunch with no epochs left reports nothing new, and the latest
stored checkpoint is then still the final one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raygan import storage
from raygan.train.checkpoint import state_of


def absolute_uri(uri: str) -> str:
    """`uri` with a local path made absolute (Ray refuses relative storage paths)."""
    uri = str(uri)
    if storage.is_remote(uri):
        return uri.rstrip("/")
    return os.path.abspath(os.path.expanduser(uri.removeprefix("file://")))


def run_storage(uri: str, settings: storage.StorageSettings | None) -> dict[str, Any]:
    """`RunConfig` storage arguments for `uri`: an absolute path, or a path plus a pyarrow
    filesystem carrying the S3 endpoint (Ray's own URI parsing ignores custom endpoints)."""
    if not storage.is_remote(uri):
        return {"storage_path": uri}
    fs, path = storage.filesystem(uri, settings)
    return {"storage_path": path, "storage_filesystem": fs}


@dataclass(frozen=True)
class RunSpec:
    """How a training loop is launched and where its checkpoints live."""

    name: str  # Ray Train run name under `checkpoints`; a relaunch with the same name resumes
    checkpoints: str  # storage URI of the run's checkpoints
    workers: int  # Ray Train workers (0: local mode)
    use_gpu: bool = False
    max_failures: int = 2  # worker failures survived by a restart from the latest checkpoint
    keep: int = 2  # checkpoints kept
    local_root: str | None = None  # where local mode (workers = 0) keeps its own checkpoints


def fit_run(loop: Callable[[dict[str, Any]], None], loop_config: Any, *, spec: RunSpec, dataset: Any,
            settings: storage.StorageSettings | None, what: str, epochs: int | None) -> tuple[Any, dict[str, Any]]:
    """Run `loop` ({"loop": loop_config}, the training split `dataset` as "train") under Ray Train as `spec`
    says -> (the Ray Train result, the final checkpointed state).

    Raises RuntimeError naming `what` and `epochs` when the run left no checkpoint at all.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        loop,
        train_loop_config={"loop": loop_config},
        scaling_config=ray.train.ScalingConfig(num_workers=spec.workers, use_gpu=spec.use_gpu),
        run_config=ray.train.RunConfig(
            name=spec.name,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=spec.keep),
            failure_config=ray.train.FailureConfig(max_failures=spec.max_failures),
            **run_storage(spec.checkpoints, settings),
        ),
        datasets={"train": dataset},
    )
    result = trainer.fit()
    state = state_of(result.checkpoint, local_root=spec.local_root, settings=settings)
    if state is None:
        raise RuntimeError(f"{what} under {spec.checkpoints} produced no checkpoint (epochs = {epochs})")
    return result, state


__all__ = ["RunSpec", "absolute_uri", "fit_run", "run_storage"]
