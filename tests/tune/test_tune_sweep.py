"""A tiny sweep end to end on the CPU: ASHA stops a trial early, the winner lands in the bundle,
and `raygan explain` then uses the tuned settings by default."""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from raygan import storage
from raygan.bundle import load_bundle
from raygan.data.codec import encode_png
from raygan.tune.objective import ObjectiveWeights
from raygan.tune.space import SearchSpace
from raygan.tune.sweep import SweepConfig, _search_algorithm, run_sweep, sample_split


def test_samples_come_from_disjoint_splits(tiny_shards: str) -> None:
    from raygan.data.shards import read_table
    from raygan.data.splits import split_of

    table = read_table(tiny_shards)
    search = sample_split(table, split="val", n=4, size=32, channels=1, seed=0)
    holdout = sample_split(table, split="test", n=100, size=32, channels=1, seed=0)
    assert len(search.image_ids) == 4 and search.images.shape == (4, 1, 32, 32)
    assert {split_of(i) for i in search.image_ids} == {"val"}
    assert {split_of(i) for i in holdout.image_ids} == {"test"}
    assert len(holdout.image_ids) == holdout.available < 100  # the whole split when it is smaller
    assert sample_split(table, split="val", n=4, size=32, channels=1, seed=0).image_ids == search.image_ids


def test_random_search_is_the_fallback_without_optuna(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.tune.search import BasicVariantGenerator

    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    with pytest.warns(UserWarning, match="optuna is not available"):
        alg, used = _search_algorithm("optuna", start={}, seed=0, samples=4)
    assert used == "random" and isinstance(alg, BasicVariantGenerator)


@pytest.mark.timeout(300)
def test_tiny_sweep_tunes_the_bundle_and_explain_uses_it(
    ray_session: None, tiny_bundle: str, tiny_shards: str, tmp_path: Path
) -> None:
    before = load_bundle(tiny_bundle)
    config = SweepConfig(
        bundle=tiny_bundle, data=tiny_shards, samples=6, images=4, holdout=3, search="optuna", max_steps=8,
        authors_steps=8, report_every=2, grace_steps=2, reduction_factor=2, max_concurrent=1, seed=0,
    )
    started = time.perf_counter()
    result = run_sweep(config, space=SearchSpace(frames=(2, 4)), weights=ObjectiveWeights())
    print(f"tiny sweep: {time.perf_counter() - started:.1f} s")

    # Every trial reported every component; ASHA stopped at least one before its step budget.
    out = storage.join(tiny_bundle, "tune")  # the default --out
    assert result.out == storage.join(out, result.name)
    trials = list(csv.DictReader(io.StringIO(storage.read_text(storage.join(result.out, "trials.csv")))))
    assert len(trials) == result.trials == 6
    for t in trials:
        assert all(t[k] != "" for k in ("objective", "recon_ssim", "flip_rate", "monotone_share", "end_gap", "steps"))
    stopped = [t for t in trials if int(t["last_step"]) < int(t["config/steps"])]
    assert stopped and result.stopped_early == len(stopped) >= 1
    assert result.completed + result.stopped_early == 6
    assert Path(result.out, "tuner.pkl").exists() or any(Path(result.out).iterdir())  # Tune's experiment dir

    # The table: tuned / before / authors on both samples, authors' shrunk steps noted.
    rows = list(csv.DictReader(io.StringIO(storage.read_text(storage.join(out, "results.csv")))))
    assert [(r["label"], r["sample"]) for r in rows] == [
        (label, sample) for sample in ("search", "holdout") for label in ("tuned", "before", "authors")]
    assert {r["images"] for r in rows if r["sample"] == "search"} == {"4"}
    authors = [r for r in rows if r["label"] == "authors"]
    assert all(r["a_mse_weight"] == "4.0" and r["steps_budget"] == "8" and "--authors-steps" in r["note"]
               for r in authors)
    assert "| tuned | holdout |" in storage.read_text(storage.join(out, "results.md"))
    # The winner's re-score on the search sample reproduces its trial's final objective.
    winner = min((t for t in trials if t["complete"] == "True"), key=lambda t: float(t["objective"]))
    assert float(rows[0]["objective"]) == pytest.approx(float(winner["objective"]), rel=1e-4)

    # The bundle now carries the winner (previous settings in its history).
    after = load_bundle(tiny_bundle)
    assert after.inversion == result.inversion and after.traversal == result.traversal
    assert after.meta["history"][-1]["inversion"]["steps"] == before.inversion.steps
    assert after.fingerprint == result.bundle_fingerprint != before.fingerprint

    # `raygan explain` picks the tuned settings by default.
    from raygan.cli import main

    image = tmp_path / "probe.png"
    image.write_bytes(encode_png(torch.rand(1, 32, 32) * 2 - 1))
    assert main(["explain", str(image), "--bundle", tiny_bundle, "--out", str(tmp_path / "explained"),
                 "--no-attributions"]) == 0
    files = storage.list_files(str(tmp_path / "explained" / "results"), suffix=".parquet")
    ids = set(pq.read_table(files[0], columns=["bundle_id"])["bundle_id"].to_pylist())
    assert ids == {after.fingerprint}
