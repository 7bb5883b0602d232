"""ServiceConfig: everything `raygan.service.app` needs to build the explanation service.

It comes from `serve/config.yaml` (`args:` of the application), from `raygan serve` flags, or
from a test; `ServiceConfig.from_args` turns such a mapping into the frozen dataclass and
refuses unknown keys, so a typo in a YAML file fails at deploy time rather than being ignored.

The bearer token is never a setting: a Serve application's args are shown by the Ray dashboard
(`GET /api/serve/applications/`) and in `serve run`'s log. The settings name where each replica
reads it instead, an environment variable (`token_env`) or a file (`token_file`), and a replica
whose reference resolves to nothing refuses to start rather than serve without authentication.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from raygan.storage import StorageSettings

MiB = 2**20


@dataclass(frozen=True)
class ServiceConfig:
    """How the explanation service runs: model, limits, batching, replicas, shard jobs."""

    bundle_uri: str  # the bundle to explain with (local path, file:// or s3://)
    allowed_prefixes: tuple[str, ...] = ()  # shard jobs may only read/write under these; empty disables /v1/shards
    token_env: str | None = None  # env var holding the bearer token /v1/* (but /v1/health) requires; read per replica
    token_file: str | None = None  # or a file holding it (absolute path on every node); None with token_env: open
    max_body_bytes: int = 10 * MiB  # larger request bodies are refused with 413
    max_image_pixels: int = 25_000_000  # larger images (width x height) are refused with 413 before decoding
    request_timeout_s: float = 300.0  # an explanation slower than this answers 504 (never hangs)
    max_batch_size: int = 8  # requests inverted together by one Explainer replica
    batch_wait_timeout_s: float = 0.1  # how long a replica waits for a batch to fill (latency for throughput)
    num_gpus: float = 0.0  # GPUs per Explainer replica (0 = CPU)
    num_cpus: float = 1.0  # CPUs per Explainer replica; also its torch thread count
    min_replicas: int = 1  # Explainer autoscaling floor
    max_replicas: int = 1  # Explainer autoscaling ceiling
    target_ongoing_requests: float = 8.0  # autoscaling target of in-flight requests per replica
    max_queued_requests: int = 64  # requests waiting for an Explainer replica beyond this answer 503
    ingress_replicas: int = 1  # HTTP ingress replicas (decode, render, respond)
    pictures_prefix: str | None = None  # when set, pictures are written here and returned as URIs (not inline)
    job_concurrency: int = 1  # shard jobs running at once; later ones wait in state "queued"
    job_batch_size: int = 16  # images per Explainer call inside a shard job
    job_rows_per_file: int = 1024  # a shard job writes its results to a new Parquet file every this many rows
    #                                (what a restart of the service keeps of a job it interrupts)
    job_num_gpus: float = 0.0  # GPUs of each shard job's Ray Data actor (the one that holds the model)
    jobs_uri: str | None = None  # shard-job records kept here (folder or s3://), so a restarted service knows and
    #                               resumes its jobs; None: in the runner replica's memory only (lost with it)
    attributions: bool = True  # compute Grad-CAM and Integrated Gradients beside the difference map
    no_encoder: bool = False  # invert from scratch even when the bundle has an encoder (explanations and shard jobs)
    storage_endpoint_url: str | None = None  # S3 endpoint for the replicas (None: their environment decides)
    storage_region: str | None = None  # S3 region for the replicas
    env_vars: dict[str, str] = field(default_factory=dict)  # extra environment of every replica (runtime_env)

    def __post_init__(self) -> None:
        if not self.bundle_uri:
            raise ValueError("bundle_uri is required")
        positive = {
            "max_body_bytes": self.max_body_bytes, "max_image_pixels": self.max_image_pixels,
            "request_timeout_s": self.request_timeout_s,
            "max_batch_size": self.max_batch_size, "num_cpus": self.num_cpus, "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas, "target_ongoing_requests": self.target_ongoing_requests,
            "max_queued_requests": self.max_queued_requests, "ingress_replicas": self.ingress_replicas,
            "job_concurrency": self.job_concurrency, "job_batch_size": self.job_batch_size,
            "job_rows_per_file": self.job_rows_per_file,
        }
        bad = [f"{k}={v!r}" for k, v in positive.items() if not v > 0]
        if bad:
            raise ValueError(f"these settings must be positive: {', '.join(bad)}")
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) > max_replicas ({self.max_replicas})")
        if self.batch_wait_timeout_s < 0 or self.num_gpus < 0 or self.job_num_gpus < 0:
            raise ValueError("batch_wait_timeout_s, num_gpus and job_num_gpus must be >= 0")
        if self.token_env is not None and self.token_file is not None:
            raise ValueError("set token_env or token_file, not both")
        if self.token_env is not None and not self.token_env.strip():
            raise ValueError("token_env must name an environment variable")
        if self.token_file is not None and not os.path.isabs(self.token_file):
            raise ValueError(f"token_file must be an absolute path (replicas may run elsewhere), got {self.token_file!r}")

    @property
    def requires_token(self) -> bool:
        """Whether the service authenticates /v1/* (a token reference is set)."""
        return self.token_env is not None or self.token_file is not None

    def resolve_token(self) -> str | None:
        """The bearer token from the referenced env var or file (None when no reference is set).

        Raises ValueError when a reference is set but yields no token, so a replica never starts open by mistake.
        """
        if self.token_env is not None:
            token = os.environ.get(self.token_env, "").strip()
            where = f"environment variable {self.token_env}"
        elif self.token_file is not None:
            try:
                with open(self.token_file, encoding="utf-8") as f:
                    token = f.read().strip()
            except OSError as e:
                raise ValueError(f"cannot read the token file {self.token_file}: {e.strerror}") from e
            where = f"token file {self.token_file}"
        else:
            return None
        if not token:
            raise ValueError(f"the {where} is empty or unset on this node; the service needs a token there")
        return token

    @property
    def storage(self) -> StorageSettings:
        """Storage settings the replicas use: explicit ones, else their environment's."""
        env = StorageSettings.from_env()
        return StorageSettings(
            endpoint_url=self.storage_endpoint_url or env.endpoint_url,
            region=self.storage_region or env.region,
        )

    @property
    def max_ongoing_requests(self) -> int:
        """Per Explainer replica: at least a full batch, or batches never fill (DESIGN.md, Serve)."""
        return max(2 * self.max_batch_size, int(self.target_ongoing_requests))

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> ServiceConfig:
        """Build from a plain mapping (YAML `args:`, CLI); lists become tuples; unknown keys are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        if "token" in args:
            raise ValueError("'token' is not a setting: application args are visible in the Ray dashboard and logs. "
                             "Put the token in an environment variable or a file on the nodes and name it with "
                             "token_env or token_file")
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"unknown service setting(s) {unknown}; known: {sorted(known)}")
        values = dict(args)
        prefixes = values.get("allowed_prefixes", ())
        if isinstance(prefixes, str):
            prefixes = (prefixes,)
        values["allowed_prefixes"] = tuple(str(p) for p in prefixes or ())
        values["env_vars"] = {str(k): str(v) for k, v in dict(values.get("env_vars") or {}).items()}
        return cls(**values)

    def public(self) -> dict[str, Any]:
        """The settings as a JSON-able dict without secrets (for /v1/model)."""
        data = dataclasses.asdict(self)
        data["authentication"] = "bearer token" if self.requires_token else "none"
        data["env_vars"] = sorted(self.env_vars)  # names only: values may be credentials
        data["allowed_prefixes"] = list(self.allowed_prefixes)
        return data


__all__ = ["MiB", "ServiceConfig"]
