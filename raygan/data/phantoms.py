"""Synthetic chest X-ray phantoms: the embedded default data, and the only data with ground truth.

Each phantom is a frontal (PA) chest radiograph built from a sum of tissue densities on a
normalised [0, 1]^2 grid: soft-tissue thorax, two dark lung fields, heart and mediastinum,
diaphragm domes, clavicles and ribs, lung texture; then a random exposure (gain, gamma, offset)
and noise. Positives carry ground-glass-like opacities clipped to the lung fields, with their
masks. A burned-in corner marker ("L", "R" or a square) is a planted shortcut whose correlation
with the label is set by `shortcut_rate`, so an explanation can be checked against the truth.

Image i depends only on (seed, i): its generator is `default_rng(SeedSequence([seed, i]))`,
so it is the same whatever n is and however the rows are split into shards.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from raygan import storage
from raygan.data.codec import encode_png
from raygan.data.shards import write_shards

MIN_SIZE = 16  # below this the anatomy and the marker glyph no longer resolve


@dataclass(frozen=True)
class PhantomConfig:
    """What `raygan phantoms` generates and how it is written."""

    n: int = 2000  # number of phantoms (rows)
    size: int = 128  # side of the square images in pixels
    seed: int = 0  # root seed; image i uses SeedSequence([seed, i])
    positive_fraction: float = 0.5  # probability that a phantom carries opacities (label 1)
    shortcut_rate: float = 0.5  # P(marker | positive); P(marker | negative) = 1 - rate; 0.5 = no correlation
    rows_per_shard: int = 1000  # rows per Parquet shard

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")
        if self.size < MIN_SIZE:
            raise ValueError(f"size must be >= {MIN_SIZE}, got {self.size}")
        for name in ("positive_fraction", "shortcut_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.rows_per_shard < 1:
            raise ValueError(f"rows_per_shard must be >= 1, got {self.rows_per_shard}")


@dataclass(frozen=True)
class Phantom:
    """One rendered phantom and its ground truth."""

    image: np.ndarray  # [S, S] uint8, the radiograph
    label: int  # 1 = positive (carries opacities), 0 = negative
    mask: np.ndarray  # [S, S] bool, lesion pixels (all False for negatives)
    lung_mask: np.ndarray  # [S, S] bool, both lung fields
    marker_mask: np.ndarray  # [S, S] bool, burned-in marker pixels (all False when absent)


# --- numpy helpers ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1]: x grows to the right, y grows downwards."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = np.meshgrid(c, c, indexing="ij")  # [S, S] each
    xx.flags.writeable = False
    yy.flags.writeable = False
    return xx, yy


@functools.lru_cache(maxsize=32)
def _gaussian_transfer(size: int, sigma_px: float) -> np.ndarray:
    """Fourier transform of a Gaussian blur of `sigma_px` pixels on the rfft2 grid."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    transfer = np.exp(-2.0 * (np.pi * sigma_px) ** 2 * (fx**2 + fy**2)).astype(np.float32)  # [S, S // 2 + 1]
    transfer.flags.writeable = False
    return transfer


def _smooth_noise(rng: np.random.Generator, size: int, sigma_px: float) -> np.ndarray:
    """White noise blurred by a Gaussian of `sigma_px` pixels (via FFT), zero mean, unit std.

    The FFT blur wraps around the edges; that is harmless for a texture.
    """
    white = rng.standard_normal((size, size), dtype=np.float32)
    field = np.fft.irfft2(np.fft.rfft2(white) * _gaussian_transfer(size, sigma_px), s=(size, size))
    field = field.astype(np.float32, copy=False)
    field -= field.mean()
    return field / (field.std() + 1e-8)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


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


def _glyph(kind: str, side: int) -> np.ndarray:
    """Rasterise a marker glyph into a [side, side] bool array, strokes at least one pixel wide."""
    c = (np.arange(side, dtype=np.float32) + 0.5) / side
    gy, gx = np.meshgrid(c, c, indexing="ij")  # [g, g]
    if kind == "square":
        return (np.abs(gx - 0.5) < 0.35) & (np.abs(gy - 0.5) < 0.35)
    half = max(0.5 / side + 1e-3, 0.09)  # half stroke width: a pixel at least
    dist = np.min([_segment_distance(gx, gy, a, b) for a, b in _GLYPHS[kind]], axis=0)
    return dist <= half


# --- rendering ----------------------------------------------------------------------------------


def _ellipse_q(xx: np.ndarray, yy: np.ndarray, ellipse: tuple[float, float, float, float, float]) -> np.ndarray:
    """Normalised radius of a tilted ellipse (cx, cy, rx, ry, angle): < 1 inside, 1 on the border."""
    cx, cy, rx, ry, angle = ellipse
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = xx - cx, yy - cy
    return np.sqrt(((c * dx + s * dy) / rx) ** 2 + ((c * dy - s * dx) / ry) ** 2)


def _lung_field(
    xx: np.ndarray, yy: np.ndarray, *, side: int, medial: float, lateral: float, top: float, dome: float,
    dome_curve: float, heart_q: np.ndarray, heart_r: float,
) -> np.ndarray:
    """Signed field (negative inside, ~normalised units) of one lung: an intersection of limits.

    side = -1 is the image left (patient's right lung), +1 the image right (patient's left).
    """
    lat = side * (xx - 0.5)  # distance from the midline towards this lung's outside
    depth = np.clip((yy - top) / (dome - top), 0.0, 1.0)
    outer = lateral * (1.0 - 0.5 * (1.0 - depth) ** 2)  # narrow apex, widest at the base
    apex_at = medial + 0.4 * (lateral - medial)
    dome_at = 0.5 * (medial + lateral)
    limits = [
        medial - lat,  # medial edge along the mediastinum
        lat - outer,  # lateral edge (rib cage)
        top + 3.5 * (lat - apex_at) ** 2 - yy,  # rounded apex
        yy - (dome + dome_curve * (lat - dome_at) ** 2),  # diaphragm dome, deep costophrenic angle
    ]
    limits.append((1.0 - heart_q) * heart_r)  # the heart borders cut into both lungs
    return np.max(limits, axis=0)


def _opacities(rng: np.random.Generator, lung_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ground-glass opacities: (fill in [0, 1] of the lung air [S, S], lesion mask [S, S] bool).

    One to four soft-edged blobs of smoothed noise, each centred on a lung pixel; the mask is the
    blobs' cores clipped to the lungs, so it is never empty and never leaves a lung field.
    """
    size = lung_mask.shape[0]
    gx, gy = _grid(size)  # [S, S]
    ys, xs = np.nonzero(lung_mask)
    assert ys.size > 0, "the lung fields came out empty"
    glass = _sigmoid(2.0 * _smooth_noise(rng, size, sigma_px=max(0.7, 0.015 * size)))
    fill = np.zeros((size, size), dtype=np.float32)
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(1 + min(int(rng.poisson(0.8)), 3)):
        k = rng.integers(ys.size)
        ox, oy = gx[ys[k], xs[k]], gy[ys[k], xs[k]]
        radius = rng.uniform(0.05, 0.12)
        rx, ry = radius * rng.uniform(0.7, 1.3), radius * rng.uniform(0.7, 1.3)
        q = np.sqrt(((gx - ox) / rx) ** 2 + ((gy - oy) / ry) ** 2)
        envelope = _sigmoid((1.0 - q) / 0.18)  # soft edge, 0.5 at q = 1 (the mask border)
        fill = np.maximum(fill, rng.uniform(0.5, 0.85) * envelope * (0.35 + 0.65 * glass))
        mask |= q < 1.0
    return fill * lung_mask, mask & lung_mask


def _marker_mask(rng: np.random.Generator, lung_mask: np.ndarray) -> np.ndarray:
    """A glyph ("L", "R" or a square) in a random corner, as a [S, S] bool mask.

    Corners whose box touches a lung are avoided, so the shortcut never covers the lung truth.
    """
    size = lung_mask.shape[0]
    side = max(5, round(0.11 * size))
    margin = max(1, round(0.03 * size)) + int(rng.integers(0, max(1, round(0.03 * size)) + 1))
    glyph = _glyph(("L", "R", "square")[int(rng.integers(3))], side)
    near, far = margin, size - margin - side
    corners = [(r0, c0) for r0 in (near, far) for c0 in (near, far)]
    free = [(r0, c0) for r0, c0 in corners if not lung_mask[r0 : r0 + side, c0 : c0 + side].any()] or corners
    r0, c0 = free[int(rng.integers(len(free)))]
    mask = np.zeros((size, size), dtype=bool)
    mask[r0 : r0 + side, c0 : c0 + side] = glyph
    return mask


def render_phantom(rng: np.random.Generator, *, size: int, positive: bool, marker: bool) -> Phantom:
    """Render one phantom; all randomness comes from `rng` (pure given its state)."""
    assert size >= MIN_SIZE, f"size must be >= {MIN_SIZE}, got {size}"
    u = rng.uniform
    gx, gy = _grid(size)  # [S, S]
    px = 1.0 / size  # one pixel in normalised units

    # Patient pose: small rotation, scale and shift, applied to the sampling grid.
    theta = math.radians(u(-4.0, 4.0))
    scale = u(0.92, 1.08)
    cx, cy = 0.5 + u(-0.03, 0.03), 0.5 + u(-0.03, 0.03)
    ct, st = math.cos(theta), math.sin(theta)  # Python floats keep the arrays float32
    xx = ((gx - cx) * ct - (gy - cy) * st) / scale + 0.5
    yy = ((gx - cx) * st + (gy - cy) * ct) / scale + 0.5
    lat = np.abs(xx - 0.5)
    edge = 1.2 * px / scale  # soft edges about a pixel wide

    # Thorax: elliptical soft-tissue cross-section, brightest in the middle; neck at the top.
    shoulders = 0.06 * np.exp(-0.5 * ((yy - 0.1) / 0.07) ** 2)
    neck = 0.25 * np.exp(-np.clip(yy, 0.0, None) / u(0.02, 0.04))
    body_half = np.clip(u(0.40, 0.48) + 0.05 * yy + shoulders - neck, 0.05, None)
    body = np.sqrt(np.clip(1.0 - (lat / body_half) ** 2, 0.0, 1.0))
    density = 0.55 * body**0.7

    # Heart (patient's left = image right) and mediastinum, spine and a dark trachea.
    heart = (0.5 + u(0.05, 0.08), u(0.61, 0.67), u(0.16, 0.20), u(0.11, 0.14), math.radians(u(15.0, 30.0)))
    heart_q = _ellipse_q(xx, yy, heart)  # [S, S], 1 on the heart border
    density += 0.12 * np.sqrt(np.clip(1.0 - heart_q**2, 0.0, 1.0))
    mid = xx - 0.5 - u(-0.01, 0.01)
    density += 0.14 * np.exp(-0.5 * (mid / u(0.05, 0.065)) ** 2) * _sigmoid((0.75 - yy) / 0.03)
    spine = np.exp(-0.5 * (mid / 0.022) ** 2)
    density += 0.07 * spine * (1.0 + 0.3 * np.cos(2 * np.pi * yy / u(0.07, 0.09)))
    carina = u(0.30, 0.36)
    density -= 0.12 * np.exp(-0.5 * (mid / 0.011) ** 2) * _sigmoid((carina - yy) / 0.02)

    # Lungs: dark fields, darkest away from their borders; right dome higher (liver under it).
    top = u(0.12, 0.19)
    medial = u(0.06, 0.09)
    lungs_f = []
    domes = []
    for side in (-1, 1):
        dome = u(0.68, 0.76) + (0.02 if side == 1 else 0.0)
        dome_curve = u(2.0, 3.5)
        lateral = u(0.37, 0.43)
        lungs_f.append(
            _lung_field(xx, yy, side=side, medial=medial, lateral=lateral, top=top + u(-0.02, 0.02),
                        dome=dome, dome_curve=dome_curve, heart_q=heart_q, heart_r=min(heart[2], heart[3]))
        )
        domes.append(dome + dome_curve * (side * (xx - 0.5) - 0.5 * (medial + lateral)) ** 2)
    lung_f = np.minimum(*lungs_f)
    lung_mask = lung_f < 0.0
    lung_soft = _sigmoid(-lung_f / edge)
    lung_depth = np.sqrt(np.clip(-lung_f / 0.06, 0.0, 1.0))
    air = u(0.30, 0.38) * lung_soft * (0.55 + 0.45 * lung_depth)  # density the lung air removes
    density -= air

    # Diaphragm domes: dense abdomen below them.
    dome_y = np.minimum(*domes)  # the domes meet in a cusp hidden by the heart
    density += 0.12 * body * _sigmoid((yy - dome_y) / edge)

    # Hila and vascular texture: brighter near the hila, mottled everywhere in the lungs.
    hila = np.exp(-0.5 * (((lat - medial - 0.05) / 0.05) ** 2 + ((yy - 0.45) / 0.08) ** 2))
    texture = _smooth_noise(rng, size, sigma_px=max(0.8, 0.012 * size))
    density += lung_soft * (0.10 * hila + 0.035 * texture * (0.5 + hila))

    # Bones: clavicles and posterior ribs (∩ arcs, a periodic band in a curved coordinate) and
    # fainter anterior ribs sloping down towards the midline; visible over the rib cage only.
    for side in (-1, 1):
        a = (0.5 + side * 0.07, u(0.17, 0.21))
        b = (0.5 + side * u(0.30, 0.36), u(0.09, 0.13))
        clav = _segment_distance(xx, yy, a, b)
        density += 0.11 * np.exp(-0.5 * (clav / 0.016) ** 2)
    cage = _sigmoid((0.44 - lat) / 0.02) * _sigmoid((dome_y + 0.05 - yy) / 0.03) * _sigmoid((lat - 0.04) / 0.01)
    spacing = u(0.065, 0.08)
    phase = (yy - 2.2 * (lat - 0.12) ** 2 - u(0.0, 1.0) * spacing) / spacing
    posterior = np.exp(-0.5 * ((phase - np.round(phase)) / 0.14) ** 2)
    phase_a = (yy + 0.55 * lat - u(0.0, 1.0) * spacing) / (1.3 * spacing)
    anterior = np.exp(-0.5 * ((phase_a - np.round(phase_a)) / 0.1) ** 2)
    density += cage * (0.5 + 0.5 * lung_soft) * (0.06 * posterior + 0.03 * anterior)

    # Opacities (positives): ground glass fills part of the lung air back in.
    mask = np.zeros((size, size), dtype=bool)
    if positive:
        opacity, mask = _opacities(rng, lung_mask)
        density += air * opacity  # never denser than the surrounding tissue

    # Exposure: global gain, offset and gamma, then quantum noise with a little grain.
    image = np.clip(density, 0.0, None) * u(1.1, 1.5) + u(-0.08, 0.08)
    image = np.clip(image, 0.0, 1.0) ** u(0.75, 1.35)
    image += u(0.01, 0.035) * rng.standard_normal((size, size), dtype=np.float32)
    image += 0.015 * _smooth_noise(rng, size, sigma_px=0.7)

    # Marker: burned in on top of everything, pure white-ish.
    marker_mask = _marker_mask(rng, lung_mask) if marker else np.zeros((size, size), dtype=bool)
    image = np.where(marker_mask, u(0.88, 1.0), image)

    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Phantom(image=pixels, label=int(positive), mask=mask, lung_mask=lung_mask, marker_mask=marker_mask)


# --- rows and shards ----------------------------------------------------------------------------


def phantom_at(config: PhantomConfig, index: int) -> Phantom:
    """Phantom number `index` of a config: its label, marker and pixels depend on (seed, index) only."""
    assert index >= 0, f"index must be >= 0, got {index}"
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, index]))
    positive = bool(rng.random() < config.positive_fraction)
    # The planted shortcut: P(marker | positive) = rate, P(marker | negative) = 1 - rate.
    marker = bool(rng.random() < (config.shortcut_rate if positive else 1.0 - config.shortcut_rate))
    return render_phantom(rng, size=config.size, positive=positive, marker=marker)


def phantom_row(index: int, phantom: Phantom) -> dict[str, Any]:
    """One input-shard row (image_id, image, label, mask, lung_mask, marker_mask), images as PNG."""
    return {
        "image_id": f"phantom-{index:06d}",
        "image": encode_png(phantom.image),
        "label": phantom.label,
        "mask": encode_png(phantom.mask),
        "lung_mask": encode_png(phantom.lung_mask),
        "marker_mask": encode_png(phantom.marker_mask),
    }


def iter_phantom_rows(config: PhantomConfig) -> Iterator[dict[str, Any]]:
    """Input-shard rows for phantoms 0 .. n-1, rendered lazily (one at a time in memory)."""
    for index in range(config.n):
        yield phantom_row(index, phantom_at(config, index))


def write_phantoms(config: PhantomConfig, out: str, *, settings: storage.StorageSettings | None = None) -> list[str]:
    """Render `config.n` phantoms into Parquet shards under `out`; returns the shard URIs.

    Writes `phantoms.json` (the config) beside the shards once they are complete.
    """
    rows = tqdm(iter_phantom_rows(config), total=config.n, desc="phantoms", unit="img")
    shards = write_shards(rows, out, rows_per_shard=config.rows_per_shard, settings=settings)
    storage.write_json(storage.join(out, "phantoms.json"), dataclasses.asdict(config), settings)
    return shards


# --- montage ------------------------------------------------------------------------------------


def _outline(mask: np.ndarray) -> np.ndarray:
    """Border pixels of a bool mask: in the mask with a 4-neighbour outside it."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def montage(phantoms: Sequence[Phantom], *, columns: int) -> Image.Image:
    """A labelled RGB grid of phantoms: lung outline in green, lesion outline in red, marker box in yellow."""
    assert len(phantoms) > 0 and columns > 0
    size = phantoms[0].image.shape[0]
    caption = 12
    rows = -(-len(phantoms) // columns)
    sheet = Image.new("RGB", (columns * size, rows * (size + caption)), "black")
    draw = ImageDraw.Draw(sheet)
    for i, ph in enumerate(phantoms):
        assert ph.image.shape == (size, size), f"all phantoms must be {size}x{size}, got {ph.image.shape}"
        tile = np.repeat(ph.image[:, :, None], 3, axis=2)  # [S, S, 3]
        tile[_outline(ph.lung_mask)] = (0, 160, 0)
        tile[_outline(ph.mask)] = (255, 40, 40)
        x0, y0 = (i % columns) * size, (i // columns) * (size + caption)
        sheet.paste(Image.fromarray(tile), (x0, y0))
        if ph.marker_mask.any():
            ys, xs = np.nonzero(ph.marker_mask)
            box = (x0 + xs.min() - 1, y0 + ys.min() - 1, x0 + xs.max() + 1, y0 + ys.max() + 1)
            draw.rectangle(box, outline=(255, 220, 0))
        text = "positive" if ph.label == 1 else "negative"
        draw.text((x0 + 2, y0 + size), text + (" + marker" if ph.marker_mask.any() else ""), fill=(255, 255, 255))
    return sheet
