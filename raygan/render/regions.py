"""Regions: how much of an attribution map's mass falls where shortcuts live.

Burned-in markers (L/R letters, hospital tags, the phantoms' planted glyph) sit near the image
border, most often in a corner. A map that puts its mass there, or outside the lung fields, says
the classifier may be reading a shortcut rather than pathology (DeGrave et al. 2021).
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from raygan.render.images import map_to_float

BORDER_FRACTION = 0.1  # the border ring: pixels within 10 % of the side from any edge
CORNER_FRACTION = 0.2  # the corner squares: 20 % of the side, where markers are usually burned in


@dataclass(frozen=True)
class MapMass:
    """Shares of one map's total mass in shortcut-prone regions (nan for an all-zero map)."""

    border: float  # share within BORDER_FRACTION of any edge
    corners: float  # share in the four CORNER_FRACTION squares
    edge: float  # share in border or corners (the union): the ranking key of the shortcut table
    outside_lung: float | None  # share outside the lung fields; None without a lung mask
    on_shortcut: float | None  # share on the burned-in shortcut (shortcut_mask); None without one, or an empty one


@functools.lru_cache(maxsize=8)
def edge_regions(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(border, corners): bool masks [H, W] of the border ring and of the four corner squares."""
    by, bx = max(1, round(BORDER_FRACTION * height)), max(1, round(BORDER_FRACTION * width))
    cy, cx = max(1, round(CORNER_FRACTION * height)), max(1, round(CORNER_FRACTION * width))
    border = np.ones((height, width), dtype=bool)
    border[by : height - by, bx : width - bx] = False
    near_y = np.zeros(height, dtype=bool)
    near_y[:cy] = near_y[height - cy :] = True
    near_x = np.zeros(width, dtype=bool)
    near_x[:cx] = near_x[width - cx :] = True
    corners = near_y[:, None] & near_x[None, :]
    border.flags.writeable = False
    corners.flags.writeable = False
    return border, corners


def uniform_edge_share(height: int, width: int) -> float:
    """The edge share of a flat map: what `MapMass.edge` is when a map shows no preference at all."""
    border, corners = edge_regions(height, width)
    return float((border | corners).mean())


def _share(values: np.ndarray, region: np.ndarray, total: float) -> float:
    return float(values[region].sum() / total) if total > 0 else math.nan


def _fit_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A bool mask resized (nearest) to `shape` when the ground truth was stored at another resolution."""
    mask = np.asarray(mask).astype(bool)
    if mask.shape == shape:
        return mask
    resized = Image.fromarray(mask.astype(np.uint8) * 255).resize(shape[::-1], Image.Resampling.NEAREST)
    return np.asarray(resized) > 127


def map_mass(attribution: Any, *, lung_mask: np.ndarray | None = None,
             shortcut_mask: np.ndarray | None = None) -> MapMass:
    """Where a map [1, H, W] or [H, W] (float in [0, 1] or uint8) puts its mass; masks are bool [H', W']."""
    values = map_to_float(attribution).astype(np.float64)  # [H, W]
    total = float(values.sum())
    border, corners = edge_regions(*values.shape)
    outside = None if lung_mask is None else _share(values, ~_fit_mask(lung_mask, values.shape), total)
    shortcut = None
    if shortcut_mask is not None and np.asarray(shortcut_mask).any():
        shortcut = _share(values, _fit_mask(shortcut_mask, values.shape), total)
    return MapMass(
        border=_share(values, border, total), corners=_share(values, corners, total),
        edge=_share(values, border | corners, total), outside_lung=outside, on_shortcut=shortcut,
    )


def decode_map(png: bytes) -> np.ndarray:
    """A stored map PNG (8-bit gray, 255 = 1.0, as written by `png_bytes(map)`) -> uint8 [H, W]."""
    with Image.open(io.BytesIO(png)) as img:
        return np.asarray(img.convert("L"))


def decode_mask(png: bytes) -> np.ndarray:
    """A mask PNG (lung_mask, shortcut_mask columns) -> bool [H, W]."""
    with Image.open(io.BytesIO(png)) as img:
        return np.asarray(img.convert("L")) > 127


def mean_map(maps: list[np.ndarray]) -> np.ndarray:
    """Pixel-wise mean of maps (float in [0, 1] or uint8), resized to the first map's shape -> float32 [H, W]."""
    assert maps, "mean_map needs at least one map"
    shape = map_to_float(maps[0]).shape
    acc = np.zeros(shape, dtype=np.float64)
    for m in maps:
        values = map_to_float(m)
        if values.shape != shape:
            values = np.asarray(Image.fromarray(values).resize(shape[::-1], Image.Resampling.BILINEAR))
        acc += values
    return (acc / len(maps)).astype(np.float32)
