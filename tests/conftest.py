"""Shared fixtures: a real S3-compatible server on loopback and one local Ray instance per session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Ray (2.60, Linux) rewrites a node address of 127.0.0.1 to the machine's outward address
# (services.resolve_ip_for_localhost), and then its raylets and agents listen there and on 0.0.0.0.
# With this switch off, get_node_ip_address() answers the loopback address and every Ray process
# listens on 127.0.0.1 only, which is all a test may use. (Its other effect, refusing
# `ray start --address` worker nodes, is for macOS/Windows; the tests' extra nodes are in-process.)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Serve's proxy must answer its readiness check in 5 s by default; on a 2-core machine busy with the
# suite's other Ray workers it can miss that three times and be killed before it ever serves.
os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
os.environ.setdefault("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "60")
# The tracking tests use a file-backed MLflow store, which MLflow 3 allows only with this opt-in; set
# before Ray starts so Train workers (which log from rank 0) inherit it.
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
# Fake credentials for the loopback S3 server, set before Ray starts so Ray worker processes
# (Train workers and controller, Data tasks) inherit them like nodes with an instance role would.
# The endpoint itself always travels explicitly (StorageSettings / pyarrow filesystem objects).
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real `moto_server` (S3 over HTTP) on a free loopback port; yields its endpoint URL."""
    port = _free_port()
    # The venv's own moto first: an older moto_server elsewhere on PATH (e.g. a pyenv shim) rejects
    # the multipart-upload checksums that current pyarrow sends.
    venv_exe = Path(sys.executable).with_name("moto_server")
    exe = str(venv_exe) if venv_exe.exists() else shutil.which("moto_server")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("moto_server did not start within 30 s")
    # Credentials the standard AWS chain picks up, for boto3 and pyarrow alike.
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    os.environ["RAYGAN_S3_ENDPOINT_URL"] = url
    try:
        yield url
    finally:
        os.environ.pop("RAYGAN_S3_ENDPOINT_URL", None)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a loaded machine: do not fail the session's teardown over it
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture()
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh bucket on the loopback S3 server; yields `s3://<bucket>`."""
    import boto3

    name = f"raygan-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray instance for the whole test session (ray.init costs seconds)."""
    import ray

    # More logical CPUs than cores so Train workers never starve Ray Data (DESIGN.md).
    # The node address is pinned to loopback: tests never listen on the machine's other interfaces.
    ray.init(num_cpus=6, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             _node_ip_address="127.0.0.1")
    try:
        yield
    finally:
        ray.shutdown()
