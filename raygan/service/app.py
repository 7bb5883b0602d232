"""The explanation service on Ray Serve: the deployments and the application builder.

    Ingress (FastAPI: /v1/*, viewer at /)  --handle-->  Explainer (batches requests, inverts them together)
                                           --handle-->  ShardJobs (one replica: background shard jobs)

The ingress decodes and checks uploads, waits for the Explainer with a timeout, and renders
the pictures, so the Explainer replicas (GPU when asked) do model work only. `build_app(args)`
is the Serve application builder used by `serve/config.yaml` and `raygan serve` (it lives in the
package, so an installed wheel serves without a checkout). The HTTP routes are
`raygan.service.api`; config, schemas, URI policy, pictures and the job runner sit beside them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from raygan.service.config import ServiceConfig
from raygan.service.uris import UriPolicy

log = logging.getLogger("ray.serve")
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128]


@serve.deployment(name="Explainer")
class ExplainerModel:
    """Holds one Explainer; concurrent requests are inverted together as one batch."""

    def __init__(self, config: ServiceConfig) -> None:
        import torch
        from ray.serve import metrics

        from raygan.bundle import load_bundle
        from raygan.explain.explainer import Explainer

        # Torch threads = reserved CPUs, so replicas sharing a node do not oversubscribe it.
        torch.set_num_threads(max(1, int(config.num_cpus)))
        self.config = config
        self.bundle = load_bundle(config.bundle_uri, settings=config.storage)
        device = "cuda" if config.num_gpus > 0 else "cpu"
        self.explainer = Explainer.from_bundle(self.bundle, device=device, attributions=config.attributions,
                                               no_encoder=config.no_encoder)
        self._batched.set_max_batch_size(config.max_batch_size)
        self._batched.set_batch_wait_timeout_s(config.batch_wait_timeout_s)
        self.histogram: Counter[int] = Counter()
        self.abandoned = 0  # batches stopped because every request in them had given up
        self._size_metric = metrics.Histogram(
            "raygan_explain_batch_size", description="images inverted together per Explainer call",
            boundaries=BATCH_BOUNDARIES,
        )
        self._images_metric = metrics.Counter("raygan_explained_images", description="images explained")

    def info(self) -> dict[str, Any]:
        """What this replica explains with (for /v1/model and the ingress)."""
        import dataclasses

        return {
            "bundle_uri": self.config.bundle_uri,
            "fingerprint": self.bundle.fingerprint,
            "bundle_id": self.explainer.bundle_id,
            "encoder": self.bundle.encoder_fingerprint if self.explainer.encoder is not None else None,
            "image_size": self.explainer.image_size,
            "channels": self.explainer.channels,
            "classifier": self.bundle.classifier.spec.to_json(),
            "target_class": self.bundle.target_class,
            "classes": list(self.bundle.classifier.spec.classes),
            "quality": self.bundle.quality.to_json(),
            "maps_skipped": dict(self.explainer.maps_skipped),
            "gan": dataclasses.asdict(self.bundle.gan),
            "inversion": dataclasses.asdict(self.explainer.inversion),
            "traversal": dataclasses.asdict(self.explainer.traversal),
        }

    def batching(self) -> dict[str, Any]:
        """Batch sizes this replica has run."""
        return {
            "max_batch_size": self.config.max_batch_size,
            "batch_wait_timeout_s": self.config.batch_wait_timeout_s,
            "batches": sum(self.histogram.values()),
            "requests": sum(n * c for n, c in self.histogram.items()),
            "max_seen": max(self.histogram, default=0),
            "abandoned": self.abandoned,
            "histogram": {str(n): c for n, c in sorted(self.histogram.items())},
        }

    async def explain(self, image: Any, image_id: str) -> tuple[Any, int]:
        """(Explanation, size of the batch it ran in) for one image [C, S, S].

        A caller that gives up (the ingress's 504 cancels this request; a client that hangs up, or the proxy's
        408, cancels the HTTP request, and Serve cancels its calls here with it) marks its request abandoned; a batch whose requests are all abandoned stops at its next inversion step
        instead of computing for nobody (Ray Serve does not cancel a batch once it runs)."""
        import threading

        abandoned = threading.Event()
        try:
            result, size = await self._batched(image, image_id, abandoned)
        except asyncio.CancelledError:
            abandoned.set()
            raise
        if isinstance(result, Exception):
            raise result
        return result, size

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.1)  # placeholders: __init__ sets the configured values
    async def _batched(self, images: list[Any], image_ids: list[str], abandoned: list[Any]) -> list[tuple[Any, int]]:
        size = len(images)
        self.histogram[size] += 1
        self._size_metric.observe(size)
        # In a thread, so the event loop keeps queueing the next batch while this one computes.
        results = await asyncio.to_thread(self._explain_all, images, image_ids, abandoned)
        self._images_metric.inc(size)
        return [(r, size) for r in results]

    def _explain_all(self, images: list[Any], image_ids: list[str], abandoned: list[Any]) -> list[Any]:
        import torch

        from raygan.explain.inversion import Abandoned

        def nobody_waits() -> bool:
            return all(flag.is_set() for flag in abandoned)

        try:
            return list(self.explainer.explain(torch.stack(images), image_ids=image_ids,  # [N, C, S, S]
                                               should_stop=nobody_waits))
        except Abandoned as e:
            self.abandoned += 1
            log.info("a batch of %d stopped: %s", len(images), e)
            return [e] * len(images)
        except Exception:
            if len(images) == 1:
                raise
            # One bad image must not fail its batch-mates: retry one by one, keeping each error.
            log.exception("a batch of %d failed; explaining its images one by one", len(images))
        out: list[Any] = []
        for image, image_id, flag in zip(images, image_ids, abandoned, strict=True):
            try:
                out.extend(self.explainer.explain(image[None], image_ids=[image_id], should_stop=flag.is_set))
            except Abandoned as e:
                out.append(e)
            except Exception as e:  # handed to that request's caller, which answers 500 with it
                log.exception("explaining %s failed", image_id)
                out.append(e)
        return out


@serve.deployment(name="ShardJobs", num_replicas=1, max_ongoing_requests=64)
class ShardJobs:
    """Runs shard jobs, each the same Ray Data job as `raygan explain-bulk` (its actors hold the model, not this
    replica); one replica, so one runner owns the job records."""

    def __init__(self, config: ServiceConfig) -> None:
        from raygan.service.jobs import JobRunner

        self.config = config
        self.runner = JobRunner(self._work, concurrency=config.job_concurrency, records_uri=config.jobs_uri,
                                settings=config.storage)

    def _work(self, input_uri: str, output_uri: str) -> Any:
        from raygan.bulk import BulkConfig, explain_bulk

        c = self.config
        bulk = BulkConfig(batch_size=c.job_batch_size, rows_per_file=c.job_rows_per_file, num_cpus=c.num_cpus,
                          num_gpus=c.job_num_gpus, attributions=c.attributions, no_encoder=c.no_encoder,
                          progress=False)
        return explain_bulk(input_uri, c.bundle_uri, output_uri, config=bulk, settings=c.storage,
                            runtime_env={"env_vars": dict(c.env_vars)} if c.env_vars else None)

    def submit(self, input_uri: str, output_uri: str) -> dict[str, Any]:
        """Accept a job; returns its record."""
        return self.runner.submit(input_uri, output_uri).to_json()

    def status(self, job_id: str) -> dict[str, Any] | None:
        """The job's record, or None when unknown."""
        record = self.runner.get(job_id)
        return None if record is None else record.to_json()


@serve.deployment(name="Ingress")
@serve.ingress()
class Ingress:
    """HTTP front door: validation, auth, limits, timeouts, pictures; the routes are in `make_api`."""

    def __init__(self, model: DeploymentHandle, jobs: DeploymentHandle, config: ServiceConfig) -> None:
        self.model = model
        self.jobs = jobs
        self.config = config
        # Read here, in the replica, from the env var or file the settings name (never from the settings).
        self.token = config.resolve_token()
        self.policy = UriPolicy.of(config.allowed_prefixes)
        self._info: dict[str, Any] | None = None

    async def info(self) -> dict[str, Any]:
        """The model's info, asked once (all Explainer replicas load the same bundle)."""
        if self._info is None:
            self._info = await asyncio.wait_for(self.model.info.remote(), timeout=self.config.request_timeout_s)
        return self._info

    def __serve_build_asgi_app__(self) -> Any:
        from raygan.service.api import make_api

        return make_api(self)


def build_app(args: dict[str, Any]) -> Any:
    """Serve application builder: `args` are ServiceConfig fields (serve/config.yaml `args:`)."""
    config = ServiceConfig.from_args(args)
    UriPolicy.of(config.allowed_prefixes)  # refuse a bad prefix now, not in every replica
    env = {"runtime_env": {"env_vars": dict(config.env_vars)}} if config.env_vars else {}
    model = ExplainerModel.options(
        ray_actor_options={"num_cpus": config.num_cpus, "num_gpus": config.num_gpus, **env},
        autoscaling_config={
            "min_replicas": config.min_replicas,
            "max_replicas": config.max_replicas,
            "target_ongoing_requests": config.target_ongoing_requests,
        },
        max_ongoing_requests=config.max_ongoing_requests,
        max_queued_requests=config.max_queued_requests,
    ).bind(config)
    # The job runner and the ingress reserve little CPU: on a 2-core `ray.init()` the Explainer's
    # reservation must still leave room for them, or the app never becomes ready.
    jobs = ShardJobs.options(ray_actor_options={"num_cpus": 0.25, **env}).bind(config)  # its Ray Data actors hold the GPUs
    return Ingress.options(
        num_replicas=config.ingress_replicas,
        ray_actor_options={"num_cpus": 0.25, **env},
        max_ongoing_requests=max(256, 4 * config.max_queued_requests),
    ).bind(model, jobs, config)


__all__ = ["ExplainerModel", "Ingress", "ShardJobs", "build_app"]
