"""A Ray cluster of four nodes on this machine (`ray.cluster_utils.Cluster`), the loopback S3 server its
only shared storage.

The head (num_cpus=0) holds the driver; three worker nodes have one CPU each, so two Train workers
(one CPU each) must land on two different nodes, and the third CPU is left for Ray Data's reads and
decodes (raygan refuses to start training without it). Every node is pinned to 127.0.0.1 and gets its
own RAY_TMPDIR, so no other Ray process on this machine finds (or joins) it.

The rest of the suite shares one `ray.init()` per pytest session (tests/conftest.py `ray_session`),
and a driver can be connected to one cluster only: these tests run in their own pytest session
(`make test` runs `pytest tests/multinode` after the main one) and skip when Ray is already
initialised in the process.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

# `ray.init(address="127.0.0.1:port")` rewrites a loopback address to the machine's external one
# (services.resolve_ip_for_localhost) while a node pinned to 127.0.0.1 listens on loopback only, so the
# driver could not connect. The one switch that makes Ray's own address lookup answer 127.0.0.1 is this
# variable (meant for Windows and macOS clusters; on Linux it changes only get_node_ip_address). Ray reads
# it when first imported: set it before, for this process and every Ray process it starts.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
RAY_IMPORTED_FIRST = "ray" in sys.modules  # too late for the variable: the fixture skips
import torch

from raygan.config import preset
from raygan.data.phantoms import PhantomConfig, write_phantoms
from raygan.models.classifier import build_classifier, factory_path
from raygan.models.frozen import ClassifierSpec, save_classifier

TINY = preset("tiny")
WORKER_NODES = 3  # one CPU each: two for Train workers, one for Ray Data
PHANTOMS = 46  # image_ids phantom-0 .. phantom-45: exactly 32 in the train split (2 ranks x 2 batches of 8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_args() -> dict[str, object]:
    """A node on loopback with its agents' ports chosen here. Left at 0, each agent picks one and writes
    it to a file that the raylet waits for, and a raylet whose agent is late aborts ("Timed out waiting
    for file .../metrics_agent_port_...", seen at load 14 on 2 cores)."""
    return {"node_ip_address": "127.0.0.1", "metrics_agent_port": _free_port(),
            "metrics_export_port": _free_port(), "dashboard_agent_listen_port": _free_port(),
            "runtime_env_agent_port": _free_port()}


@dataclass
class MultiNode:
    """The running cluster and what the tests add to or remove from it."""

    cluster: object  # ray.cluster_utils.Cluster
    head_id: str  # the driver's node

    def worker_nodes(self) -> list:
        return list(self.cluster.worker_nodes)  # type: ignore[attr-defined]

    def add_worker(self, name: str):
        """Add a one-CPU worker node (labelled by a custom resource `name`) and wait until it is alive."""
        node = self.cluster.add_node(num_cpus=1, resources={name: 1}, **node_args())  # type: ignore
        self.cluster.wait_for_nodes(timeout=120)  # type: ignore[attr-defined]
        return node


@pytest.fixture(scope="session")
def multinode() -> Iterator[MultiNode]:
    import ray
    from ray.cluster_utils import Cluster

    if RAY_IMPORTED_FIRST or ray.is_initialized():
        pytest.skip("the multi-node tests need their own pytest session: run `pytest tests/multinode` alone")
    tmpdir = tempfile.mkdtemp(prefix="rgmn-", dir="/tmp")  # short: Ray's socket paths must fit in 107 characters
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S",
                                            "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "RAY_ADDRESS")}
    os.environ["RAY_TMPDIR"] = tmpdir
    os.environ.pop("RAY_ADDRESS", None)
    # Starting two torch workers takes longer than Train's default 60 s on a loaded 2-core machine.
    os.environ["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = "300"
    os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "1"  # notice a removed node sooner (default 2 s)
    assert os.environ.get("RAY_AUTH_MODE"), "tests/conftest.py sets RAY_AUTH_MODE before Ray starts"
    # shutdown_at_exit=False: nodes can be added from a test's helper thread (the exit hooks install a
    # SIGTERM handler, which only the main thread may); the finally below shuts the cluster down.
    cluster = Cluster(initialize_head=True, shutdown_at_exit=False, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "resources": {"head": 1}, **node_args()})
    try:
        mn = MultiNode(cluster=cluster, head_id=cluster.head_node.node_id)
        for i in range(WORKER_NODES):
            mn.add_worker(f"node_{'abc'[i]}")
        ray.init(address=cluster.address, _node_ip_address="127.0.0.1", log_to_driver=False)
        yield mn
    finally:
        ray.shutdown()
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(tmpdir, ignore_errors=True)


@dataclass(frozen=True)
class Inputs:
    """Training inputs on S3 only."""

    data: str  # s3:// prefix of the phantom shards
    classifier: str  # s3:// classifier spec directory
    bucket: str  # s3://bucket for outputs


@pytest.fixture(scope="session")
def s3_inputs(s3_endpoint: str) -> Inputs:
    import boto3

    bucket = "raygan-multinode"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    data = f"s3://{bucket}/phantoms"
    write_phantoms(PhantomConfig(n=PHANTOMS, size=TINY.gan.image_size, seed=0, rows_per_shard=23), data)
    torch.manual_seed(0)
    size = TINY.gan.image_size
    spec = ClassifierSpec(format="factory", weights="model.pt", factory=factory_path("small_cnn"),
                          factory_kwargs={"image_size": size, "channels": 1}, size=size)
    classifier = save_classifier(build_classifier("small_cnn", image_size=size), f"s3://{bucket}/classifier",
                                 spec=spec)
    return Inputs(data=data, classifier=classifier, bucket=f"s3://{bucket}")
