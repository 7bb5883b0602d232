"""Helpers for tests that talk to a running explanation service over HTTP."""

from __future__ import annotations

import time

import requests


def wait_healthy(url: str, *, timeout: float = 120.0) -> None:
    """Poll `<url>/v1/health` until it answers 200; RuntimeError with the last answer after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(url + "/v1/health", timeout=10)
            if last.status_code == 200:
                return
        except requests.RequestException as e:
            last = e
        time.sleep(0.5)
    raise RuntimeError(f"service at {url} not healthy after {timeout} s: {last}")
