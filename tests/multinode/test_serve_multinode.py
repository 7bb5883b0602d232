"""The explanation service on the four-node cluster: two Explainer replicas on two worker nodes, one of
those nodes removed while clients keep sending. Every request gets an answer (200, or 503 at worst) and
none hangs; once a replacement node joins, Serve runs two replicas again without help.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from cluster_helpers import alive_actor_nodes, tiny_bundle_on_s3
from PIL import Image
from service_helpers import wait_healthy

pytestmark = pytest.mark.multinode

ROOT = Path(__file__).resolve().parents[2]
ANSWER_S = 60  # a request must be answered within this (the app's own timeout is 20 s)


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32), dtype=np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def replica_nodes() -> list[str]:
    """Node ids of the live Explainer replicas, one per replica."""
    return alive_actor_nodes(lambda name: name.endswith(":Explainer"))


def running_replicas() -> int:
    from ray import serve

    app = serve.status().applications.get("raygan")
    if app is None:
        return 0
    deployment = app.deployments["Explainer"]
    return deployment.replica_states.get("RUNNING", 0) if deployment.status == "HEALTHY" else 0


@pytest.mark.nodeloss  # also alone: `make test-node-loss`
@pytest.mark.timeout(600)
def test_a_node_removed_under_the_service_no_request_hangs_and_two_replicas_return(multinode, s3_inputs) -> None:
    from ray import serve

    from raygan.service.app import build_app

    bundle = tiny_bundle_on_s3(s3_inputs, "serve-bundle", steps=30)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                      "RAYGAN_S3_ENDPOINT_URL")}
    args = {"bundle_uri": bundle, "num_cpus": 1, "min_replicas": 2, "max_replicas": 2, "max_batch_size": 1,
            "request_timeout_s": 20, "attributions": False, "storage_endpoint_url": env["RAYGAN_S3_ENDPOINT_URL"],
            "env_vars": {**env, "PYTHONPATH": str(ROOT)}}
    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
    url = f"http://127.0.0.1:{port}"
    answers: list[tuple[float, int | str]] = []  # (seconds, status or the exception's name)
    stop = threading.Event()

    def client(k: int) -> None:
        i = 0
        while not stop.is_set() and i < 400:  # bounded
            i += 1
            start = time.monotonic()
            try:
                r = requests.post(url + "/v1/explain?pictures=none", files={"file": ("x.png", png(k * 1000 + i))},
                                  timeout=ANSWER_S)
                answers.append((time.monotonic() - start, r.status_code))
            except requests.RequestException as e:
                answers.append((time.monotonic() - start, type(e).__name__))
            time.sleep(0.05)

    try:
        serve.run(build_app(args), name="raygan", route_prefix="/", blocking=False)
        wait_healthy(url, timeout=240)
        deadline = time.monotonic() + 120
        while len(set(replica_nodes())) < 2:
            assert time.monotonic() < deadline, replica_nodes()
            time.sleep(0.5)
        nodes = replica_nodes()
        assert len(nodes) == 2 and len(set(nodes)) == 2 and multinode.head_id not in nodes  # two replicas, two nodes
        clients = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(3)]
        for c in clients:
            c.start()
        time.sleep(5)
        before = len(answers)
        victim = next(n for n in multinode.worker_nodes() if n.node_id == nodes[0])
        multinode.cluster.remove_node(victim)
        time.sleep(15)  # clients keep sending to a service with one replica left
        multinode.add_worker("node_f")  # the node comes back (a spot instance replaced)
        deadline = time.monotonic() + 240
        while running_replicas() < 2 or len(set(replica_nodes())) < 2:
            assert time.monotonic() < deadline, f"Serve did not return to two replicas: {serve.status()}"
            time.sleep(1)
        settled = len(answers)
        time.sleep(5)
        stop.set()
        for c in clients:
            c.join(timeout=ANSWER_S + 10)
        assert not any(c.is_alive() for c in clients), "a client is stuck"
        codes = [code for _, code in answers]
        print(f"{len(answers)} answers, {before} before the removal; codes {sorted(set(map(str, codes)))}; "
              f"slowest {max(t for t, _ in answers):.1f} s")
        assert before > 0 and len(answers) > settled  # answers before the removal and after the recovery
        assert set(codes) <= {200, 503}, codes  # every request answered: an explanation, or 503 at worst
        assert max(t for t, _ in answers) < ANSWER_S
        assert all(code == 200 for code in codes[settled:]), codes[settled:]  # two replicas serve again
        assert requests.post(url + "/v1/explain?pictures=none", files={"file": ("y.png", png(7))},
                             timeout=ANSWER_S).status_code == 200
    finally:
        stop.set()
        serve.shutdown()
