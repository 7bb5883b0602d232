"""GAN training across nodes of a real four-node Ray cluster, S3 the only shared storage.

- local paths are refused before any work starts (and pass under RAYGAN_SHARED_PREFIXES);
- two Train workers on two different nodes read disjoint shards that together are the training
  split, every epoch, and hold bitwise-equal generator weights after each epoch; checkpoints on S3;
- a worker node removed after the first checkpoint reached S3: Ray Train restarts the worker group
  (FailureConfig) on the nodes left plus a replacement node added by the test, and the run resumes
  from its last checkpoint and ends with the epochs asked for.

What each rank trained on comes from the loop's probe hook (`probe_uri`): per rank and epoch, its node
and the SHA-1 of every image it consumed and of G's parameters. (Ray Train numbers nodes by IP address,
and here every node is 127.0.0.1, so its own log calls both workers node_rank 0; the probe's Ray node
ids are what tells the nodes apart.)
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from cluster_helpers import wait_for

from raygan import storage
from raygan.bundle import load_bundle
from raygan.cli import main
from raygan.cluster import SHARED_ENV
from raygan.config import preset
from raygan.data.shards import read_table
from raygan.data.splits import filter_split
from raygan.train.dataset import DecodeSplit
from raygan.train.gan_loop import image_digest
from raygan.train.gan_trainer import train_gan

pytestmark = pytest.mark.multinode

TINY = preset("tiny")
# Two workers x two batches of 8 = the 32 training phantoms, so no row is dropped (equal split, drop_last).
TRAIN = dataclasses.replace(TINY.train, workers=2, batch_size=8, checkpoint_every=1, consistency_samples=4,
                            quality_samples=8)


def training_digests(data: str) -> dict[str, str]:
    """{image digest: image_id} of the decoded training split, computed here without Ray."""
    table = filter_split(read_table(data, columns=["image_id", "image"]), "train")
    decode = DecodeSplit(splits=("train",), size=TINY.gan.image_size, channels=TINY.gan.channels, with_labels=False)
    images = decode(table)["image"]  # [n, 1, 32, 32]
    train = table
    return {image_digest(torch.from_numpy(image)): image_id
            for image, image_id in zip(images, train["image_id"].to_pylist(), strict=True)}


def probes(uri: str) -> list[dict]:
    return [storage.read_json(f) for f in storage.list_files(uri, suffix=".json")]


@pytest.mark.timeout(300)
def test_local_paths_are_refused_before_any_work(multinode, s3_inputs, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "bundle"
    code = main(["train", "--data", s3_inputs.data, "--classifier", s3_inputs.classifier, "--out", str(out),
                 "--preset", "tiny", "--workers", "2"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert (f"raygan train: error: the Ray cluster has {1 + len(multinode.worker_nodes())} nodes and --out {out} "
            "is a local path that its other nodes cannot see") in err and "Traceback" not in err
    assert not (out / "train_config.json").exists() and not (out / "checkpoints").exists()

    local_data = str(tmp_path / "shards")
    assert main(["train-classifier", "--data", local_data, "--out", f"{s3_inputs.bucket}/c", "--preset", "tiny"]) == 2
    assert f"--data {local_data} is a local path" in capsys.readouterr().err
    assert not storage.exists(f"{s3_inputs.bucket}/c/train_config.json")

    bulk = ["explain-bulk", "--input", local_data, "--bundle", str(tmp_path / "b"), "--out", str(tmp_path / "x")]
    assert main(bulk) == 2
    assert f"--input {local_data}, --bundle {tmp_path / 'b'}, --out {tmp_path / 'x'} are local paths" in \
        capsys.readouterr().err
    # Declared shared, the same paths pass the check (and the command stops at the missing bundle instead).
    monkeypatch.setenv(SHARED_ENV, f"/nonexistent:{tmp_path}")
    assert main(bulk) == 2
    err = capsys.readouterr().err
    assert "local path" not in err and "bundle" in err


@pytest.mark.timeout(900)
def test_two_workers_on_two_nodes_disjoint_complete_shards_equal_weights(multinode, s3_inputs) -> None:
    out, probe = f"{s3_inputs.bucket}/two-nodes", f"{s3_inputs.bucket}/two-nodes-probe"
    expected = training_digests(s3_inputs.data)
    assert len(expected) == 32, "the fixture's phantoms no longer give 32 training images"
    result = train_gan(s3_inputs.data, s3_inputs.classifier, out, gan=TINY.gan, train=dataclasses.replace(TRAIN, epochs=2),
                       inversion=TINY.inversion, traversal=TINY.traversal, probe_uri=probe)
    assert result.epochs == 2 and result.metrics["workers"] == 2

    records = probes(probe)
    by_epoch: dict[int, dict[int, dict]] = defaultdict(dict)
    for r in records:
        assert r["rank"] not in by_epoch[r["epoch"]], "one record per rank and epoch (no restart here)"
        by_epoch[r["epoch"]][r["rank"]] = r
    assert sorted(by_epoch) == [0, 1] and all(sorted(ranks) == [0, 1] for ranks in by_epoch.values())
    workers = {w.node_id for w in multinode.worker_nodes()}
    for epoch, ranks in by_epoch.items():
        nodes = [ranks[0]["node_id"], ranks[1]["node_id"]]
        assert nodes[0] != nodes[1] and set(nodes) <= workers, (epoch, nodes)
        seen = [set(ranks[0]["images"]), set(ranks[1]["images"])]
        assert len(seen[0]) == len(ranks[0]["images"]) == 16 and len(seen[1]) == 16, epoch  # no image twice
        assert not seen[0] & seen[1], f"epoch {epoch}: the ranks shared images"
        assert seen[0] | seen[1] == set(expected), f"epoch {epoch}: the shards missed {set(expected) - seen[0] - seen[1]}"
        assert ranks[0]["generator"] == ranks[1]["generator"], f"epoch {epoch}: G differs across ranks"
    assert by_epoch[0][0]["generator"] != by_epoch[1][0]["generator"]  # and it did train

    checkpoints = storage.list_files(storage.join(out, "checkpoints", "gan"), suffix="state.pt")
    assert len(checkpoints) == 2 and all(c.startswith("s3://") for c in checkpoints)
    assert storage.exists(storage.join(out, "samples", "epoch-0001.png"))
    assert load_bundle(out).meta["extras"]["epochs"] == 2


@pytest.mark.nodeloss  # also alone: `make test-node-loss`
@pytest.mark.timeout(900)
def test_a_worker_node_removed_mid_run_the_run_resumes_and_completes(multinode, s3_inputs) -> None:
    epochs = 6
    out, probe = f"{s3_inputs.bucket}/node-loss", f"{s3_inputs.bucket}/node-loss-probe"
    stamps: dict[str, float] = {}
    removed: dict[str, object] = {}

    def lose_a_node() -> None:
        """Once Ray Train has registered the first checkpoint (on S3): remove the node of rank 1, then add a
        replacement node. A state.pt on S3 is not enough: the controller registers a checkpoint when it next
        polls the workers (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S), and a restart resumes from registered ones
        only (seen: a node removed 0.4 s after the upload restarted from scratch). Registration writes the
        snapshot file below."""
        try:
            wait_for("a registered checkpoint on S3", lambda: storage.exists(
                storage.join(out, "checkpoints", "gan", "checkpoint_manager_snapshot.json")), seconds=400)
            stamps["checkpoint"] = time.time()
            rank1 = wait_for("rank 1's epoch-0 record", lambda: [r for r in probes(probe) if r["rank"] == 1],
                             seconds=60)
            node = next(n for n in multinode.worker_nodes() if n.node_id == rank1[0]["node_id"])
            removed["before"] = max(r["epoch"] for r in probes(probe))
            multinode.cluster.remove_node(node)
            removed["node"] = node.node_id
            stamps["removed"] = time.time()
            multinode.add_worker("node_d")  # the replacement (a spot instance coming back)
            stamps["added"] = time.time()
        except BaseException as e:  # reported by the assertion below, not lost in the thread
            removed["error"] = repr(e)

    stamps["start"] = time.time()
    watcher = threading.Thread(target=lose_a_node, daemon=True)
    watcher.start()
    result = train_gan(s3_inputs.data, s3_inputs.classifier, out, gan=TINY.gan,
                       train=dataclasses.replace(TRAIN, epochs=epochs), inversion=TINY.inversion,
                       traversal=TINY.traversal, probe_uri=probe)
    stamps["done"] = time.time()
    watcher.join(timeout=120)
    records = probes(probe)
    for r in sorted(records, key=lambda r: r["time"]):
        print(f"{r['time'] - stamps['start']:7.1f} s  epoch {r['epoch']} rank {r['rank']} start {r['start_epoch']}")
    print({k: round(v - stamps["start"], 1) for k, v in stamps.items()})
    assert "error" not in removed and "node" in removed and "added" in stamps, removed

    assert result.epochs == epochs and result.metrics["workers"] == 2
    assert removed["before"] < epochs - 1, "the node went after the last epoch: nothing was tested"
    # The last attempt started from a checkpoint, not from scratch, and trained every epoch after it.
    assert result.start_epoch >= 1, result.start_epoch
    last = [r for r in records if r["start_epoch"] == result.start_epoch]
    assert sorted({r["epoch"] for r in last}) == list(range(result.start_epoch, epochs))
    assert removed["node"] not in {r["node_id"] for r in last}
    assert {r["start_epoch"] for r in records} == {0, result.start_epoch}, "one restart, from the checkpoint"
    for epoch in range(result.start_epoch, epochs):
        ranks = {r["rank"]: r for r in last if r["epoch"] == epoch}
        assert sorted(ranks) == [0, 1] and ranks[0]["node_id"] != ranks[1]["node_id"], epoch
        assert ranks[0]["generator"] == ranks[1]["generator"], epoch
    bundle = load_bundle(out)
    assert bundle.meta["extras"]["epochs"] == epochs and bundle.meta["extras"]["final_metrics"]["epoch"] == epochs - 1
