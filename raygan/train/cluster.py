"""Connecting to Ray: an existing cluster when there is one, else a local instance sized for training."""

from __future__ import annotations

import os
import sys


def ensure_ray(*, workers: int = 1) -> None:
    """Initialise Ray unless the caller already did.

    Under `ray job submit` (RAY_ADDRESS set) this connects to the cluster. Otherwise it starts a
    local instance with more logical CPUs than training workers: if the workers take every CPU,
    Ray Data has none left to read and decode shards and the run hangs (seen on 2-core machines).
    """
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
        return
    ray.init(num_cpus=max(4, workers + 2, os.cpu_count() or 1), include_dashboard=False)


def warn_if_gpus_missing(*, workers: int, use_gpu: bool) -> None:
    """Say so when a GPU run asks for more GPUs than the cluster has now: Ray Train would wait
    for them silently (an autoscaling cluster may still add them, so this only warns)."""
    import ray

    if not use_gpu or workers == 0:  # local mode reserves nothing: it uses a GPU when there is one
        return
    wanted, available = workers, int(ray.cluster_resources().get("GPU", 0))
    if available < wanted:
        print(f"raygan: waiting for {wanted} GPU(s); the Ray cluster has {available} now. "
              "On a machine without GPUs pass --no-gpu (the 'paper' preset asks for GPUs).", file=sys.stderr)


__all__ = ["ensure_ray", "warn_if_gpus_missing"]
