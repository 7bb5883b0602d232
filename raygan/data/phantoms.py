"""Synthetic chest X-ray phantoms: the embedded default data, and the only data with ground truth.

Each phantom is a frontal (PA) chest radiograph built from a sum of tissue densities on a
normalised [0, 1]^2 grid: soft-tissue thorax, two dark lung fields, heart and mediastinum,
diaphragm domes, clavicles and ribs, lung texture; then a random exposure (gain, gamma, offset)
and noise. Lesions are ground-glass-like opacities clipped to the lung fields, with their
masks; a burned-in shortcut (`raygan.data.shortcuts`: a corner marker or a text stamp) is a
planted cue a classifier can learn instead. How each cue goes with the label y is the phantom
world (`WORLDS`): lesions exactly when y = 1 with the shortcut as a distractor, the shortcut
carrying the label with lesions as the distractor, or both.

Interventional ground truth: every phantom is rendered together with its twins, the same
phantom without the shortcut, without the lesions and without both. They share anatomy,
exposure and noise; a twin differs from the phantom only where the removed cue acts (the
shortcut's mask; the lesions' footprint, where their opacity is non-zero). So what a classifier
relies on can be measured by intervention: p(phantom) - p(twin).

Image i depends only on (seed, i): its cues come from `SeedSequence([seed, i, 0])` and its
pixels from `SeedSequence([seed, i, 1])`, so it is the same whatever n is, however the rows are
split into shards, and its anatomy is the same in every world.
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
from raygan.data.shortcuts import SHORTCUT_KINDS, ShortcutKind, draw_shortcut

MIN_SIZE = 16  # below this the anatomy and the shortcut glyphs no longer resolve
LESION_REACH = 1.8  # an opacity's soft edge ends at this normalised radius (1 = the mask border)


@dataclass(frozen=True)
class CueRates:
    """How the cues go with the label y in one world: P(cue | y)."""

    lesion_given_positive: float  # P(lesions | y = 1)
    lesion_given_negative: float  # P(lesions | y = 0)
    shortcut_given_positive: float  # P(shortcut | y = 1)
    shortcut_given_negative: float  # P(shortcut | y = 0)


# The fidelity benchmark's worlds (issue 10): in each, one cue carries the label and the other
# is present at random as a distractor (or both carry it), so "does not rely" is a real verdict.
WORLDS: dict[str, CueRates] = {
    "lesion_only": CueRates(1.0, 0.0, 0.5, 0.5),
    "shortcut_only": CueRates(0.5, 0.5, 0.95, 0.05),
    "mixed": CueRates(1.0, 0.0, 0.8, 0.2),
}


@dataclass(frozen=True)
class PhantomConfig:
    """What `raygan phantoms` generates and how it is written (the defaults: the demo's mixed world)."""

    n: int = 2000  # number of phantoms (rows)
    size: int = 128  # side of the square images in pixels
    seed: int = 0  # root seed; image i uses SeedSequence([seed, i, ...])
    positive_fraction: float = 0.5  # P(y = 1)
    shortcut_kind: ShortcutKind = "marker"  # the planted shortcut: "marker" (corner glyph) or "stamp" (text)
    lesion_given_positive: float = 1.0  # P(lesions | y = 1)
    lesion_given_negative: float = 0.0  # P(lesions | y = 0)
    shortcut_given_positive: float = 0.8  # P(shortcut | y = 1)
    shortcut_given_negative: float = 0.2  # P(shortcut | y = 0); equal to the line above = uncorrelated
    rows_per_shard: int = 1000  # rows per Parquet shard

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")
        if self.size < MIN_SIZE:
            raise ValueError(f"size must be >= {MIN_SIZE}, got {self.size}")
        for name in ("positive_fraction", "lesion_given_positive", "lesion_given_negative",
                     "shortcut_given_positive", "shortcut_given_negative"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.shortcut_kind not in SHORTCUT_KINDS:
            raise ValueError(f"shortcut_kind must be one of {list(SHORTCUT_KINDS)}, got {self.shortcut_kind!r}")
        if self.rows_per_shard < 1:
            raise ValueError(f"rows_per_shard must be >= 1, got {self.rows_per_shard}")


def world_config(world: str, **fields: Any) -> PhantomConfig:
    """The PhantomConfig of a named world (`WORLDS`), with other fields (n, size, seed, shortcut_kind...)."""
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}; choose one of {sorted(WORLDS)}")
    return PhantomConfig(**dataclasses.asdict(WORLDS[world]), **fields)


@dataclass(frozen=True)
class Phantom:
    """One rendered phantom, its twins and its ground truth (images [S, S] uint8, masks [S, S] bool)."""

    image: np.ndarray  # the radiograph
    label: int  # y: 1 = positive, 0 = negative (what the world says; see `lesions` and `shortcut_mask`)
    mask: np.ndarray  # lesion pixels (all False without lesions)
    lung_mask: np.ndarray  # both lung fields
    shortcut_mask: np.ndarray  # burned-in shortcut pixels (all False when absent)
    lesion_footprint: np.ndarray  # pixels the lesions change: where their opacity is non-zero (covers `mask`)
    no_shortcut: np.ndarray  # twin: the same phantom without the shortcut (== image where it has none)
    no_lesions: np.ndarray  # twin: the same phantom without the lesions (== image where it has none)
    clean: np.ndarray  # twin: without both
    shortcut_kind: str  # the kind of shortcut this phantom's world plants ("marker", "stamp")

    @property
    def lesions(self) -> bool:
        """Whether the phantom carries lesions."""
        return bool(self.mask.any())

    @property
    def shortcut(self) -> bool:
        """Whether the phantom carries the shortcut."""
        return bool(self.shortcut_mask.any())

    def twin(self, cue: str) -> np.ndarray:
        """The twin without `cue`: "shortcut", "lesions" or "both"."""
        twins = {"shortcut": self.no_shortcut, "lesions": self.no_lesions, "both": self.clean}
        if cue not in twins:
            raise ValueError(f"unknown cue {cue!r}; choose one of {sorted(twins)}")
        return twins[cue]


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
    blobs' cores clipped to the lungs, so it is never empty and never leaves a lung field. The soft
    edge tapers to exactly 0 at LESION_REACH, so the lesions' footprint (fill > 0) is bounded.
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
        taper = np.clip((LESION_REACH - q) / 0.5, 0.0, 1.0)  # 0 beyond LESION_REACH: a bounded footprint
        envelope = _sigmoid((1.0 - q) / 0.18) * taper  # soft edge, about 0.5 at q = 1 (the mask border)
        fill = np.maximum(fill, rng.uniform(0.5, 0.85) * envelope * (0.35 + 0.65 * glass))
        mask |= q < 1.0
    return fill * lung_mask, mask & lung_mask


def render_phantom(
    rng: np.random.Generator, *, size: int, label: int, lesions: bool, shortcut: bool, kind: ShortcutKind = "marker"
) -> Phantom:
    """Render one phantom and its twins; all randomness comes from `rng` (pure given its state).

    The lesions and the shortcut are drawn whether or not the phantom carries them, so `rng` is
    consumed the same way in every case and the twins share everything else with the phantom.
    """
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

    # Opacities: ground glass fills part of the lung air back in (drawn always, added when carried).
    opacity, lesion_mask = _opacities(rng, lung_mask)
    lesion_density = air * opacity  # never denser than the surrounding tissue

    # Exposure: global gain, offset and gamma, then quantum noise with a little grain (all pointwise,
    # so a twin without the lesions differs only where their opacity is non-zero).
    gain, offset, gamma = u(1.1, 1.5), u(-0.08, 0.08), u(0.75, 1.35)
    noise = u(0.01, 0.035) * rng.standard_normal((size, size), dtype=np.float32)
    noise += 0.015 * _smooth_noise(rng, size, sigma_px=0.7)

    # Shortcut: burned in on top of everything (drawn always, applied when carried).
    overlay = draw_shortcut(rng, lung_mask, kind=kind)

    def expose(d: np.ndarray) -> np.ndarray:
        return np.clip(np.clip(d, 0.0, None) * gain + offset, 0.0, 1.0) ** gamma + noise

    level = overlay.burned_level(expose(density))  # judged on the clean picture: the same in every twin

    def compose(with_lesions: bool, with_shortcut: bool) -> np.ndarray:
        image = expose(density + lesion_density if with_lesions else density)
        if with_shortcut:
            image = np.where(overlay.mask, level, image)
        return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)

    empty = np.zeros((size, size), dtype=bool)
    return Phantom(
        image=compose(lesions, shortcut), label=int(label), mask=lesion_mask if lesions else empty,
        lung_mask=lung_mask, shortcut_mask=overlay.mask if shortcut else empty,
        lesion_footprint=opacity > 0 if lesions else empty, no_shortcut=compose(lesions, False),
        no_lesions=compose(False, shortcut), clean=compose(False, False), shortcut_kind=kind,
    )


# --- rows and shards ----------------------------------------------------------------------------


def phantom_at(config: PhantomConfig, index: int) -> Phantom:
    """Phantom number `index` of a config: its label, cues and pixels depend on (seed, index) only."""
    assert index >= 0, f"index must be >= 0, got {index}"
    cues = np.random.default_rng(np.random.SeedSequence([config.seed, index, 0]))
    positive = bool(cues.random() < config.positive_fraction)
    lesions = bool(cues.random() < (config.lesion_given_positive if positive else config.lesion_given_negative))
    shortcut = bool(cues.random() < (config.shortcut_given_positive if positive else config.shortcut_given_negative))
    pixels = np.random.default_rng(np.random.SeedSequence([config.seed, index, 1]))
    return render_phantom(pixels, size=config.size, label=int(positive), lesions=lesions, shortcut=shortcut,
                          kind=config.shortcut_kind)


def phantom_id(index: int) -> str:
    """The image_id of phantom number `index`."""
    return f"phantom-{index:06d}"


def phantom_row(index: int, phantom: Phantom) -> dict[str, Any]:
    """One input-shard row (image_id, image, label, mask, lung_mask, shortcut_mask, shortcut_kind), images as PNG."""
    return {
        "image_id": phantom_id(index),
        "image": encode_png(phantom.image),
        "label": phantom.label,
        "mask": encode_png(phantom.mask),
        "lung_mask": encode_png(phantom.lung_mask),
        "shortcut_mask": encode_png(phantom.shortcut_mask),
        "shortcut_kind": phantom.shortcut_kind if phantom.shortcut else None,
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
    """A labelled RGB grid of phantoms: lung outline in green, lesion outline in red, shortcut box in yellow."""
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
        if ph.shortcut:
            ys, xs = np.nonzero(ph.shortcut_mask)
            box = (x0 + xs.min() - 1, y0 + ys.min() - 1, x0 + xs.max() + 1, y0 + ys.max() + 1)
            draw.rectangle(box, outline=(255, 220, 0))
        text = ("positive" if ph.label == 1 else "negative") + (f" + {ph.shortcut_kind}" if ph.shortcut else "")
        draw.text((x0 + 2, y0 + size), text, fill=(255, 255, 255))
    return sheet
