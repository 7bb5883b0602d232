"""Connecting training to Ray: an existing cluster when there is one, else a local instance sized for training."""

from __future__ import annotations

import os

from raygan.cluster import ClusterInfo, connect, require


def ensure_ray(*, workers: int = 1) -> ClusterInfo:
    """Connect to Ray (raygan.cluster.connect) unless the caller already did.

    A new local instance gets more logical CPUs than training workers: if the workers take every
    CPU, Ray Data has none left to read and decode shards and the run hangs (seen on 2-core machines).
    """
    return connect(local_cpus=max(4, workers + 2, os.cpu_count() or 1))


def check_workers_fit(*, workers: int, use_gpu: bool, what: str = "training") -> None:
    """Stop before Ray Train waits forever: `workers` workers of 1 CPU (and 1 GPU with `use_gpu`),
    plus one CPU for Ray Data to read and decode shards, must fit in the cluster."""
    if workers == 0:  # local mode runs in this process and reserves nothing
        return
    require(cpus=workers + 1, gpus=workers if use_gpu else 0.0,
            what=f"{what} with {workers} worker(s){' on GPUs' if use_gpu else ''}")


__all__ = ["check_workers_fit", "ensure_ray"]
