"""Synthetic phantoms: determinism, ground-truth consistency, the planted shortcut, shards."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from raygan import storage
from raygan.cli import main
from raygan.data.phantoms import PhantomConfig, iter_phantom_rows, montage, phantom_at, render_phantom, write_phantoms
from raygan.data.shards import read_table

COLUMNS = {"image_id", "image", "label", "mask", "lung_mask", "marker_mask"}


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
    a = render_phantom(np.random.default_rng(5), size=48, positive=True, marker=True)
    b = render_phantom(np.random.default_rng(5), size=48, positive=True, marker=True)
    for field in dataclasses.fields(a):
        assert np.array_equal(getattr(a, field.name), getattr(b, field.name))
    assert a.image.dtype == np.uint8 and a.image.shape == (48, 48)
    assert a.mask.dtype == np.bool_ and a.lung_mask.dtype == np.bool_ and a.marker_mask.dtype == np.bool_


@pytest.mark.parametrize("size", [32, 64])
def test_lesions_inside_lungs_and_negatives_clean(size: int) -> None:
    config = PhantomConfig(n=40, size=size, seed=1)
    labels = []
    for i in range(config.n):
        ph = phantom_at(config, i)
        labels.append(ph.label)
        lung_share = ph.lung_mask.mean()
        assert 0.15 < lung_share < 0.6, f"phantom {i}: implausible lung area {lung_share:.2f}"
        assert not (ph.mask & ~ph.lung_mask).any(), f"phantom {i}: lesion outside the lungs"
        if ph.label == 1:
            assert ph.mask.any(), f"positive phantom {i} has an empty lesion mask"
        else:
            assert not ph.mask.any(), f"negative phantom {i} has a lesion mask"
    assert 0 < sum(labels) < config.n


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_marker_follows_shortcut_rate_extremes(rate: float) -> None:
    config = PhantomConfig(n=30, size=32, seed=2, shortcut_rate=rate)
    for i in range(config.n):
        ph = phantom_at(config, i)
        marked = bool(ph.marker_mask.any())
        assert marked == ((ph.label == 1) == (rate == 1.0)), f"phantom {i}: label {ph.label}, marker {marked}"
        if marked:  # burned in: the marker pixels are bright, and kept off the lungs
            assert ph.image[ph.marker_mask].min() >= 0.85 * 255
            assert not (ph.marker_mask & ph.lung_mask).any()


def test_marker_uncorrelated_at_half_rate() -> None:
    config = PhantomConfig(n=400, size=16, seed=0, shortcut_rate=0.5)
    phantoms = [phantom_at(config, i) for i in range(config.n)]  # 16 px: only label and marker matter here
    pairs = np.array([(ph.label, ph.marker_mask.any()) for ph in phantoms])
    rate_pos = pairs[pairs[:, 0] == 1, 1].mean()
    rate_neg = pairs[pairs[:, 0] == 0, 1].mean()
    assert abs(rate_pos - rate_neg) < 0.15


def test_brightness_alone_does_not_separate_classes() -> None:
    """Exposure variation must dwarf the lesions' effect on the mean, so a classifier has to find them."""
    config = PhantomConfig(n=200, size=32, seed=7)
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
        assert mask.any() == (row["label"] == 1)


def test_cli_phantoms(tmp_path) -> None:
    out = str(tmp_path / "cli")
    assert main(["phantoms", "--n", "6", "--size", "32", "--out", out, "--seed", "1", "--shortcut-rate", "1"]) == 0
    table = read_table(out)
    assert table.num_rows == 6
    labels = table["label"].to_pylist()
    marked = [_png(m).any() for m in table["marker_mask"].to_pylist()]
    assert marked == [label == 1 for label in labels]


def test_montage_grid() -> None:
    config = PhantomConfig(n=6, size=32, seed=0)
    sheet = montage([phantom_at(config, i) for i in range(config.n)], columns=4)
    assert sheet.mode == "RGB" and sheet.width == 4 * 32 and sheet.height > 2 * 32


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="shortcut_rate"):
        PhantomConfig(shortcut_rate=1.5)
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
