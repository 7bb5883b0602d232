"""Synthetic phantoms: determinism, ground truth, worlds, shortcut kinds, interventional twins, shards."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from raygan import storage
from raygan.cli import main
from raygan.data.phantoms import (
    WORLDS, PhantomConfig, iter_phantom_rows, montage, phantom_at, render_phantom, world_config, write_phantoms,
)
from raygan.data.shards import read_table
from raygan.data.shortcuts import SHORTCUT_KINDS, text_bitmap

COLUMNS = {"image_id", "image", "label", "mask", "lung_mask", "shortcut_mask", "shortcut_kind"}


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_same_seed_same_bytes_and_image_i_independent_of_n() -> None:
    small = list(iter_phantom_rows(PhantomConfig(n=4, size=32, seed=3)))
    again = list(iter_phantom_rows(PhantomConfig(n=4, size=32, seed=3)))
    longer = list(iter_phantom_rows(PhantomConfig(n=9, size=32, seed=3)))
    assert small == again
    assert small == longer[:4]
    other_seed = list(iter_phantom_rows(PhantomConfig(n=4, size=32, seed=4)))
    assert [r["image"] for r in small] != [r["image"] for r in other_seed]
    assert len({r["image_id"] for r in longer}) == 9 and longer[7]["image_id"] == "phantom-000007"


def test_render_is_pure_given_rng_state() -> None:
    a = render_phantom(np.random.default_rng(5), size=48, label=1, lesions=True, shortcut=True)
    b = render_phantom(np.random.default_rng(5), size=48, label=1, lesions=True, shortcut=True)
    for field in dataclasses.fields(a):
        assert np.array_equal(getattr(a, field.name), getattr(b, field.name))
    assert a.image.dtype == np.uint8 and a.image.shape == (48, 48)
    assert a.mask.dtype == np.bool_ and a.lung_mask.dtype == np.bool_ and a.shortcut_mask.dtype == np.bool_


@pytest.mark.parametrize("size", [32, 64])
def test_lesions_inside_lungs_and_negatives_clean(size: int) -> None:
    config = world_config("lesion_only", n=40, size=size, seed=1)
    labels = []
    for i in range(config.n):
        ph = phantom_at(config, i)
        labels.append(ph.label)
        lung_share = ph.lung_mask.mean()
        assert 0.15 < lung_share < 0.6, f"phantom {i}: implausible lung area {lung_share:.2f}"
        assert not (ph.mask & ~ph.lung_mask).any(), f"phantom {i}: lesion outside the lungs"
        assert not (ph.lesion_footprint & ~ph.lung_mask).any(), f"phantom {i}: lesion footprint outside the lungs"
        assert not (ph.mask & ~ph.lesion_footprint).any(), f"phantom {i}: lesion mask outside its footprint"
        assert ph.lesions == (ph.label == 1), f"phantom {i}: label {ph.label}, lesions {ph.lesions}"
    assert 0 < sum(labels) < config.n


@pytest.mark.parametrize("kind", SHORTCUT_KINDS)
@pytest.mark.parametrize("world", sorted(WORLDS))
def test_twins_differ_only_where_the_removed_cue_acts(world: str, kind: str) -> None:
    """The interventional ground truth: each twin equals the phantom outside the removed cue's footprint."""
    config = world_config(world, n=40, size=64, seed=3, shortcut_kind=kind)
    seen = {"shortcut": 0, "lesions": 0}
    for i in range(config.n):
        ph = phantom_at(config, i)
        footprints = {"shortcut": ph.shortcut_mask, "lesions": ph.lesion_footprint,
                      "both": ph.shortcut_mask | ph.lesion_footprint}
        for cue, footprint in footprints.items():
            twin = ph.twin(cue)
            assert twin.shape == ph.image.shape and twin.dtype == np.uint8
            assert np.array_equal(twin[~footprint], ph.image[~footprint]), f"{world}/{kind} {i}: {cue} twin leaks"
        if ph.shortcut:
            seen["shortcut"] += 1
            assert (ph.image != ph.no_shortcut)[ph.shortcut_mask].mean() > 0.8, "the overlay leaves its pixels alone"
            assert not (ph.shortcut_mask & ph.lung_mask).any(), "a shortcut covers the lung truth"
        else:
            assert np.array_equal(ph.no_shortcut, ph.image)
        if ph.lesions:
            seen["lesions"] += 1
            assert (ph.image != ph.no_lesions)[ph.mask].mean() > 0.5, "lesions barely change their own pixels"
        else:
            assert np.array_equal(ph.no_lesions, ph.image)
        # Without both = without the shortcut, then without the lesions.
        assert np.array_equal(ph.clean[~ph.lesion_footprint], ph.no_shortcut[~ph.lesion_footprint])
    assert seen["shortcut"] > 0 and seen["lesions"] > 0


def test_anatomy_is_the_same_in_every_world() -> None:
    """Phantom i of a seed has the same lungs and clean twin whatever the world: only its cues differ."""
    phantoms = [phantom_at(world_config(w, n=1, size=32, seed=4), 0) for w in sorted(WORLDS)]
    for ph in phantoms[1:]:
        assert np.array_equal(ph.lung_mask, phantoms[0].lung_mask)
        assert np.array_equal(ph.clean, phantoms[0].clean)


@pytest.mark.parametrize("world", sorted(WORLDS))
def test_worlds_follow_their_cue_rates(world: str) -> None:
    config = world_config(world, n=600, size=16, seed=0)  # 16 px: only labels and cues matter here
    rows = np.array([(ph.label, ph.lesions, ph.shortcut) for ph in (phantom_at(config, i) for i in range(config.n))])
    rates = WORLDS[world]
    y1, y0 = rows[:, 0] == 1, rows[:, 0] == 0
    for observed, expected in [
        (rows[y1, 1].mean(), rates.lesion_given_positive), (rows[y0, 1].mean(), rates.lesion_given_negative),
        (rows[y1, 2].mean(), rates.shortcut_given_positive), (rows[y0, 2].mean(), rates.shortcut_given_negative),
    ]:
        assert abs(observed - expected) < 0.07, (world, observed, expected)


@pytest.mark.parametrize("kind", SHORTCUT_KINDS)
def test_shortcuts_move_between_phantoms_and_stand_out(kind: str) -> None:
    config = PhantomConfig(n=60, size=64, seed=5, shortcut_kind=kind, shortcut_given_positive=1.0,
                           shortcut_given_negative=1.0)
    places = set()
    for i in range(config.n):
        ph = phantom_at(config, i)
        assert ph.shortcut and ph.shortcut_kind == kind
        ys, xs = np.nonzero(ph.shortcut_mask)
        places.add((int(ys.min()) // 8, int(xs.min()) // 8))
        contrast = np.abs(ph.image.astype(float) - ph.no_shortcut.astype(float))[ph.shortcut_mask].mean()
        assert contrast > 40, f"{kind} {i}: the overlay barely differs from what it covers ({contrast:.0f}/255)"
        assert 0.001 < ph.shortcut_mask.mean() < 0.03
    assert len(places) >= 4, f"{kind}: always in the same few places {places}"


def test_stamp_font() -> None:
    bitmap = text_bitmap("AP", scale=2)
    assert bitmap.shape == (10, 14) and bitmap.dtype == np.bool_
    assert not bitmap[:, 6:8].any(), "letters run into each other"


def test_brightness_alone_does_not_separate_classes() -> None:
    """Exposure variation must dwarf the lesions' effect on the mean, so a classifier has to find them."""
    config = world_config("lesion_only", n=200, size=32, seed=7)
    phantoms = [phantom_at(config, i) for i in range(config.n)]
    means = np.array([ph.image.mean() for ph in phantoms])
    labels = np.array([ph.label for ph in phantoms])
    ranks = np.argsort(np.argsort(means)) + 1
    n1, n0 = labels.sum(), (1 - labels).sum()
    auc = (ranks[labels == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    assert 0.35 < auc < 0.65, f"mean brightness separates the classes (AUC {auc:.2f})"


def test_write_phantoms_shards_read_back(tmp_path) -> None:
    config = PhantomConfig(n=25, size=32, seed=0, rows_per_shard=10)
    out = str(tmp_path / "phantoms")
    shards = write_phantoms(config, out)
    assert len(shards) == 3
    table = read_table(out)
    assert set(table.column_names) == COLUMNS and table.num_rows == 25
    assert storage.read_json(storage.join(out, "phantoms.json")) == dataclasses.asdict(config)
    rows = table.to_pylist()
    expected = list(iter_phantom_rows(config))
    assert [r["image_id"] for r in rows] == [r["image_id"] for r in expected]
    for row, ref in zip(rows, expected, strict=True):
        assert row["image"] == ref["image"] and int(row["label"]) == ref["label"]
        image, mask, lungs = _png(row["image"]), _png(row["mask"]) > 0, _png(row["lung_mask"]) > 0
        assert image.shape == (32, 32) and image.dtype == np.uint8
        assert not (mask & ~lungs).any()
        assert mask.any() == (row["label"] == 1)  # the default (mixed) world: lesions exactly on positives
        marked = _png(row["shortcut_mask"]).any()
        assert (row["shortcut_kind"] == "marker") == marked


def test_cli_phantoms(tmp_path) -> None:
    out = str(tmp_path / "cli")
    assert main(["phantoms", "--n", "30", "--size", "32", "--out", out, "--seed", "1", "--world", "shortcut_only",
                 "--shortcut-kind", "stamp"]) == 0
    table = read_table(out)
    assert table.num_rows == 30
    assert storage.read_json(storage.join(out, "phantoms.json")) == dataclasses.asdict(
        world_config("shortcut_only", n=30, size=32, seed=1, shortcut_kind="stamp"))
    kinds = {k for k in table["shortcut_kind"].to_pylist() if k is not None}
    assert kinds == {"stamp"}


def test_montage_grid() -> None:
    config = PhantomConfig(n=6, size=32, seed=0)
    sheet = montage([phantom_at(config, i) for i in range(config.n)], columns=4)
    assert sheet.mode == "RGB" and sheet.width == 4 * 32 and sheet.height > 2 * 32


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="shortcut_given_positive"):
        PhantomConfig(shortcut_given_positive=1.5)
    with pytest.raises(ValueError, match="shortcut_kind"):
        PhantomConfig(shortcut_kind="band")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown world"):
        world_config("nowhere")
    with pytest.raises(ValueError, match="size"):
        PhantomConfig(size=8)


def test_write_phantoms_to_s3(s3_bucket: str) -> None:
    config = PhantomConfig(n=3, size=16, seed=0)
    out = storage.join(s3_bucket, "phantoms")
    shards = write_phantoms(config, out)
    assert shards == [storage.join(out, "part-00000.parquet")]
    table = read_table(out)
    assert set(table.column_names) == COLUMNS and table.num_rows == 3
    assert storage.read_json(storage.join(out, "phantoms.json"))["n"] == 3
