"""The traversal strip and the paper's Figure 2."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from raygan.render import explanation_figure, png_bytes, traversal_strip
from raygan.render.figure import GAP, fmt_alpha, fmt_p


def _is_png(image: Image.Image) -> Image.Image:
    data = png_bytes(image)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    decoded = Image.open(io.BytesIO(data))
    decoded.load()
    return decoded


def test_strip_upscales_small_frames_and_labels_each() -> None:
    frames = torch.rand(5, 1, 32, 32) * 2 - 1
    strip = traversal_strip(frames, [0.1, 0.3, 0.5, 0.7, 0.9], [0.0, 0.25, 0.5, 0.75, 1.0])
    tile = 96  # 32 px frames -> 3x, the smallest whole factor reaching 96 px
    assert strip.width == 5 * tile + 4 * GAP + 2 * GAP
    assert strip.height > tile + 30  # room for the probability bar and two text lines
    assert _is_png(strip).size == strip.size


def test_strip_keeps_large_frames_at_their_size() -> None:
    strip = traversal_strip(torch.zeros(3, 1, 128, 128), [0.2, 0.5, 0.8], [0.0, 0.5, 1.0])
    assert strip.width == 3 * 128 + 2 * GAP + 2 * GAP


def test_strip_refuses_mismatched_lengths() -> None:
    with pytest.raises(AssertionError, match="3 frames but 2 probabilities"):
        traversal_strip(torch.zeros(3, 1, 32, 32), [0.1, 0.2], [0.0, 0.5, 1.0])


def test_labels() -> None:
    assert fmt_p(0.934) == "p=0.93" and fmt_p(float("nan")) == "p=n/a"
    assert [fmt_alpha(a) for a in (0.0, 0.4, 0.25, 1.0, 1.5)] == ["α=0", "α=0.4", "α=0.25", "α=1", "α=1.5"]


def test_figure_has_three_rows_and_is_a_png(make_explanation) -> None:
    expl = make_explanation(frames=5)
    fig = _is_png(explanation_figure(expl))
    strip = traversal_strip(expl.traversal_frames, expl.traversal_probs, expl.traversal_alphas)
    # Wider than the strip, taller than rows (a) + (b) + (c) of 32 px images at 160 / 96 / 160 px.
    assert fig.width >= strip.width
    assert fig.height > 160 + 96 + 160 + 100


def test_figure_without_attributions_and_without_crossing(make_explanation) -> None:
    expl = make_explanation(map_names=("diff",), crossing=False, size=64, frames=11)
    fig = explanation_figure(expl)
    assert fig.mode == "RGB" and fig.width > 11 * 128  # 64 px frames -> 128 px tiles
    bare = make_explanation(map_names=())
    assert explanation_figure(bare).height > 0
