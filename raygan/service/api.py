"""HTTP routes of the explanation service (FastAPI), built in each Ingress replica by `make_api(ingress)`.

Requests pass the `Guard` middleware first (bearer token, body size), so an unauthorised or
oversized request is refused before its body is parsed. Every error is JSON {"detail": "..."}
with a 4xx status for anything the client got wrong; 5xx is kept for the service's own faults
(500 internal, 503 overloaded/unavailable, 504 too slow). A 5xx answer says only what kind of
fault it was and carries a request id (Ray Serve's, also in its `x-request-id` header); the
details go to the replica's log under that id, never to the client. `/docs` serves Swagger UI
from files shipped in the fastapi-offline package, so it works without internet access.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPBearer
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

import raygan
from raygan import storage
from raygan.data.codec import ImageDecodeError, ImageTooLarge
from raygan.service import schemas
from raygan.service.pictures import answer
from raygan.service.uploads import decode_base64, decode_upload, default_image_id
from raygan.service.uris import InvalidUri, UriNotAllowed

log = logging.getLogger("ray.serve")
STATIC = Path(__file__).with_name("static")
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
OPEN_PATHS = ("/v1/health",)  # answered without a token (load balancers probe it)
RAW_IMAGE_TYPES = ("image/png", "image/jpeg", "application/octet-stream")

API_DESCRIPTION = """
Explains what an image classifier has learned by latent traversal of a class-conditional GAN
(Dravid & Katsaggelos, AAAI 2022): the image is inverted into the GAN's latent space, the class
latent is walked from negative (alpha = 0, the counterfactual) to the image's own (alpha = 1, the
reconstruction), and the classifier's p(positive) is recorded per frame.

**Images.** PNG or JPEG, 8 or 16 bit, gray or colour, any size and aspect ratio: the image is
center-cropped to a square (the longer side trimmed equally at both ends) and resized (Lanczos)
to the model's side (see `/v1/model`, `image_size`); colour is converted to gray for 1-channel
models. Send it as `multipart/form-data` (field `file`, optional field `image_id`), as JSON
`{"image_base64": ..., "image_id": ...}`, or as a raw `image/png` / `image/jpeg` body
(`?image_id=` in the query). Concurrent requests are inverted together in batches.

**Pictures.** Inline base64 PNGs by default; `?pictures=stored` writes them under the service's
pictures prefix and answers URIs; `?pictures=none` answers the numbers only.

**Errors** are JSON `{"detail": "..."}`: 400 a body that cannot be parsed, 401 missing or wrong
bearer token, 403 a URI outside the allowed prefixes, 404 unknown job, 413 body or image too
large (also decompression bombs), 415 not a PNG/JPEG image (GIF, TIFF, WebP, BMP are refused),
non-finite pixels, or an unsupported content type, 422 malformed request, 500 an internal fault,
503 overloaded or model unavailable, 504 the explanation took longer than the service's timeout.
5xx answers carry a `request_id`; the service log has the details under it.

**Shard jobs.** `POST /v1/shards` explains Parquet input shards into an output prefix (results
contract: `<output>/results/*.parquet`, `<output>/artifacts/`); poll `GET /v1/jobs/{job_id}`.
"""

_ERROR_TEXT = {
    400: "malformed request", 401: "missing or wrong bearer token", 403: "URI outside the allowed prefixes",
    404: "unknown job", 413: "body or image too large", 415: "not a readable image, or unsupported content type",
    422: "malformed request", 500: "internal fault (request_id names it in the service log)",
    503: "overloaded or model unavailable", 504: "explanation too slow",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error codes (500 on every route: any route can fault)."""
    return {code: {"model": schemas.ErrorBody, "description": _ERROR_TEXT[code]} for code in sorted({*codes, 500})}


def request_id() -> str:
    """Ray Serve's id of the request being handled (in its logs and `x-request-id` header), else a fresh one."""
    from ray.serve.context import _get_serve_request_context  # the id Serve's own log lines carry

    return _get_serve_request_context().request_id or uuid.uuid4().hex


def server_error(status: int, detail: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
    """A 5xx answer: a generic `detail` and the request id (the log has the rest; Serve's proxy sends the same
    id in the `x-request-id` header)."""
    rid = request_id()
    return JSONResponse({"detail": f"{detail} (request id {rid})", "request_id": rid}, status_code=status,
                        headers=headers)


EXPLAIN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"},
                               "image_id": {"type": "string", "pattern": schemas.IMAGE_ID_PATTERN}},
            }},
            "application/json": {"schema": schemas.ExplainJSONRequest.model_json_schema()},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def describe(problems: Any) -> str:
    """Pydantic/FastAPI validation errors -> one readable line."""
    parts = []
    for p in problems:
        loc = ".".join(str(x) for x in p.get("loc", ()) if x != "body")
        parts.append(f"{loc}: {p.get('msg', 'invalid')}" if loc else str(p.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


class Guard:
    """ASGI middleware before every route: bearer token on /v1/* (401), body size (413)."""

    def __init__(self, app: Any, *, token: str | None, max_bytes: int) -> None:  # token: resolved, never logged
        self.app = app
        self.token = token
        self.max_bytes = max_bytes

    def _authorised(self, header: bytes | None) -> bool:
        scheme, _, value = (header or b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), (self.token or "").encode())

    async def _refuse(self, status: int, detail: str, scope: dict, receive: Any, send: Any,
                      headers: dict[str, str] | None = None) -> None:
        # Read (and drop) what the client is still sending, so it gets this answer rather than a reset.
        drained, more = 0, True
        while more and drained <= 4 * self.max_bytes:
            message = await receive()
            drained += len(message.get("body", b""))
            more = message["type"] == "http.request" and message.get("more_body", False)
        await JSONResponse({"detail": detail}, status_code=status, headers=headers)(scope, receive, send)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        path, root = scope.get("path", ""), scope.get("root_path", "")
        if root and path.startswith(root):  # under a Serve route prefix, "path" still carries the prefix
            path = path[len(root):]
        if self.token and path.startswith("/v1/") and path not in OPEN_PATHS and not self._authorised(
                headers.get(b"authorization")):
            await self._refuse(401, "missing or wrong bearer token (send 'Authorization: Bearer <token>')",
                               scope, receive, send, {"WWW-Authenticate": "Bearer"})
            return
        length = headers.get(b"content-length")
        if length is not None and not length.isdigit():
            await self._refuse(400, "invalid Content-Length header", scope, receive, send)
            return
        too_large = f"request body larger than this service's limit of {self.max_bytes} bytes"
        if length is not None and int(length) > self.max_bytes:
            await self._refuse(413, too_large, scope, receive, send)
            return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # chunked bodies have no Content-Length to check up front
                    raise HTTPException(413, too_large)
            return message

        await self.app(scope, limited, send)


def make_api(ingress: Any) -> FastAPI:
    """The FastAPI app of one Ingress replica (`ingress` has .config, .policy, .model, .jobs, .info())."""
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

    config = ingress.config
    api = FastAPIOffline(title="raygan explanation service", version=raygan.__version__, description=API_DESCRIPTION,
                         redoc_url=None)
    api.add_middleware(Guard, token=ingress.token, max_bytes=config.max_body_bytes)
    # Declares the scheme in the OpenAPI document; Guard enforces it before any body is parsed.
    bearer = Depends(HTTPBearer(auto_error=False, description="needed when the service runs with a token"))
    viewer_page = (STATIC / "index.html").read_text(encoding="utf-8")

    @api.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe(exc.errors())}, status_code=422)

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code < 500:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        log.warning("%s %s answered %d (request id %s): %s", request.method, request.url.path, exc.status_code,
                    request_id(), exc.detail, exc_info=exc.__cause__)
        return server_error(exc.status_code, str(exc.detail), headers=exc.headers)

    @api.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception) -> JSONResponse:
        # The service's own fault (e.g. storage refused a picture): the detail goes to the log only,
        # since exception texts carry paths, bucket names and object reprs.
        log.error("%s %s failed (request id %s)", request.method, request.url.path, request_id(), exc_info=exc)
        return server_error(500, "internal error")

    async def model_info() -> dict[str, Any]:
        try:
            return await ingress.info()
        except BackPressureError as e:  # the first requests ask the model for its info through its full queue
            raise HTTPException(503, "the service is overloaded (too many queued explanations); retry later",
                                headers={"Retry-After": "5"}) from e
        except (RayActorError, DeploymentUnavailableError, asyncio.TimeoutError) as e:
            raise HTTPException(503, "the model is not available yet; retry later") from e

    async def call_model(image: Any, image_id: str) -> tuple[Any, int]:
        response = ingress.model.explain.remote(image, image_id)
        try:
            return await asyncio.wait_for(response, timeout=config.request_timeout_s)
        except asyncio.TimeoutError as e:
            response.cancel()
            raise HTTPException(504, f"the explanation took longer than {config.request_timeout_s:g} s; "
                                     "retry later or use /v1/shards for bulk work") from e
        except BackPressureError as e:
            raise HTTPException(503, "the service is overloaded (too many queued explanations); retry later",
                                headers={"Retry-After": "5"}) from e
        except (RayActorError, DeploymentUnavailableError) as e:
            raise HTTPException(503, "the model replica is unavailable; retry later") from e

    async def read_image(request: Request, query_id: str | None) -> tuple[bytes, str]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=4)
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise HTTPException(422, "multipart body needs a 'file' field holding the image")
            form_id = form.get("image_id")
            valid_id = isinstance(form_id, str) and re.match(schemas.IMAGE_ID_PATTERN, form_id)
            if form_id is not None and not valid_id:
                raise HTTPException(422, f"image_id must match {schemas.IMAGE_ID_PATTERN}")
            return await upload.read(), form_id or query_id or default_image_id(upload.filename)
        if ctype == "application/json":
            try:
                body = schemas.ExplainJSONRequest.model_validate_json(await request.body())
            except ValidationError as e:
                raise HTTPException(422, describe(e.errors())) from e
            try:
                data = decode_base64(body.image_base64)
            except ValueError as e:
                raise HTTPException(422, str(e)) from e
            return data, body.image_id or query_id or default_image_id(None)
        if ctype in RAW_IMAGE_TYPES:
            return await request.body(), query_id or default_image_id(None)
        raise HTTPException(415, f"unsupported content type {ctype or '(none)'!r}: send multipart/form-data (field "
                                 "'file'), application/json ({'image_base64': ...}) or image/png|image/jpeg bytes")

    @api.get("/", include_in_schema=False)
    async def viewer() -> HTMLResponse:
        return HTMLResponse(viewer_page)

    @api.get("/v1/health", response_model=schemas.Health, responses=errors(503), tags=["service"])
    async def health() -> dict[str, Any]:
        """The service answers and its model is loaded."""
        info = await model_info()
        return {"status": "ok", "bundle_id": info["bundle_id"]}

    @api.get("/v1/model", response_model=schemas.ModelInfo, responses=errors(401, 503), tags=["service"],
             dependencies=[bearer])
    async def model() -> dict[str, Any]:
        """Bundle, classifier spec, settings, and the batch sizes the answering replica has run."""
        info = await model_info()
        try:
            batching = await asyncio.wait_for(ingress.model.batching.remote(), timeout=config.request_timeout_s)
        except (BackPressureError, RayActorError, DeploymentUnavailableError, asyncio.TimeoutError) as e:
            raise HTTPException(503, "the model is busy or not available; retry later") from e
        return {**info, "settings": config.public(), "batching": batching}

    @api.post("/v1/explain", response_model=schemas.ExplainResponse, openapi_extra=EXPLAIN_BODY,
              responses=errors(400, 401, 413, 415, 422, 503, 504), tags=["explain"], dependencies=[bearer])
    async def explain(
        request: Request,
        pictures: schemas.PictureMode | None = Query(None, description="inline (default), stored (URIs) or none"),
        image_id: str | None = Query(None, pattern=schemas.IMAGE_ID_PATTERN, description="id for a raw image body"),
    ) -> dict[str, Any]:
        """Explain one image: probabilities, traversal, quality metrics and pictures."""
        started = time.perf_counter()
        mode = pictures or ("stored" if config.pictures_prefix else "inline")
        if mode == "stored" and not config.pictures_prefix:
            raise HTTPException(422, "pictures=stored needs the service to run with a pictures_prefix")
        data, image_id = await read_image(request, image_id)
        if not data:
            raise HTTPException(422, "no image data (0 bytes)")
        info = await model_info()
        try:
            image = await asyncio.to_thread(decode_upload, data, size=info["image_size"], channels=info["channels"],
                                            max_pixels=config.max_image_pixels)  # [C, S, S]
        except ImageTooLarge as e:
            raise HTTPException(413, str(e)) from e
        except ImageDecodeError as e:
            raise HTTPException(415, f"not a usable PNG/JPEG image: {e}") from e
        expl, batch_size = await call_model(image, image_id)
        prefix = None
        if mode == "stored":
            prefix = storage.join(config.pictures_prefix, f"{time.strftime('%Y%m%d')}-{uuid.uuid4().hex[:16]}")
        body = await asyncio.to_thread(answer, expl, batch_size=batch_size, mode=mode, prefix=prefix,
                                       settings=config.storage)
        return {**body, "bundle_id": info["bundle_id"], "seconds": time.perf_counter() - started}

    def job_body(record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "status_url": f"/v1/jobs/{record['job_id']}"}

    @api.post("/v1/shards", status_code=202, response_model=schemas.JobStatus,
              responses=errors(400, 401, 403, 413, 422, 503), tags=["jobs"], dependencies=[bearer])
    async def shards(job: schemas.ShardJobRequest) -> JSONResponse:
        """Start a shard job (both URIs must lie under an allowed prefix); poll its status_url."""
        try:
            input_uri, output_uri = ingress.policy.check_job(job.input_uri, job.output_uri)
        except InvalidUri as e:
            raise HTTPException(422, str(e)) from e
        except UriNotAllowed as e:
            raise HTTPException(403, str(e)) from e
        record = job_body(await asyncio.wait_for(ingress.jobs.submit.remote(input_uri, output_uri), timeout=60))
        return JSONResponse(schemas.JobStatus(**record).model_dump(), status_code=202,
                            headers={"Location": record["status_url"]})

    @api.get("/v1/jobs/{job_id}", response_model=schemas.JobStatus, responses=errors(401, 404, 503), tags=["jobs"],
             dependencies=[bearer])
    async def job_status(job_id: str) -> dict[str, Any]:
        """State (queued, running, done, failed), row counts and result URIs of a shard job."""
        record = None
        if JOB_ID.match(job_id):
            record = await asyncio.wait_for(ingress.jobs.status.remote(job_id), timeout=60)
        if record is None:
            raise HTTPException(404, f"no job {job_id!r} (job ids are 32 hex characters from POST /v1/shards)")
        return job_body(record)

    return api


__all__ = ["API_DESCRIPTION", "Guard", "make_api"]
