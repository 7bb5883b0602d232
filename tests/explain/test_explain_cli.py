"""`raygan explain`: a bundle on disk, flags over the bundle's settings, the summary printed."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from explain_helpers import small_cnn_spec

from raygan import storage
from raygan.bundle import load_bundle, save_bundle
from raygan.cli import main
from raygan.config import preset
from raygan.data.codec import encode_png
from raygan.data.shards import write_shards
from raygan.models import save_classifier

TINY = preset("tiny")


@pytest.fixture()
def bundle(tmp_path, tiny_generator, tiny_classifier) -> str:
    classifier_uri = save_classifier(tiny_classifier.model, str(tmp_path / "classifier"), spec=small_cnn_spec())
    return save_bundle(str(tmp_path / "bundle"), generator=tiny_generator, classifier_uri=classifier_uri,
                       train=TINY.train, inversion=dataclasses.replace(TINY.inversion, steps=3),
                       traversal=TINY.traversal)


def test_cli_explain(tmp_path, bundle, capsys):
    rng = np.random.default_rng(0)
    rows = [{"image_id": f"r{i}", "image": encode_png(rng.uniform(-1, 1, (1, 32, 32)).astype(np.float32))}
            for i in range(3)]
    shards = str(tmp_path / "shards")
    write_shards(rows, shards)
    out = str(tmp_path / "out")
    args = [shards, "--bundle", bundle, "--out", out, "--steps", "2", "--frames", "2", "--rate", "0.5",
            "--lr", "0.02", "--mse-weight", "2", "--bce-weight", "0.5", "--batch-size", "2", "--device", "cpu"]
    assert main(["explain", *args]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["rows_in"], summary["ok"], summary["error"], summary["skipped"]) == (3, 3, 0, 0)
    files = storage.list_files(storage.join(out, "results"), suffix=".parquet")
    table = pq.read_table(files[0])
    assert table.num_rows == 3 and table["traversal_alphas"][0].as_py() == [0.0, 0.5, 1.0]
    # the flags are part of the bundle_id: the same run again is skipped, other settings are not
    b = load_bundle(bundle)
    inversion = dataclasses.replace(b.inversion, steps=2, lr=0.02, mse_weight=2.0, bce_weight=0.5)
    traversal = dataclasses.replace(b.traversal, frames=2, rate=0.5)
    assert set(table["bundle_id"].to_pylist()) == {b.bundle_id(inversion, traversal)}
    assert main(["explain", *args]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["skipped"] == 3
    assert main(["explain", shards, "--bundle", bundle, "--out", out, "--device", "cpu", "--no-attributions"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ok"] == 3


def test_cli_explain_without_a_bundle(tmp_path, capsys):
    assert main(["explain", str(tmp_path), "--bundle", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "no bundle" in capsys.readouterr().err


def test_cli_explain_a_folder_prints_failures_and_retries_them(tmp_path, bundle, capsys):
    folder = tmp_path / "pngs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    (folder / "a.png").write_bytes(encode_png(rng.uniform(-1, 1, (1, 20, 24)).astype(np.float32)))
    (folder / "sub" / "b.png").write_bytes(b"\x89PNG but broken")
    (folder / "notes.txt").write_text("not an image, not a row")
    out = str(tmp_path / "out")
    args = [str(folder), "--bundle", bundle, "--out", out, "--steps", "2", "--device", "cpu", "--no-attributions",
            "--no-progress"]
    assert main(["explain", *args]) == 0  # one row explained: success, with the failure's reason on stderr
    printed = capsys.readouterr()
    summary = json.loads(printed.out.strip().splitlines()[-1])
    assert (summary["rows_in"], summary["ok"], summary["error"]) == (2, 1, 1)
    assert "error: sub/b: cannot decode image" in printed.err and "0x" not in printed.err

    # Nothing new succeeds: the failed row stays failed, reported, and the command exits non-zero.
    (folder / "a.png").unlink()
    assert main(["explain", *args, "--retry-errors"]) == 1
    printed = capsys.readouterr()
    assert "error: sub/b: cannot decode image" in printed.err and "no row was explained" in printed.err
    # Fixed, a plain rerun skips it ("already done"); --retry-errors explains it and replaces the error row.
    (folder / "sub" / "b.png").write_bytes(encode_png(rng.uniform(-1, 1, (1, 32, 32)).astype(np.float32)))
    assert main(["explain", *args]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["skipped"] == 1
    assert main(["explain", *args, "--retry-errors"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["ok"], summary["error"], summary["retried"]) == (1, 0, 1)
    results = pq.read_table(storage.list_files(storage.join(out, "results"), suffix=".parquet")).to_pylist()
    assert sorted((r["image_id"], r["status"]) for r in results) == [("a", "ok"), ("sub/b", "ok")]  # one row each


def test_cli_explain_a_missing_image_is_one_line(tmp_path, bundle, capsys):
    assert main(["explain", str(tmp_path / "no-such.png"), "--bundle", bundle, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"raygan explain: error: no such file or folder (or an empty one): {tmp_path}/no-such.png"
    assert "Traceback" not in err


def test_cli_and_api_explain_from_the_encoder_or_from_scratch(tmp_path, bundle, capsys):
    import raygan
    from raygan.bundle import attach_encoder
    from raygan.models import build_encoder

    attach_encoder(bundle, encoder=build_encoder(TINY.gan, TINY.encoder), data="d", metrics={}, epochs=1)
    b = load_bundle(bundle)
    rng = np.random.default_rng(1)
    rows = [{"image_id": f"e{i}", "image": encode_png(rng.uniform(-1, 1, (1, 32, 32)).astype(np.float32))}
            for i in range(2)]
    shards, out = str(tmp_path / "shards"), str(tmp_path / "out")
    write_shards(rows, shards)
    base = [shards, "--bundle", bundle, "--out", out, "--device", "cpu", "--no-attributions", "--frames", "2"]
    traversal = dataclasses.replace(b.traversal, frames=2)

    def results():
        files = storage.list_files(storage.join(out, "results"), suffix=".parquet")
        return [r for f in files for r in pq.read_table(f).to_pylist()]

    assert main(["explain", *base, "--encoder-steps", "2"]) == 0
    assert "inversion: from the bundle's encoder, at most 2 refinement steps" in capsys.readouterr().out
    first = results()
    encoder_id = b.bundle_id(dataclasses.replace(b.inversion, encoder_steps=2), traversal)
    assert {r["bundle_id"] for r in first} == {encoder_id} and all(r["steps_used"] <= 2 for r in first)
    # From scratch is another inversion: its own rows beside the encoder's, never mixed or skipped.
    assert main(["explain", *base, "--encoder-steps", "2", "--no-encoder"]) == 0
    assert "inversion: from scratch, at most 3 steps" in capsys.readouterr().out
    both = results()
    scratch_id = b.bundle_id(b.inversion, traversal, encoder=False)
    assert sorted(r["bundle_id"] for r in both) == sorted([encoder_id] * 2 + [scratch_id] * 2)
    assert all(r["steps_used"] == 3 for r in both if r["bundle_id"] == scratch_id)

    pipe = raygan.load(bundle, device="cpu", attributions=False)
    assert pipe.uses_encoder and not raygan.load(bundle, device="cpu", no_encoder=True).uses_encoder
    images = torch.rand(2, 1, 32, 32) * 2 - 1
    fast = pipe.explain(images, encoder_steps=0)
    slow = pipe.explain(images, no_encoder=True)
    assert [e.steps_used for e in fast] == [0, 0] and [e.steps_used for e in slow] == [3, 3]
