"""Figures: the traversal strip and the paper's Figure 2 for one explained image, as PIL images.

Figure 2 of the paper has three rows: (a) the original, its reconstruction G(z1, z2) and the
counterfactual G(z1, 0), each with the classifier's p(positive) below; (b) the traversal
G(z1, alpha * z2) with p below each frame; (c) the difference |G(z1, z2) - G(z1, 0)| beside
Grad-CAM (we add Integrated Gradients). `explanation_figure` draws exactly that, with a header
naming the image and the traversal's summary statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from raygan.render.images import (
    as_pil, colorbar, draw_centered, font, heatmap, text_width, tile_side, to_numpy, upscale,
)

PAD = 16  # outer margin of a figure, px
GAP = 8  # space between tiles, px
SECTION_GAP = 18  # space between the figure's rows, px
STRIP_MIN = 96  # traversal frames are upscaled to at least this many pixels
LARGE_MIN = 160  # rows (a) and (c) are upscaled to at least this many pixels

INK = "#1f2328"  # main text
MUTED = "#59636e"  # secondary text
POSITIVE = "#b2182b"  # p >= 0.5 (the classifier says positive)
NEGATIVE = "#2166ac"  # p < 0.5
TRACK = "#e4e7eb"  # empty part of a probability bar
BACKGROUND = "white"

MAP_TITLES = {"diff": "difference", "gradcam": "Grad-CAM", "ig": "Integrated Gradients", "path": "traversal attribution",
              "swap": "counterfactual swap"}


def fmt_p(p: float) -> str:
    """'p=0.93'; 'p=n/a' for a missing value."""
    return "p=n/a" if p is None or not math.isfinite(p) else f"p={p:.2f}"


def fmt_alpha(alpha: float) -> str:
    """'α=0.4', 'α=1', 'α=0.25': the shortest exact-looking form of a traversal step."""
    text = f"{alpha:.2f}".rstrip("0").rstrip(".")
    return f"α={'0' if text in ('', '-0') else text}"


def p_colour(p: float) -> str:
    """Red where the classifier says positive, blue where it says negative."""
    return POSITIVE if p is not None and math.isfinite(p) and p >= 0.5 else NEGATIVE


def _canvas(width: int, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (max(1, width), max(1, height)), BACKGROUND)
    return img, ImageDraw.Draw(img)


def stack(parts: Sequence[Image.Image], *, gap: int, pad: int) -> Image.Image:
    """Parts one below the other, left-aligned, on a white canvas with a `pad` margin."""
    width = max(p.width for p in parts) + 2 * pad
    height = sum(p.height for p in parts) + gap * (len(parts) - 1) + 2 * pad
    out, _ = _canvas(width, height)
    y = pad
    for part in parts:
        out.paste(part, (pad, y))
        y += part.height + gap
    return out


def text_block(lines: Sequence[tuple[str, int, bool, str]]) -> Image.Image:
    """Lines of (text, font size, bold, colour), left-aligned."""
    faces = [font(size, bold=bold) for _, size, bold, _ in lines]
    width = max(text_width(text, f) for (text, *_), f in zip(lines, faces, strict=True))
    heights = [round(size * 1.35) for _, size, _, _ in lines]
    img, draw = _canvas(width, sum(heights))
    y = 0
    for (text, _, _, colour), face, h in zip(lines, faces, heights, strict=True):
        draw.text((0, y), text, font=face, fill=colour)
        y += h
    return img


def _strip_body(frames: np.ndarray, probs: Sequence[float], alphas: Sequence[float], *, side: int) -> Image.Image:
    """Frames side by side; under each a probability bar, 'p=..' and 'α=..'."""
    n = frames.shape[0]
    size = max(12, min(16, round(side * 0.13)))
    bold, plain = font(size, bold=True), font(size)
    bar_y, bar_h = side + 5, 4
    p_y = bar_y + bar_h + 4
    a_y = p_y + round(size * 1.3)
    img, draw = _canvas(n * side + (n - 1) * GAP, a_y + round(size * 1.3))
    for i in range(n):
        x = i * (side + GAP)
        p, alpha = float(probs[i]), float(alphas[i])
        img.paste(upscale(as_pil(frames[i]), side), (x, 0))
        # A bar per frame turns the row of numbers into a curve the eye reads at a glance.
        draw.rectangle((x, bar_y, x + side - 1, bar_y + bar_h - 1), fill=TRACK)
        if math.isfinite(p) and p > 0:
            draw.rectangle((x, bar_y, x + max(1, round(side * min(p, 1.0))) - 1, bar_y + bar_h - 1), fill=p_colour(p))
        draw_centered(draw, fmt_p(p), x=x, y=p_y, width=side, face=bold, fill=p_colour(p))
        draw_centered(draw, fmt_alpha(alpha), x=x, y=a_y, width=side, face=plain, fill=MUTED)
    return img


def _check_traversal(frames: np.ndarray, probs: Sequence[float], alphas: Sequence[float]) -> None:
    assert frames.ndim == 4 and frames.shape[1] in (1, 3), f"frames must be [F, C, S, S], got {frames.shape}"
    assert frames.shape[0] >= 1, "a traversal needs at least one frame"
    assert len(probs) == frames.shape[0] == len(alphas), (
        f"{frames.shape[0]} frames but {len(probs)} probabilities and {len(alphas)} alphas"
    )


def traversal_strip(frames: Any, probs: Sequence[float], alphas: Sequence[float], *,
                    min_tile: int = STRIP_MIN) -> Image.Image:
    """Frames [F, C, S, S] in [-1, 1] in a row, each upscaled to >= min_tile px, with 'p=..' and 'α=..' below."""
    frames = to_numpy(frames)  # [F, C, S, S]
    probs, alphas = [float(p) for p in to_numpy(probs)], [float(a) for a in to_numpy(alphas)]
    _check_traversal(frames, probs, alphas)
    body = _strip_body(frames, probs, alphas, side=tile_side(frames.shape[-1], min_tile))
    return stack([body], gap=0, pad=GAP)


def tile_row(tiles: Sequence[tuple[str, Image.Image, str | None, str]], *, side: int,
              trailer: Image.Image | None = None) -> Image.Image:
    """Tiles with a title above and an optional coloured note (a probability) below; `trailer` after the last."""
    size = max(13, min(16, round(side * 0.08)))
    title_face, note_face = font(size), font(size + 1, bold=True)
    title_h, note_h = round(size * 1.5), round(size * 1.6)
    has_note = any(note is not None for _, _, note, _ in tiles)
    width = len(tiles) * side + (len(tiles) - 1) * GAP + (trailer.width + GAP if trailer is not None else 0)
    img, draw = _canvas(width, title_h + side + (note_h + 4 if has_note else 0))
    for i, (title, tile, note, colour) in enumerate(tiles):
        x = i * (side + GAP)
        draw_centered(draw, title, x=x, y=0, width=side, face=title_face, fill=MUTED)
        img.paste(upscale(tile, side), (x, title_h))
        if note is not None:
            draw_centered(draw, note, x=x, y=title_h + side + 4, width=side, face=note_face, fill=colour)
    if trailer is not None:
        img.paste(trailer, (width - trailer.width, title_h))
    return img


def legend(height: int, *, top: str = "high", bottom: str = "low") -> Image.Image:
    """Colour bar with `top` and `bottom` written beside its ends, for a row of maps."""
    face = font(12)
    bar = colorbar(height)
    img, draw = _canvas(bar.width + 6 + max(text_width(top, face), text_width(bottom, face)), height)
    img.paste(bar, (0, 0))
    draw.text((bar.width + 6, 0), top, font=face, fill=MUTED)
    draw.text((bar.width + 6, height - 14), bottom, font=face, fill=MUTED)
    return img


def _stats_line(expl: Any) -> str:
    crossing = expl.crossing_alpha
    crosses = (
        "never reaches 0.5" if crossing is None or not math.isfinite(float(crossing))
        else f"reaches 0.5 at α={float(crossing):.2f}"
    )
    fallback = ""
    if getattr(expl, "used_fallback", False):  # z2 was ~0: the traversal walked the mean positive direction
        fallback = "   ·   walked the mean positive direction (z₂ ≈ 0)"
    return (
        f"monotone: {'yes' if expl.monotone else 'no'}   ·   Spearman ρ={float(expl.spearman):.2f}   ·   "
        f"p {crosses}   ·   reconstruction MSE {float(expl.recon_mse):.4f}, SSIM {float(expl.recon_ssim):.3f}"
        + fallback
    )


def explanation_figure(expl: Any, *, min_tile: int = STRIP_MIN, min_large: int = LARGE_MIN,
                       header: bool = True) -> Image.Image:
    """The paper's Figure 2 for one Explanation (any object with its fields): rows (a), (b), (c).

    `header` adds the image_id and the traversal's statistics on top, so a stored figure stands alone;
    a report that prints them in HTML leaves it out.
    """
    image = to_numpy(expl.image)  # [C, S, S]
    assert image.ndim == 3, f"Explanation.image must be [C, S, S], got {image.shape}"
    frames = to_numpy(expl.traversal_frames)  # [F, C, S, S]
    probs = [float(p) for p in expl.traversal_probs]
    alphas = [float(a) for a in expl.traversal_alphas]
    _check_traversal(frames, probs, alphas)
    large = tile_side(image.shape[-1], min_large)

    row_a = tile_row(
        [
            ("original", as_pil(image), fmt_p(float(expl.p_input)), p_colour(float(expl.p_input))),
            ("reconstruction", as_pil(expl.reconstruction), fmt_p(float(expl.p_reconstruction)),
             p_colour(float(expl.p_reconstruction))),
            ("counterfactual", as_pil(expl.counterfactual), fmt_p(float(expl.p_counterfactual)),
             p_colour(float(expl.p_counterfactual))),
        ],
        side=large,
    )
    row_b = _strip_body(frames, probs, alphas, side=tile_side(frames.shape[-1], min_tile))

    maps = dict(getattr(expl, "maps", None) or {})
    others = [n for n in maps if n != "diff"]  # Grad-CAM, IG, ...: overlaid on the original
    map_tiles = []
    if "diff" in maps:  # shown on its own, as in the paper, so faint changes are not hidden by anatomy
        map_tiles.append((MAP_TITLES["diff"], heatmap(maps["diff"]), None, MUTED))
    map_tiles += [(MAP_TITLES.get(n, n), heatmap(maps[n], base=image), None, MUTED) for n in others]
    row_c = (
        tile_row(map_tiles, side=large, trailer=legend(large))
        if map_tiles else text_block([("attribution maps were not computed for this image", 14, False, MUTED)])
    )
    beside = " beside " + " and ".join(MAP_TITLES.get(n, n) for n in others) if others else ""

    sections = [
        _section("(a) Original, reconstruction G(z₁, z₂) and counterfactual G(z₁, 0)", row_a),
        _section("(b) Fallback traversal G(z₁, α·d) along the mean positive direction d (z₂ ≈ 0 or not positive): "
                 "α = 1 is not the reconstruction" if getattr(expl, "used_fallback", False)
                 else "(b) Latent traversal G(z₁, α·z₂): classifier p(positive) under each frame", row_b),
        _section(f"(c) Difference |G(z₁, z₂) − G(z₁, 0)|{beside}", row_c),
    ]
    if header:
        sections.insert(0, text_block([(str(expl.image_id), 20, True, INK), (_stats_line(expl), 14, False, MUTED)]))
    return stack(sections, gap=SECTION_GAP, pad=PAD)


def _section(caption: str, body: Image.Image) -> Image.Image:
    """A bold caption above one row of the figure."""
    return stack([text_block([(caption, 15, True, INK)]), body], gap=6, pad=0)
