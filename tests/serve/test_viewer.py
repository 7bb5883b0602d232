"""The web viewer in headless Chromium (Playwright): upload, wait for the explanation, move the slider.

Chromium comes from Debian (`apt-get install chromium`, installed here when missing and running
as root); Playwright is used as a Python driver only (`playwright install` is never run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import Service, png

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = os.environ.get("RAYGAN_VIEWER_SCREENSHOT")  # set to a path to save the page after the explanation


def ensure_chromium() -> str | None:
    """Path of Debian's chromium, installing it when missing (root only); None when unavailable."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            print(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
            return None
    return CHROMIUM if Path(CHROMIUM).exists() else None


@pytest.fixture(scope="module")
def browser() -> object:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the Python package) is not installed")
    executable = ensure_chromium()
    if executable is None:
        pytest.skip("Debian's chromium is not installed and could not be installed (needs root and apt)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_viewer_explains_an_upload_and_the_slider_walks_the_traversal(service: Service, browser: object,
                                                                       tmp_path: Path) -> None:
    image = tmp_path / "chest.png"
    image.write_bytes(png((96, 80), seed=7))
    page = browser.new_page(viewport={"width": 1200, "height": 1500})  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(service.url + "/")
    # The service runs with a token: the viewer asks for it after /v1/model answers 401.
    page.wait_for_selector("#token-box", state="visible", timeout=30_000)
    page.fill("#token", service.token or "")
    page.click("#token-save")
    page.wait_for_function("document.getElementById('side').textContent === '32'", timeout=30_000)

    with page.expect_response(lambda r: "/v1/explain" in r.url, timeout=120_000) as answer:
        page.set_input_files("#file", str(image))
    body = answer.value.json()
    assert answer.value.status == 200, body
    page.wait_for_selector("#result.ready", timeout=30_000)
    probs, alphas = body["traversal"]["probs"], body["traversal"]["alphas"]
    last = len(probs) - 1

    def shown() -> tuple[str, str, str, str]:
        return (page.inner_text("#frame-p"), page.inner_text("#frame-alpha"),
                page.get_attribute("#marker", "cx") or "", page.get_attribute("#frame-img", "src") or "")

    p_end, alpha_end, cx_end, src_end = shown()
    assert p_end == f"p = {probs[last]:.2f}" and alpha_end == "α = 1"
    page.fill("#slider", "0")  # dispatches the input event, as dragging does
    p_start, alpha_start, cx_start, src_start = shown()
    assert p_start == f"p = {probs[0]:.2f}" and alpha_start == f"α = {alphas[0]:g}"
    assert float(cx_start) < float(cx_end) and src_start != src_end  # the marker and the frame moved
    page.fill("#slider", "2")
    assert page.inner_text("#frame-p") == f"p = {probs[2]:.2f}"
    for name in ("input", "reconstruction", "counterfactual", "diff", "swap", "gradcam", "ig"):
        width = page.eval_on_selector(f"#img-{name}", "img => img.naturalWidth")
        assert width == 32, name  # every picture decoded
    assert page.inner_text("#p-input") == f"p = {body['p_input']:.2f}"
    # The quality gate: this tiny bundle never measured its class consistency, so every answer warns.
    assert page.inner_text("#warning") == f"Warning: {body['warning']}" and body["warning"]
    assert "explains 1 · consistency n/a" in page.inner_text("#model")
    assert page.locator("#curve polyline").count() == 1 and page.locator("#curve circle.dot").count() == len(probs)
    # The alpha = 1 end is labelled for what it is: the reconstruction, or for a fallback traversal
    # (the mean positive direction) not. The page's own show() draws the answer both ways.
    for fallback in (body["used_fallback"], not body["used_fallback"]):
        page.evaluate("(b) => show(b)", {**body, "used_fallback": fallback})
        end, chart = page.inner_text("#slider-end"), page.text_content("#curve")  # an SVG: no inner_text
        if fallback:
            assert "mean positive direction" in end and "not the reconstruction" in chart, (end, chart)
            assert "not the reconstruction" in page.inner_text("#footer")
        else:
            assert end == "reconstruction" and "1 = reconstruction" in chart, (end, chart)
    page.evaluate("(b) => show(b)", body)
    page.fill("#slider", str(last))
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)
    assert not errors, errors
    page.close()


def test_viewer_shows_a_clear_error_for_a_non_image(service: Service, browser: object, tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not a PNG")
    page = browser.new_page()  # type: ignore[attr-defined]
    page.add_init_script(f"sessionStorage.setItem('raygan-token', {service.token!r})")
    page.goto(service.url + "/")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#status.error", timeout=60_000)
    assert page.inner_text("#status").startswith("Error 415: not a usable PNG/JPEG image")
    page.close()
