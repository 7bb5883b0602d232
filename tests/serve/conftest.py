"""A real local Ray Serve app of the explanation service on a free loopback port, with a tiny bundle.

The app is started once for the tests of this directory (package scope) on the session's Ray
(`ray_session`) and shut down after them. Replicas are separate processes that were started
before the test's S3 server existed, so the S3 endpoint and test credentials reach them through
the service's storage settings and runtime_env, not through this process's environment.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image
from service_helpers import wait_healthy

ROOT = Path(__file__).resolve().parents[2]
# The second test app reads its token from this variable; set before the session's Ray starts (at
# collection), so replicas inherit it as they inherit a `raygan serve` process's environment.
SLOW_TOKEN_ENV = "RAYGAN_TEST_SLOW_TOKEN"
os.environ[SLOW_TOKEN_ENV] = "slow-token"
if str(ROOT) not in sys.path:  # the `serve` package lives at the repository root, beside raygan/
    sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tiny_bundle(out: Path, *, steps: int = 6) -> str:
    """The tiny preset's generator + an untrained small_cnn, saved as a bundle (inversion `steps`)."""
    from bundle_helpers import save_tiny_bundle

    return save_tiny_bundle(out, steps=steps)


def png(size: tuple[int, int] = (40, 30), *, seed: int = 0, mode: str = "L") -> bytes:
    """A random PNG of `size` (width, height)."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Service:
    """A running service for the tests."""

    url: str  # http://127.0.0.1:<port>
    bundle_uri: str  # its bundle
    local_root: Path  # an allowed local prefix
    bucket: str  # s3://<bucket>, an allowed prefix on the loopback S3 server
    token: str | None  # bearer token, None when open
    s3_endpoint: str  # the loopback S3 endpoint

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.url + path, headers=self.auth(), timeout=120, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        headers = {**self.auth(), **kw.pop("headers", {})}
        return requests.post(self.url + path, headers=headers, timeout=120, **kw)

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def service_args(bundle_uri: str, **overrides: Any) -> dict[str, Any]:
    """ServiceConfig args for a test app: small batches, quick timeouts, few CPUs."""
    args: dict[str, Any] = {
        "bundle_uri": bundle_uri, "max_batch_size": 8, "batch_wait_timeout_s": 0.2, "num_cpus": 1,
        "request_timeout_s": 120, "max_body_bytes": 2 * 2**20,
        "env_vars": {"PYTHONPATH": str(ROOT)},  # replicas import this checkout's raygan whatever directory pytest runs from
    }
    args.update(overrides)
    return args


@pytest.fixture(scope="package")
def service(ray_session: None, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The explanation service with a token, local and S3 allowed prefixes and an S3 pictures prefix."""
    import boto3
    from ray import serve

    from raygan.service.app import build_app

    root = tmp_path_factory.mktemp("serve")
    bundle = make_tiny_bundle(root)
    local = root / "allowed"
    local.mkdir()
    bucket = f"raygan-serve-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    token = "test-token-123"
    token_file = root / "token"  # the settings name the file; only the replicas read the token
    token_file.write_text(token + "\n")
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "RAYGAN_S3_ENDPOINT_URL": s3_endpoint, "PYTHONPATH": str(ROOT)}
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = service_args(bundle, allowed_prefixes=[str(local), f"s3://{bucket}"], token_file=str(token_file),
                        storage_endpoint_url=s3_endpoint, env_vars=env, pictures_prefix=f"s3://{bucket}/pictures")
    serve.run(build_app(args), name="raygan", route_prefix="/", blocking=False)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield Service(url=url, bundle_uri=bundle, local_root=local, bucket=f"s3://{bucket}", token=token,
                      s3_endpoint=s3_endpoint)
    finally:
        serve.shutdown()
