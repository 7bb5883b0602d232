"""Schema-driven fuzzing: requests generated from the service's own OpenAPI document never get a 5xx,
every status answered is one the document lists for that operation, and no error body leaks internals."""

from __future__ import annotations

from collections import Counter

import pytest
import requests
from conftest import Service

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")

EXAMPLES = 100  # bounded: the whole run takes seconds (no request reaches the model: random bytes are no image)


def test_generated_requests_never_get_a_server_error(service: Service) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode

    from test_service import LEAKS

    spec = requests.get(service.url + "/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_url(service.url + "/openapi.json", timeout=30)
    strategy = schema.as_strategy(generation_mode=GenerationMode.POSITIVE) | schema.as_strategy(
        generation_mode=GenerationMode.NEGATIVE)
    seen: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []
    session = requests.Session()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        # The token is always right here (the 401 path has its own test), so the fuzz reaches the handlers.
        case.headers = {**(case.headers or {}), **service.auth()}
        response = case.call(base_url=service.url, session=session, timeout=60)
        seen[(case.operation.label, response.status_code)] += 1
        documented = spec["paths"][case.operation.path][case.operation.method.lower()]["responses"]
        if response.status_code >= 500:
            failures.append(f"{case.operation.label} -> {response.status_code}: {response.text[:300]}")
        if str(response.status_code) not in documented:
            failures.append(f"{case.operation.label} -> {response.status_code} is not in its OpenAPI responses "
                            f"{sorted(documented)}: {response.text[:200]}")
        if response.status_code >= 400 and LEAKS.search(response.text):
            failures.append(f"{case.operation.label} -> {response.status_code} leaks: {response.text[:300]}")

    run()
    assert not failures, failures
    assert sum(seen.values()) >= EXAMPLES // 2, seen
    assert len({label for label, _ in seen}) >= 4, seen  # every operation was exercised
    assert requests.get(service.url + "/v1/health", timeout=30).status_code == 200
