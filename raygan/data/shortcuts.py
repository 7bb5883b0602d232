"""Planted shortcuts for the phantoms: small burned-in overlays a classifier can learn instead of pathology.

Each kind draws, from the phantom's generator, where the overlay goes and what it looks like, and
returns a `Shortcut`: a pixel mask and the grey level burned into it. The overlay replaces the
image's pixels on the mask and nowhere else, so a phantom rendered without it (its twin) differs
from the phantom exactly on the mask. Every kind keeps off the lung fields (the lesion truth) and
moves between phantoms, so a map cannot find it by looking at a fixed place.

- "marker": a laterality-style glyph ("L", "R" or a filled square) in a random corner;
- "stamp": a short burned-in text ("AP", "PORT", "SUP", "ICU") in a 3x5 pixel font, at a random
  position along the top or bottom edge, light on a dark background and dark on a light one (the
  abdomen and the neck are bright), so it always stands out.

`draw_shortcut` always consumes the same random numbers for a kind, whether or not the phantom
ends up carrying the overlay, so switching the overlay off changes nothing else in the picture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

ShortcutKind = Literal["marker", "stamp"]
SHORTCUT_KINDS: tuple[ShortcutKind, ...] = ("marker", "stamp")


@dataclass(frozen=True)
class Shortcut:
    """Where one overlay goes and how bright it is."""

    mask: np.ndarray  # [S, S] bool, the pixels the overlay replaces
    level: float  # grey level in [0, 1] burned into those pixels (a light one; see `contrast`)
    contrast: bool = False  # burn in 1 - level instead where the background under the mask is light

    def burned_level(self, background: np.ndarray) -> float:
        """The grey level to burn in over `background` ([S, S] in [0, 1], the picture without any overlay)."""
        if self.contrast and self.mask.any() and float(background[self.mask].mean()) > 0.5:
            return 1.0 - self.level
        return self.level


def _segment_distance(px: np.ndarray, py: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """Distance from points (px, py) to the segment a-b."""
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
    return np.hypot(px - (ax + t * dx), py - (ay + t * dy))


# Marker glyphs as strokes in glyph coordinates [0, 1]^2 (x right, y down); the square is filled.
_GLYPHS: dict[str, tuple[tuple[tuple[float, float], tuple[float, float]], ...]] = {
    "L": (((0.25, 0.1), (0.25, 0.9)), ((0.25, 0.9), (0.8, 0.9))),
    "R": (
        ((0.25, 0.1), (0.25, 0.9)),
        ((0.25, 0.1), (0.72, 0.1)),
        ((0.72, 0.1), (0.75, 0.5)),
        ((0.25, 0.5), (0.75, 0.5)),
        ((0.45, 0.5), (0.8, 0.9)),
    ),
}


def glyph(kind: str, side: int) -> np.ndarray:
    """Rasterise a marker glyph into a [side, side] bool array, strokes at least one pixel wide."""
    c = (np.arange(side, dtype=np.float32) + 0.5) / side
    gy, gx = np.meshgrid(c, c, indexing="ij")  # [g, g]
    if kind == "square":
        return (np.abs(gx - 0.5) < 0.35) & (np.abs(gy - 0.5) < 0.35)
    half = max(0.5 / side + 1e-3, 0.09)  # half stroke width: a pixel at least
    dist = np.min([_segment_distance(gx, gy, a, b) for a, b in _GLYPHS[kind]], axis=0)
    return dist <= half


def _free(lung_mask: np.ndarray, r0: int, c0: int, h: int, w: int) -> bool:
    """True when the box at (r0, c0) of h x w lies inside the image and touches no lung pixel."""
    size = lung_mask.shape[0]
    return 0 <= r0 and 0 <= c0 and r0 + h <= size and c0 + w <= size and not lung_mask[r0:r0 + h, c0:c0 + w].any()


def _marker(rng: np.random.Generator, lung_mask: np.ndarray) -> Shortcut:
    """A glyph ("L", "R" or a square) in a random corner; corners whose box touches a lung are avoided."""
    size = lung_mask.shape[0]
    side = max(5, round(0.11 * size))
    margin = max(1, round(0.03 * size)) + int(rng.integers(0, max(1, round(0.03 * size)) + 1))
    shape = glyph(("L", "R", "square")[int(rng.integers(3))], side)
    near, far = margin, size - margin - side
    corners = [(r0, c0) for r0 in (near, far) for c0 in (near, far)]
    free = [(r0, c0) for r0, c0 in corners if _free(lung_mask, r0, c0, side, side)] or corners
    r0, c0 = free[int(rng.integers(len(free)))]
    level = float(rng.uniform(0.88, 1.0))
    mask = np.zeros((size, size), dtype=bool)
    mask[r0:r0 + side, c0:c0 + side] = shape
    return Shortcut(mask=mask, level=level)


# A 3x5 pixel font for the stamp words: rows top to bottom, "#" = ink.
_FONT: dict[str, tuple[str, ...]] = {
    "A": (".#.", "#.#", "###", "#.#", "#.#"),
    "C": (".##", "#..", "#..", "#..", ".##"),
    "I": ("###", ".#.", ".#.", ".#.", "###"),
    "O": (".#.", "#.#", "#.#", "#.#", ".#."),
    "P": ("##.", "#.#", "##.", "#..", "#.."),
    "R": ("##.", "#.#", "##.", "#.#", "#.#"),
    "S": (".##", "#..", ".#.", "..#", "##."),
    "T": ("###", ".#.", ".#.", ".#.", ".#."),
    "U": ("#.#", "#.#", "#.#", "#.#", "###"),
}
STAMP_WORDS = ("AP", "PORT", "SUP", "ICU")


def text_bitmap(word: str, *, scale: int = 1) -> np.ndarray:
    """[5 * scale, (4 * len - 1) * scale] bool: `word` in the 3x5 font, one blank column between letters."""
    assert scale >= 1 and word, (word, scale)
    columns: list[np.ndarray] = []
    for i, letter in enumerate(word):
        if i:
            columns.append(np.zeros((5, 1), dtype=bool))
        columns.append(np.array([[c == "#" for c in row] for row in _FONT[letter]], dtype=bool))
    bitmap = np.concatenate(columns, axis=1)  # [5, 4 * len - 1]
    return np.kron(bitmap, np.ones((scale, scale), dtype=bool))


def _stamp(rng: np.random.Generator, lung_mask: np.ndarray) -> Shortcut:
    """A short text along the top or bottom edge at a random horizontal offset, off the lungs.

    The word, the edge, the offsets and the grey level are always drawn, in that order; where the
    drawn place touches a lung the other edge is tried, then the first free column on either edge.
    """
    size = lung_mask.shape[0]
    scale = max(1, round(size / 64))
    word = STAMP_WORDS[int(rng.integers(len(STAMP_WORDS)))]
    bitmap = text_bitmap(word, scale=scale)
    if bitmap.shape[1] > size - 2:  # too wide for a tiny image: the shortest word
        bitmap = text_bitmap(min(STAMP_WORDS, key=len), scale=1)
    h, w = bitmap.shape
    edge = int(rng.integers(2))  # 0 = top, 1 = bottom
    margin = max(1, round(0.02 * size)) + int(rng.integers(0, max(1, round(0.03 * size)) + 1))
    c_draw = float(rng.uniform(0.0, 1.0))
    level = float(rng.uniform(0.85, 1.0))
    rows = {0: margin, 1: size - margin - h}
    first_col = max(0, round(0.04 * size))
    span = max(0, size - w - 2 * first_col)
    c0 = first_col + round(c_draw * span)
    candidates = [(rows[edge], c0), (rows[1 - edge], c0)]
    candidates += [(rows[e], c) for e in (edge, 1 - edge) for c in range(first_col, first_col + span + 1)]
    r0, c0 = next(((r, c) for r, c in candidates if _free(lung_mask, r, c, h, w)), candidates[0])
    mask = np.zeros((size, size), dtype=bool)
    mask[r0:r0 + h, c0:c0 + w] = bitmap
    return Shortcut(mask=mask, level=level, contrast=True)


_KINDS: dict[str, Callable[[np.random.Generator, np.ndarray], Shortcut]] = {"marker": _marker, "stamp": _stamp}


def draw_shortcut(rng: np.random.Generator, lung_mask: np.ndarray, *, kind: ShortcutKind) -> Shortcut:
    """Draw an overlay of `kind` for a phantom with these lungs ([S, S] bool)."""
    if kind not in _KINDS:
        raise ValueError(f"unknown shortcut kind {kind!r}; choose one of {list(SHORTCUT_KINDS)}")
    return _KINDS[kind](rng, lung_mask)


__all__ = ["SHORTCUT_KINDS", "STAMP_WORDS", "Shortcut", "ShortcutKind", "draw_shortcut", "glyph", "text_bitmap"]
