"""The Ray cluster a command runs on: an existing one when there is one, else a fresh local instance.

The order is `ray.init()`'s own: RAY_ADDRESS (set by `ray job submit`, or by the user), then a
cluster started on this machine with `ray start` (its address file under Ray's temp directory,
which RAY_TMPDIR moves), else a new local instance sized for the command. Joining an existing
cluster passes no resource arguments (Ray refuses them there). Every command says on stderr
which cluster it uses.

`require` checks what a stage will ask of Ray against what the cluster has, so a request that
can never be placed (more CPUs or GPUs than the cluster's total) stops with a message instead
of waiting forever. On an autoscaling cluster, where nodes arrive later, RAYGAN_WAIT_FOR_RESOURCES=1
turns the stop into a warning.

`require_shared` stops a command before any work when the cluster has more than one node and a
path that Ray workers read or write is local: each node would see its own disk (or none). Paths
under a prefix listed in RAYGAN_SHARED_PREFIXES (a shared mount on every node, e.g. NFS) pass;
the rule itself is the pure `local_path_error`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

WAIT_ENV = "RAYGAN_WAIT_FOR_RESOURCES"  # "1": warn and wait for missing resources (autoscaling clusters)
SHARED_ENV = "RAYGAN_SHARED_PREFIXES"  # ":"-separated local prefixes mounted on every node (NFS, ...)


class ClusterTooSmall(RuntimeError):
    """A stage asks Ray for more CPUs or GPUs than the cluster has in all."""


class LocalPathOnCluster(ValueError):
    """A path Ray workers use is local to one machine while the cluster has several nodes."""


@dataclass(frozen=True)
class ClusterInfo:
    """Which Ray cluster this process is connected to."""

    kind: Literal["existing", "local"]  # joined a running cluster, or started a local instance
    source: str  # how it was found: "RAY_ADDRESS", "ray start on this machine", "started here", "already connected"
    address: str  # the GCS address
    cpus: float  # logical CPUs in the whole cluster
    gpus: float  # GPUs in the whole cluster

    def describe(self) -> str:
        """One line for people."""
        size = f"{self.cpus:g} logical CPU(s), {self.gpus:g} GPU(s)"
        if self.kind == "existing":
            return f"raygan: using the existing Ray cluster at {self.address} ({self.source}; {size})"
        return (f"raygan: started a local Ray instance ({size}; it stops when this command ends; "
                "set RAY_ADDRESS or `ray start` a cluster to use one)")


def _local_cluster_address() -> str | None:
    """The address of a cluster `ray start` left on this machine (what `ray.init()` would join), or None."""
    from ray._private import services  # the lookup ray.init() does itself; no public API exposes it

    return services.find_bootstrap_address(None)


def connect(*, local_cpus: int | None = None, include_dashboard: bool = False, announce: bool = True,
            node_ip_address: str | None = None) -> ClusterInfo:
    """Join the cluster at RAY_ADDRESS or the one `ray start` left here, else start a local instance.

    `local_cpus` sizes a new local instance only (default: the machine's cores); an existing
    cluster keeps its own size. `node_ip_address` pins a new local instance's node address (e.g.
    127.0.0.1 for a service on loopback). Announces the choice on stderr unless `announce` is False.
    """
    import ray

    from raygan import console

    console.quiet_ray_logging()  # before ray.init, which logs its start-up at INFO
    if ray.is_initialized():
        kind, source = "existing", "already connected"
    elif os.environ.get("RAY_ADDRESS"):
        ray.init()
        kind, source = "existing", "RAY_ADDRESS"
    elif _local_cluster_address():
        ray.init()
        kind, source = "existing", "ray start on this machine"
    else:
        pinned = {"_node_ip_address": node_ip_address} if node_ip_address else {}
        ray.init(address="local", num_cpus=local_cpus, include_dashboard=include_dashboard, **pinned)
        kind, source = "local", "started here"
    console.attach_ray()  # Ray's forwarded worker output goes through raygan's console from now on
    total = ray.cluster_resources()
    info = ClusterInfo(kind=kind, source=source, address=ray.get_runtime_context().gcs_address,
                       cpus=float(total.get("CPU", 0)), gpus=float(total.get("GPU", 0)))
    if announce:
        print(info.describe(), file=sys.stderr, flush=True)
    return info


def require(*, cpus: float, gpus: float = 0.0, what: str) -> None:
    """Stop with ClusterTooSmall when `what` needs more CPUs or GPUs than the connected cluster has in all."""
    import ray

    total = ray.cluster_resources()
    have_cpus, have_gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
    short = []
    if cpus > have_cpus + 1e-9:
        short.append(f"{cpus:g} CPU(s) (the cluster has {have_cpus:g})")
    if gpus > have_gpus + 1e-9:
        short.append(f"{gpus:g} GPU(s) (the cluster has {have_gpus:g})")
    if not short:
        return
    message = f"{what} needs {' and '.join(short)}"
    if os.environ.get(WAIT_ENV) == "1":
        print(f"raygan: {message}; waiting for the cluster to grow ({WAIT_ENV}=1)", file=sys.stderr, flush=True)
        return
    hint = " (on a machine without GPUs pass --no-gpu)" if gpus > have_gpus else ""
    raise ClusterTooSmall(f"{message}: ask for less{hint}, or set {WAIT_ENV}=1 on an autoscaling cluster")


def _under(path: str, prefix: str) -> bool:
    """True when the absolute local `path` is `prefix` or lies below it (by path components, not characters)."""
    prefix = prefix.rstrip("/") or "/"
    return path == prefix or path.startswith(prefix if prefix == "/" else prefix + "/")


def shared_prefixes(value: str | None) -> tuple[str, ...]:
    """The absolute prefixes of a RAYGAN_SHARED_PREFIXES value (":"-separated like PATH; blanks around and
    empty parts ignored)."""
    parts = (p.strip() for p in (value or "").split(":"))
    return tuple(os.path.abspath(os.path.expanduser(p)) for p in parts if p)


def local_path_error(*, nodes: int, paths: Mapping[str, str | None], prefixes: Sequence[str] = ()) -> str | None:
    """The message refusing the local ones among `paths` ({flag: path or URI}) on a cluster of `nodes`
    alive nodes, or None when every path is fine (one node, object storage, or under a shared prefix)."""
    from raygan import storage

    if nodes <= 1:
        return None
    local = {}
    for flag, uri in paths.items():
        if uri is None or storage.is_remote(uri):
            continue
        path = storage.local_path(uri)  # also refuses unknown schemes
        if not any(_under(path, os.path.abspath(p)) for p in prefixes):
            local[flag] = path
    if not local:
        return None
    listed = ", ".join(f"{flag} {path}" for flag, path in local.items())
    what = "is a local path" if len(local) == 1 else "are local paths"
    return (f"the Ray cluster has {nodes} nodes and {listed} {what} that its other nodes cannot see: use s3:// "
            f"URIs, or list the mounts every node shares in {SHARED_ENV} (e.g. /mnt/nfs:/data)")


def alive_nodes() -> int:
    """Alive nodes of the connected Ray cluster."""
    import ray

    return sum(1 for node in ray.nodes() if node.get("Alive"))


def require_shared(paths: Mapping[str, str | None]) -> None:
    """Stop with LocalPathOnCluster when the connected cluster has several nodes and one of `paths`
    ({flag: path or URI} that Ray workers read or write) is a local path outside RAYGAN_SHARED_PREFIXES."""
    message = local_path_error(nodes=alive_nodes(), paths=paths, prefixes=shared_prefixes(os.environ.get(SHARED_ENV)))
    if message is not None:
        raise LocalPathOnCluster(message)


__all__ = [
    "ClusterInfo", "ClusterTooSmall", "LocalPathOnCluster", "SHARED_ENV", "WAIT_ENV", "alive_nodes", "connect",
    "local_path_error", "require", "require_shared", "shared_prefixes",
]
