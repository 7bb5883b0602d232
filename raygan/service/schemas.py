"""HTTP schemas of the explanation service (pydantic): what /v1/* accepts and answers.

These models are the OpenAPI document at /openapi.json (browsable at /docs). Numbers that can
be undefined for an image (a Spearman rho of a flat curve, a crossing that never happens) are
null, never NaN: JSON has no NaN.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

IMAGE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"
JobState = Literal["queued", "running", "done", "failed"]
PictureMode = Literal["inline", "stored", "none"]


def finite(value: float | None) -> float | None:
    """`value`, or None where it is NaN or infinite."""
    return None if value is None or not math.isfinite(value) else float(value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExplainJSONRequest(_Strict):
    """An image sent as JSON: base64 PNG/JPEG bytes and an optional id."""

    image_base64: str = Field(
        ..., min_length=1, description="PNG or JPEG bytes, base64 (standard alphabet; a data: URL prefix is accepted)"
    )
    image_id: str | None = Field(
        None, pattern=IMAGE_ID_PATTERN,
        description="id echoed back and used to seed the inversion; default: a fresh 'upload-...' id",
    )


class TraversalOut(BaseModel):
    """The latent traversal G(z1, alpha * z2): alpha per frame and the classifier's p(positive)."""

    alphas: list[float] = Field(
        ..., description="alpha = n * rate, n = 0..frames (0 = counterfactual, 1 = reconstruction)")
    probs: list[float] = Field(..., description="p_C(positive) of each frame")


class MetricsOut(BaseModel):
    """Quality of this one explanation."""

    monotone: bool = Field(..., description="p non-decreasing along the traversal (within 1e-3)")
    spearman: float | None = Field(..., description="Spearman rho of p against alpha (null when undefined)")
    crossing_alpha: float | None = Field(..., description="first alpha where p reaches 0.5; null if never")
    recon_mse: float | None = Field(..., description="MSE of G(z1, z2) vs the input, [-1, 1] scale")
    recon_ssim: float | None = Field(..., description="SSIM of G(z1, z2) vs the input")


class PicturesOut(BaseModel):
    """PNG pictures: base64 strings (mode "inline"), storage URIs (mode "stored"), or nothing (mode "none")."""

    mode: PictureMode = Field(..., description="how the pictures below are given")
    input: str | None = Field(None, description="the input as the model saw it (center-cropped, resized)")
    figure: str | None = Field(None, description="the paper's Figure 2 layout for this image")
    reconstruction: str | None = Field(None, description="G(z1, z2)")
    counterfactual: str | None = Field(None, description="G(z1, 0)")
    traversal_frames: list[str] = Field(default_factory=list, description="G(z1, alpha * z2) for each alpha")
    diff: str | None = Field(None, description="difference map |G(z1, z2) - G(z1, 0)| over the input")
    swap: str | None = Field(None, description="counterfactual swap map over the input: where replacing the image by "
                             "its counterfactual lowers the classifier's target log-odds (raygan's audit map)")
    gradcam: str | None = Field(None, description="Grad-CAM over the input")
    ig: str | None = Field(None, description="Integrated Gradients over the input")


class ExplainResponse(BaseModel):
    """One explained image."""

    image_id: str
    bundle_id: str = Field(..., description="fingerprint of the bundle and settings that produced this")
    target_class: str = Field(..., description="the class explained: every p_* is p(target class)")
    warning: str | None = Field(None, description="the bundle's quality-gate warning (generator class consistency "
                                "below 0.9, or never measured); null when the gate passes")
    maps_skipped: dict[str, str] = Field(default_factory=dict,
                                         description="map name -> why this classifier cannot give that map")
    p_input: float = Field(..., description="p_C(positive | x)")
    p_reconstruction: float = Field(..., description="p_C(positive | G(z1, z2))")
    p_counterfactual: float = Field(..., description="p_C(positive | G(z1, 0))")
    traversal: TraversalOut
    metrics: MetricsOut
    steps_used: int = Field(..., description="inversion steps run")
    used_fallback: bool = Field(..., description="the traversal used the mean positive direction (z2 was ~0)")
    batch_size: int = Field(..., description="how many requests were inverted together with this one")
    seconds: float = Field(..., description="server time for this request")
    pictures: PicturesOut


class ShardJobRequest(_Strict):
    """Explain every row of the input shards into the output prefix (results contract)."""

    input_uri: str = Field(..., min_length=1, max_length=2048, description="Parquet shards (s3:// or absolute path)")
    output_uri: str = Field(..., min_length=1, max_length=2048, description="where results/ and artifacts/ go")


class JobCounts(BaseModel):
    """Rows of a shard job (known when it is done)."""

    rows_in: int | None = None
    ok: int | None = None
    error: int | None = None
    skipped: int | None = None


class JobStatus(BaseModel):
    """A shard job's state."""

    job_id: str
    state: JobState
    input_uri: str
    output_uri: str
    counts: JobCounts
    results_uri: str | None = Field(None, description="<output>/results once the job is done")
    artifacts_uri: str | None = Field(None, description="<output>/artifacts once the job is done")
    message: str | None = Field(None, description="why the job failed")
    resumed: int = Field(0, description="times a restarted service took the job back and ran it again")
    submitted: float = Field(..., description="Unix time")
    started: float | None = None
    finished: float | None = None
    status_url: str = Field(..., description="where to poll this job")


class Health(BaseModel):
    """Liveness of the service and its model replicas."""

    status: Literal["ok"]
    bundle_id: str


class BatchingStats(BaseModel):
    """Batch sizes seen by the Explainer replica that answered (each replica counts its own)."""

    max_batch_size: int
    batch_wait_timeout_s: float
    batches: int
    requests: int
    max_seen: int
    abandoned: int = Field(..., description="batches stopped early because every request in them had given up "
                                            "(a 504, or a client that hung up)")
    histogram: dict[str, int] = Field(..., description="batch size -> number of batches")


class QualityOut(BaseModel):
    """The bundle's quality gate: how far its generator can be trusted."""

    class_consistency: float | None = Field(..., description="paper's protocol; null when never measured")
    consistency_samples: int
    frechet: float | None = Field(..., description="Frechet distance, generated vs real, in the classifier's features")
    frechet_samples: int
    frechet_note: str | None = Field(None, description="why the Frechet distance is missing")
    threshold: float = Field(..., description="below this class consistency every explanation carries a warning")
    passed: bool
    warning: str | None = Field(None, description="what every explanation of this bundle says; null when passed")


class ModelInfo(BaseModel):
    """What the service explains with."""

    bundle_uri: str
    fingerprint: str = Field(..., description="bundle fingerprint (weights and default settings)")
    bundle_id: str = Field(..., description="bundle_id of the results this service produces")
    encoder: str | None = Field(None, description="fingerprint of the encoder inversions start from; null: from scratch")
    image_size: int
    channels: int
    classifier: dict = Field(..., description="the classifier spec (classifier.json)")
    target_class: str = Field(..., description="the class this bundle explains (name, or output index)")
    classes: list[str] = Field(..., description="the classifier's class names (empty: unnamed)")
    quality: QualityOut
    maps_skipped: dict[str, str] = Field(..., description="maps this classifier cannot give, and why")
    gan: dict
    inversion: dict
    traversal: dict
    settings: dict = Field(..., description="service settings (secrets hidden)")
    batching: BatchingStats


class ErrorBody(BaseModel):
    """Every error answer."""

    detail: str = Field(..., description="what went wrong, in words (never a traceback, a path or an object repr)")
    request_id: str | None = Field(None, description="5xx only: the id the service log records the details under")


__all__ = [
    "BatchingStats", "ErrorBody", "ExplainJSONRequest", "ExplainResponse", "Health", "IMAGE_ID_PATTERN",
    "JobCounts", "JobState", "JobStatus", "MetricsOut", "ModelInfo", "PictureMode", "PicturesOut", "QualityOut",
    "ShardJobRequest", "TraversalOut", "finite",
]
