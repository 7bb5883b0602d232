"""The explanation service over real HTTP on a local Ray Serve: explain, batching, limits, auth, shard jobs."""

from __future__ import annotations

import base64
import io
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import requests
from conftest import SLOW_TOKEN_ENV, Service, make_tiny_bundle, png, service_args
from PIL import Image
from service_helpers import wait_healthy

from raygan import storage
from raygan.data.phantoms import PhantomConfig, write_phantoms
from raygan.data.shards import read_table, write_shards

FRAMES = 5  # tiny preset: frames=4 after alpha = 0


def decode_png(b64: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    return img


def check_explanation(body: dict[str, Any], *, image_id: str | None = None) -> None:
    if image_id is not None:
        assert body["image_id"] == image_id
    assert len(body["bundle_id"]) == 16
    for key in ("p_input", "p_reconstruction", "p_counterfactual"):
        assert 0.0 <= body[key] <= 1.0
    alphas, probs = body["traversal"]["alphas"], body["traversal"]["probs"]
    assert len(alphas) == len(probs) == FRAMES and alphas[0] == 0.0 and alphas[-1] == pytest.approx(1.0)
    assert probs[0] == pytest.approx(body["p_counterfactual"], abs=1e-4)
    assert probs[-1] == pytest.approx(body["p_reconstruction"], abs=1e-4)
    assert set(body["metrics"]) == {"monotone", "spearman", "crossing_alpha", "recon_mse", "recon_ssim"}
    assert body["batch_size"] >= 1 and body["seconds"] > 0


def poll_job(service: Service, job_id: str, *, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = service.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        if r.json()["state"] in ("done", "failed"):
            return r.json()
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s")


def wait_abandoned(app_url: str, headers: dict[str, str], *, seconds: float = 30) -> dict[str, Any]:
    """The app's batching stats once its Explainer has stopped a batch nobody waits for (or after `seconds`)."""
    deadline, batching = time.monotonic() + seconds, {}
    while time.monotonic() < deadline:
        batching = requests.get(app_url + "/v1/model", headers=headers, timeout=30).json()["batching"]
        if batching["abandoned"] >= 1:
            break
        time.sleep(0.5)
    return batching


def test_explain_multipart_upload_of_an_odd_sized_colour_png(service: Service) -> None:
    r = service.post("/v1/explain?pictures=inline", files={"file": ("chest 7.png", png((45, 31), mode="RGB"))})
    assert r.status_code == 200, r.text
    body = r.json()
    check_explanation(body, image_id="chest_7")
    assert body["target_class"] == "1" and body["maps_skipped"] == {}
    assert body["warning"] == service.get("/v1/model").json()["quality"]["warning"]  # every answer says it
    pictures = body["pictures"]
    assert pictures["mode"] == "inline" and len(pictures["traversal_frames"]) == FRAMES
    for name in ("input", "reconstruction", "counterfactual", "diff", "swap", "gradcam", "ig", "figure"):
        assert decode_png(pictures[name]).size[0] > 0, name
    assert decode_png(pictures["input"]).size == (32, 32)  # center-cropped and resized to the model's side


def test_explain_json_base64_jpeg_and_raw_png(service: Service) -> None:
    buf = io.BytesIO()
    Image.open(io.BytesIO(png((64, 64), mode="RGB"))).save(buf, format="JPEG")
    r = service.post("/v1/explain?pictures=none",
                     json={"image_base64": base64.b64encode(buf.getvalue()).decode(), "image_id": "case-1.jpg"})
    assert r.status_code == 200, r.text
    check_explanation(r.json(), image_id="case-1.jpg")
    assert r.json()["pictures"] == {"mode": "none", "input": None, "figure": None, "reconstruction": None,
                                    "counterfactual": None, "traversal_frames": [], "diff": None, "swap": None,
                                    "gradcam": None, "ig": None}
    r = service.post("/v1/explain?image_id=raw1&pictures=none", data=png(), headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    check_explanation(r.json(), image_id="raw1")


def test_default_pictures_are_stored_under_the_pictures_prefix(service: Service) -> None:
    r = service.post("/v1/explain", files={"file": ("a.png", png(seed=3))})
    assert r.status_code == 200, r.text
    pictures = r.json()["pictures"]
    assert pictures["mode"] == "stored"
    assert pictures["figure"].startswith(f"{service.bucket}/pictures/") and pictures["figure"].endswith("/figure.png")
    settings = storage.StorageSettings(endpoint_url=service.s3_endpoint)
    assert storage.read_bytes(pictures["traversal_frames"][-1], settings=settings).startswith(b"\x89PNG")


def test_concurrent_requests_are_inverted_in_batches(service: Service) -> None:
    images = [png(seed=10 + i) for i in range(8)]

    def one(i: int) -> requests.Response:
        return service.post("/v1/explain?pictures=none", files={"file": (f"c{i}.png", images[i])})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(one, range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    sizes = [r.json()["batch_size"] for r in responses]
    assert max(sizes) > 1, sizes
    batching = service.get("/v1/model").json()["batching"]
    assert batching["max_seen"] > 1 and batching["requests"] >= 8, batching


def test_model_info_and_openapi(service: Service) -> None:
    info = service.get("/v1/model").json()
    assert info["image_size"] == 32 and info["channels"] == 1 and info["bundle_uri"] == service.bundle_uri
    assert info["classifier"]["factory"].endswith(":small_cnn")
    # The quality gate and the target class (the tiny bundle never measured its consistency).
    assert info["target_class"] == "1" and info["classes"] == [] and info["maps_skipped"] == {}
    assert info["quality"]["class_consistency"] is None and info["quality"]["passed"] is False
    assert info["quality"]["threshold"] == 0.9 and "no generator class consistency" in info["quality"]["warning"]
    assert info["settings"]["authentication"] == "bearer token" and "test-token" not in str(info)
    spec = requests.get(service.url + "/openapi.json", timeout=30).json()
    assert {"/v1/explain", "/v1/shards", "/v1/jobs/{job_id}", "/v1/health", "/v1/model"} <= set(spec["paths"])
    content = spec["paths"]["/v1/explain"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json", "image/png"} <= set(content)
    assert "center-cropped" in spec["info"]["description"]


def test_docs_work_offline(service: Service) -> None:
    """Swagger UI comes from this service, not from a CDN (no other host is named in the page)."""
    import re

    page = requests.get(service.url + "/docs", timeout=30)
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    for asset in assets:
        r = requests.get(service.url + asset, timeout=30)
        assert r.status_code == 200 and len(r.content) > 1000, asset
    assert any(len(requests.get(service.url + a, timeout=30).content) > 500_000 for a in assets)  # the UI bundle


BAD_REQUESTS: list[tuple[str, dict[str, Any], int]] = [
    ("empty body", {"data": b""}, 415),
    ("empty image", {"data": b"", "headers": {"Content-Type": "image/png"}}, 422),
    ("garbage bytes", {"data": b"\x00\x01garbage" * 50, "headers": {"Content-Type": "image/png"}}, 415),
    ("a text file", {"files": {"file": ("notes.txt", b"hello, this is not an image\n", "text/plain")}}, 415),
    ("truncated png", {"files": {"file": ("t.png", png()[:60])}}, 415),
    ("huge body", {"data": b"\x89PNG" + b"0" * (3 * 2**20), "headers": {"Content-Type": "image/png"}}, 413),
    ("huge chunked body", {"data": None, "headers": {"Content-Type": "image/png"}}, 413),
    ("pixel bomb", {"data": None, "headers": {"Content-Type": "image/png"}}, 413),
    ("wrong content type", {"data": b"<x/>", "headers": {"Content-Type": "application/xml"}}, 415),
    ("missing file field", {"files": {"other": ("a.png", b"x")}}, 422),
    ("missing json field", {"json": {"image_id": "a"}}, 422),
    ("extra json field", {"json": {"image_base64": "aGk=", "oops": 1}}, 422),
    ("json not an object", {"json": [1, 2]}, 422),
    ("malformed json", {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 422),
    ("bad base64", {"json": {"image_base64": "***not base64***"}}, 422),
    ("base64 of text", {"json": {"image_base64": base64.b64encode(b"just text").decode()}}, 415),
    ("bad image_id", {"json": {"image_base64": "aGk=", "image_id": "../../etc/passwd"}}, 422),
    ("bad query", {"params": {"pictures": "everything"}, "files": {"file": ("a.png", b"x")}}, 422),
    ("bad content-length", {"data": b"abc", "headers": {"Content-Type": "image/png", "Content-Length": "x"}}, 400),
    ("gif", {"files": {"file": ("a.gif", None)}}, 415),
    ("tiff", {"files": {"file": ("a.tif", None)}}, 415),
    ("webp", {"files": {"file": ("a.webp", None)}}, 415),
    ("bmp", {"files": {"file": ("a.bmp", None)}}, 415),
    ("nan float tiff", {"files": {"file": ("nan.tif", None)}}, 415),
    ("decompression bomb", {"data": None, "headers": {"Content-Type": "image/png"}}, 413),
]
OTHER_FORMATS = {"gif": "GIF", "tiff": "TIFF", "webp": "WEBP", "bmp": "BMP"}
LEAKS = re.compile(r"Traceback|File \"| at 0x[0-9a-f]+|<[a-zA-Z_.]+ object|/tmp/|/work/|/root/|site-packages")


def encoded(fmt: str, array: np.ndarray | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40), 100, np.uint8) if array is None else array).save(buf, format=fmt)
    return buf.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A PNG header claiming width x height pixels with no pixel data: a decompression bomb's first bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(
        b"IEND", b"")


def assert_clean(body: dict[str, Any]) -> None:
    """An error body says what is wrong in words: no traceback, no server path, no object repr."""
    assert isinstance(body["detail"], str) and body["detail"], body
    assert not LEAKS.search(body["detail"]), body["detail"]


@pytest.mark.parametrize("name,kwargs,status", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_gets_a_clear_4xx(service: Service, name: str, kwargs: dict[str, Any], status: int) -> None:
    kwargs = dict(kwargs)
    if name == "pixel bomb":  # 6000 x 6000 of zeros: a few KiB of PNG, 36 MP of pixels
        buf = io.BytesIO()
        Image.fromarray(np.zeros((6000, 6000), np.uint8)).save(buf, format="PNG")
        kwargs["data"] = buf.getvalue()
    if name in OTHER_FORMATS:
        kwargs["files"] = {"file": (kwargs["files"]["file"][0], encoded(OTHER_FORMATS[name]))}
    if name == "nan float tiff":
        kwargs["files"] = {"file": ("nan.tif", encoded("TIFF", np.full((40, 40), np.nan, np.float32)))}
    if name == "decompression bomb":  # 20000 x 20000: over Pillow's 179 MP bomb limit, refused from the header
        kwargs["data"] = bomb_png(20_000, 20_000)
    if name == "huge chunked body":  # a generator body: no Content-Length, so the limit applies while streaming
        kwargs["data"] = (b"0" * 2**20 for _ in range(3))
    if name == "bad content-length":
        prepared = requests.Request("POST", service.url + "/v1/explain", data=kwargs["data"],
                                    headers={**service.auth(), **kwargs["headers"]}).prepare()
        prepared.headers["Content-Length"] = "x"
        r = requests.Session().send(prepared, timeout=60)
    else:
        r = service.post("/v1/explain", **kwargs)
    assert r.status_code == status, (name, r.status_code, r.text)
    if name != "bad content-length":  # that one the HTTP server itself refuses, before the app
        assert_clean(r.json())
    if name in OTHER_FORMATS:
        assert f"a {OTHER_FORMATS[name]} image" in r.json()["detail"]
    if name == "nan float tiff":
        assert "TIFF" in r.json()["detail"]  # refused as a format before any pixel is decoded
    if name in ("decompression bomb", "pixel bomb"):
        assert "pixels" in r.json()["detail"]


def test_the_service_stays_healthy_after_bad_input(service: Service) -> None:
    for _, kwargs, _ in BAD_REQUESTS[:5]:
        service.post("/v1/explain", **kwargs)
    assert requests.get(service.url + "/v1/health", timeout=30).status_code == 200
    r = service.post("/v1/explain?pictures=none", files={"file": ("ok.png", png(seed=5))})
    assert r.status_code == 200, r.text


def test_token_is_required_on_v1_but_not_on_health_or_viewer(service: Service) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="}):
        r = requests.post(service.url + "/v1/explain", files={"file": ("a.png", png())}, headers=headers, timeout=30)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer", r.text
        assert requests.get(service.url + "/v1/model", headers=headers, timeout=30).status_code == 401
        assert requests.post(service.url + "/v1/shards", json={}, headers=headers, timeout=30).status_code == 401
        assert requests.get(service.url + "/v1/jobs/" + "0" * 32, headers=headers, timeout=30).status_code == 401
    assert requests.get(service.url + "/v1/health", timeout=30).status_code == 200
    assert requests.get(service.url + "/", timeout=30).status_code == 200


def corrupt_shards(uri: str, scratch: Path, *, n: int, settings: storage.StorageSettings | None = None) -> None:
    """`n` phantom rows (32 px) plus one row whose image is garbage, as shards under `uri`."""
    local = scratch / f"phantoms-{n}"
    if not local.exists():
        write_phantoms(PhantomConfig(n=n, size=32, seed=0), str(local))
    table = read_table(str(local))
    bad = pa.Table.from_pylist([{**table.slice(0, 1).to_pylist()[0], "image_id": "corrupt", "image": b"\x89PNGjunk"}],
                               schema=table.schema)
    write_shards(pa.concat_tables([table, bad]), uri, rows_per_shard=4, settings=settings)


def test_shard_job_with_a_corrupt_row_keeps_every_row(service: Service) -> None:
    src, out = service.local_root / "job1" / "in", service.local_root / "job1" / "out"
    corrupt_shards(str(src), service.local_root.parent, n=6)
    r = service.post("/v1/shards", json={"input_uri": str(src), "output_uri": str(out)})
    assert r.status_code == 202, r.text
    assert r.json()["state"] in ("queued", "running") and r.headers["Location"] == r.json()["status_url"]
    job = poll_job(service, r.json()["job_id"])
    assert job["state"] == "done", job
    assert job["counts"] == {"rows_in": 7, "ok": 6, "error": 1, "skipped": 0}
    results = pq.read_table(job["results_uri"])
    assert results.num_rows == 7 and sorted(results["status"].to_pylist()).count("error") == 1
    error = results.filter(pc.equal(results["image_id"], "corrupt")).to_pylist()[0]
    assert error["status"] == "error" and "cannot decode" in error["error"]


def test_shard_job_on_s3(service: Service) -> None:
    settings = storage.StorageSettings(endpoint_url=service.s3_endpoint)
    src, out = f"{service.bucket}/shards/in", f"{service.bucket}/shards/out"
    corrupt_shards(src, service.local_root.parent, n=4, settings=settings)
    r = service.post("/v1/shards", json={"input_uri": f"{service.bucket}/shards/x/../in", "output_uri": out + "/"})
    assert r.status_code == 202, r.text
    assert (r.json()["input_uri"], r.json()["output_uri"]) == (src, out)  # normalised before the check and the job
    job = poll_job(service, r.json()["job_id"])
    assert job["state"] == "done" and job["counts"]["rows_in"] == 5 and job["counts"]["error"] == 1, job
    assert job["results_uri"] == f"{out}/results"
    files = storage.list_files(job["results_uri"], suffix=".parquet", settings=settings)
    fs, path = storage.filesystem(files[0], settings)
    assert sum(pq.read_table(storage.filesystem(f, settings)[1], filesystem=fs).num_rows for f in files) == 5
    from raygan.bulk import UNIT_FILE  # the job is `raygan explain-bulk`'s: its work units' files, its run record

    assert all(UNIT_FILE.match(f.rsplit("/", 1)[-1]) for f in files), files
    assert storage.list_files(f"{out}/runs", suffix=".json", settings=settings)


def test_shard_jobs_survive_a_restart_of_the_service(service: Service) -> None:
    """Job records on S3: the app is deleted while its job runs (its replicas die) and deployed again; the new
    runner answers for the job and finishes it, each row once (the rows done before are skipped, not redone)."""
    from ray import serve

    from raygan.service.app import build_app

    settings = storage.StorageSettings(endpoint_url=service.s3_endpoint)
    bundle = make_tiny_bundle(service.local_root.parent / "restart", steps=600)  # about 2 s a row on one core
    src, out = f"{service.bucket}/restart/in", f"{service.bucket}/restart/out"
    corrupt_shards(src, service.local_root.parent, n=4, settings=settings)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "RAYGAN_S3_ENDPOINT_URL": service.s3_endpoint, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    args = service_args(bundle, allowed_prefixes=[service.bucket], jobs_uri=f"{service.bucket}/job-records",
                        job_batch_size=1, job_rows_per_file=1, storage_endpoint_url=service.s3_endpoint, env_vars=env, num_cpus=0.5,
                        token_env=SLOW_TOKEN_ENV)
    headers = {"Authorization": "Bearer slow-token"}
    base = service.url + "/restart"

    def deploy() -> None:
        serve.run(build_app(args), name="restart", route_prefix="/restart", blocking=False)
        wait_healthy(base)

    try:
        deploy()
        r = requests.post(base + "/v1/shards", json={"input_uri": src, "output_uri": out}, headers=headers, timeout=60)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        deadline = time.monotonic() + 120  # the app goes once the job has written its first results
        while not storage.list_files(f"{out}/results", suffix=".parquet", settings=settings):
            assert time.monotonic() < deadline, requests.get(f"{base}/v1/jobs/{job_id}", headers=headers, timeout=30).text
            time.sleep(0.2)
        assert requests.get(f"{base}/v1/jobs/{job_id}", headers=headers, timeout=30).json()["state"] == "running"
        serve.delete("restart")
        deploy()
        deadline, job = time.monotonic() + 180, {}
        while time.monotonic() < deadline:
            job = requests.get(f"{base}/v1/jobs/{job_id}", headers=headers, timeout=30).json()
            if job.get("state") in ("done", "failed"):
                break
            time.sleep(0.5)
        assert job.get("state") == "done" and job["resumed"] == 1, job
        assert job["counts"]["rows_in"] == 5 and job["counts"]["skipped"] >= 1, job
        files = storage.list_files(f"{out}/results", suffix=".parquet", settings=settings)
        fs = storage.filesystem(files[0], settings)[0]
        ids = [i for f in files for i in pq.read_table(storage.filesystem(f, settings)[1], filesystem=fs)["image_id"]
               .to_pylist()]
        assert sorted(ids) == sorted(set(ids)) and len(ids) == 5  # every row once: none lost, none twice
    finally:
        serve.delete("restart")


def test_a_failing_job_is_reported(service: Service) -> None:
    r = service.post("/v1/shards", json={"input_uri": str(service.local_root / "nothing-here"),
                                         "output_uri": str(service.local_root / "nothing-out")})
    assert r.status_code == 202, r.text
    job = poll_job(service, r.json()["job_id"])
    assert job["state"] == "failed" and job["message"].startswith("FileNotFoundError: no .parquet files at "), job
    assert job["message"].endswith("nothing-here"), job  # it names what is missing


@pytest.mark.parametrize("input_uri,output_uri,status", [
    ("/etc", "{root}/out", 403),
    ("{root}/../../etc", "{root}/out", 403),
    ("{root}/in", "s3://some-other-bucket/out", 403),
    ("{root}/in", "{root}/../outside", 403),
    ("{bucket}-evil/in", "{root}/out", 403),
    ("relative/in", "{root}/out", 422),
    ("http://example.invalid/in", "{root}/out", 422),
    ("{root}/in", "{root}/in/out", 422),
])
def test_shard_uris_outside_the_allowed_prefixes_are_refused(service: Service, input_uri: str, output_uri: str,
                                                             status: int) -> None:
    fill = {"root": str(service.local_root), "bucket": service.bucket}
    job = {"input_uri": input_uri.format(**fill), "output_uri": output_uri.format(**fill)}
    r = service.post("/v1/shards", json=job)
    assert r.status_code == status, r.text


def test_unknown_jobs_are_404(service: Service) -> None:
    for job_id in ("0" * 32, "not-a-job", "..%2F..%2Fetc"):
        assert service.get(f"/v1/jobs/{job_id}").status_code == 404


def test_slow_explanations_answer_504_and_overload_503(service: Service) -> None:
    """A second app under /slow: a long inversion, a 1 s timeout and a queue of one."""
    from ray import serve

    from raygan.service.app import build_app

    slow_bundle = make_tiny_bundle(service.local_root.parent / "slow", steps=20000)
    args = service_args(slow_bundle, request_timeout_s=1.0, max_batch_size=1, target_ongoing_requests=1,
                        max_queued_requests=1, num_cpus=0.5, token_env=SLOW_TOKEN_ENV)
    serve.run(build_app(args), name="slow", route_prefix="/slow", blocking=False)
    headers = {"Authorization": "Bearer slow-token"}
    try:
        assert requests.post(service.url + "/slow/v1/explain", files={"file": ("a.png", png())},
                             timeout=30).status_code == 401  # the token check holds under a route prefix

        def one(i: int) -> tuple[int, float, dict[str, Any]]:
            start = time.monotonic()
            r = requests.post(service.url + "/slow/v1/explain?pictures=none", headers=headers, timeout=60,
                              files={"file": (f"s{i}.png", png(seed=i))})
            assert r.headers.get("x-request-id"), r.headers
            return r.status_code, time.monotonic() - start, r.json()

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(8)))
        codes = sorted(c for c, _, _ in results)
        assert set(codes) <= {503, 504} and 503 in codes and 504 in codes, results
        assert max(t for _, t, _ in results) < 30  # nothing hangs
        for _, _, body in results:  # 5xx: a generic message and the request id the log files it under
            assert_clean(body)
            assert body["request_id"] and body["request_id"] in body["detail"]
        # The timed-out inversion (20,000 steps) does not go on computing for nobody: its batch stops.
        batching = wait_abandoned(service.url + "/slow", headers)
        assert batching["abandoned"] >= 1, batching
    finally:
        serve.delete("slow")
    assert requests.get(service.url + "/v1/health", timeout=30).status_code == 200


def test_a_client_that_hangs_up_stops_the_work_it_started(service: Service) -> None:
    """The path a proxy timeout (408) takes too: the HTTP request is cancelled above the ingress, which cancels
    its call to the Explainer, whose batch then stops (the app's own timeout, 60 s here, never fires)."""
    from ray import serve

    from raygan.service.app import build_app

    bundle = make_tiny_bundle(service.local_root.parent / "hangup", steps=20000)
    args = service_args(bundle, request_timeout_s=60.0, max_batch_size=1, num_cpus=0.5, token_env=SLOW_TOKEN_ENV)
    serve.run(build_app(args), name="hangup", route_prefix="/hangup", blocking=False)
    headers = {"Authorization": "Bearer slow-token"}
    try:
        wait_healthy(service.url + "/hangup")
        with pytest.raises(requests.ReadTimeout):  # the client gives up after 2 s and closes the connection
            requests.post(service.url + "/hangup/v1/explain?pictures=none", headers=headers, timeout=2,
                          files={"file": ("h.png", png(seed=3))})
        batching = wait_abandoned(service.url + "/hangup", headers)
        assert batching["batches"] == 1 and batching["abandoned"] == 1, batching
    finally:
        serve.delete("hangup")


def test_an_internal_fault_answers_500_with_a_request_id_and_logs_the_detail(service: Service) -> None:
    """Pictures stored under a prefix that cannot be written (a regular file stands where its folder
    should be): a real storage fault. The client gets a generic 500; the replica log has the detail."""
    from ray import serve

    from raygan.service.app import build_app

    blocker = service.local_root.parent / "not-a-folder"
    blocker.write_text("a file where the pictures folder should be")
    args = service_args(service.bundle_uri, pictures_prefix=str(blocker / "pictures"), num_cpus=0.5,
                        attributions=False)
    serve.run(build_app(args), name="broken", route_prefix="/broken", blocking=False)
    try:
        r = requests.post(service.url + "/broken/v1/explain?pictures=stored", files={"file": ("a.png", png())},
                          timeout=120)
        assert r.status_code == 500, r.text
        body = r.json()
        assert_clean(body)
        assert body["detail"].startswith("internal error") and "not-a-folder" not in body["detail"]
        assert body["request_id"] == r.headers["x-request-id"]
        logs = Path(ray_logs_dir()) / "serve"
        lines = [line for f in logs.glob("replica_broken_Ingress_*.log") for line in f.read_text().splitlines()
                 if body["request_id"] in line]
        assert any("failed (request id" in line for line in lines), lines  # the detail is in the server log
    finally:
        serve.delete("broken")


def ray_logs_dir() -> str:
    import ray

    return ray._private.worker._global_node.get_logs_dir_path()  # this session's Ray log directory
