"""A bulk explanation job across nodes of the four-node cluster, S3 the only shared storage: a worker node
that holds one of the job's Explainer actors is removed mid-job, and after the job (and a rerun, which
must find nothing left to do) every input row is in the results exactly once.
"""

from __future__ import annotations

import threading
import time

import pyarrow.parquet as pq
import pytest
from cluster_helpers import alive_actor_nodes, tiny_bundle_on_s3, wait_for

from raygan import storage
from raygan.bulk import BulkConfig, explain_bulk
from raygan.data.shards import read_table

pytestmark = pytest.mark.multinode

ROWS_PER_UNIT = 4  # 46 phantoms in two files of 23: 12 work units, each its own results file


def result_ids(out: str) -> list[str]:
    files = storage.list_files(storage.join(out, "results"), suffix=".parquet")
    ids: list[str] = []
    for f in files:
        fs, path = storage.filesystem(f)
        ids += pq.read_table(path, filesystem=fs, columns=["image_id"])["image_id"].to_pylist()
    return ids


def explainer_nodes() -> set[str]:
    """Node ids of the live actors of Ray Data's map operator (the actor pool that holds the Explainers)."""
    return set(alive_actor_nodes(lambda name: "MapWorker" in name))


@pytest.mark.nodeloss  # also alone: `make test-node-loss`
@pytest.mark.timeout(600)
def test_a_node_removed_mid_bulk_job_every_row_exactly_once(multinode, s3_inputs) -> None:
    bundle = tiny_bundle_on_s3(s3_inputs, "bulk-bundle", steps=150)
    out = f"{s3_inputs.bucket}/bulk-node-loss"
    config = BulkConfig(rows_per_file=ROWS_PER_UNIT, min_actors=1, max_actors=2, attributions=False,
                        artifacts="none", progress=False)
    rows = read_table(s3_inputs.data, columns=["image_id"])["image_id"].to_pylist()
    units = sum(-(-n // ROWS_PER_UNIT) for n in (23, 23))
    event: dict[str, object] = {}

    def lose_a_node() -> None:
        try:
            wait_for("the first unit's results", lambda: result_ids(out), seconds=240)
            holders = wait_for("an Explainer actor on a worker node",
                               lambda: explainer_nodes() - {multinode.head_id}, seconds=60)
            node = next(n for n in multinode.worker_nodes() if n.node_id in holders)
            event["files_before"] = len(storage.list_files(storage.join(out, "results"), suffix=".parquet"))
            event["removed_at"] = round(time.monotonic() - started, 1)
            multinode.cluster.remove_node(node)
            event["removed"] = node.node_id
            multinode.add_worker("node_e")  # the replacement
            event["added_at"] = round(time.monotonic() - started, 1)
        except BaseException as e:  # reported by the assertion below, not lost in the thread
            event["error"] = repr(e)

    started = time.monotonic()
    watcher = threading.Thread(target=lose_a_node, daemon=True)
    watcher.start()
    try:
        first = explain_bulk(s3_inputs.data, bundle, out, config=config)
        event["first"] = (first.ok, first.error, first.skipped)
        event["first_done_at"] = round(time.monotonic() - started, 1)
    except Exception as e:  # a job may also fail with the node; the rerun must then finish it
        event["first_failed"] = repr(e)
    watcher.join(timeout=180)
    print(event)
    assert "error" not in event and "removed" in event, event
    assert event["files_before"] < units, "the node went after the last unit: nothing was tested"

    rerun = explain_bulk(s3_inputs.data, bundle, out, config=config)
    ids = result_ids(out)
    assert sorted(ids) == sorted(rows), "every input row is in the results exactly once"
    assert rerun.rows_in == len(rows) and rerun.skipped + rerun.ok + rerun.error == len(rows)
    if "first" in event:  # the job survived the node: the rerun had nothing left to do
        assert rerun.skipped == len(rows) and rerun.ok == 0, (event, rerun)
