"""to_uint8, png_bytes, heatmap and the region shares of maps."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from render_helpers import centre_map, corner_map
from PIL import Image

from raygan.render import heatmap, png_bytes, to_uint8
from raygan.render.images import colorize
from raygan.render.regions import decode_map, map_mass, uniform_edge_share


def test_to_uint8_scales_minus_one_to_one() -> None:
    image = torch.tensor([[[-1.0, 0.0, 1.0, 3.0]]])  # [1, 1, 4]; out-of-range values clip
    assert to_uint8(image).tolist() == [[0, 128, 255, 255]]
    rgb = to_uint8(torch.zeros(3, 2, 5))
    assert rgb.shape == (2, 5, 3) and rgb.dtype == np.uint8


def test_png_bytes_round_trips_images_maps_and_pil() -> None:
    image = torch.full((1, 8, 8), -1.0)
    assert np.asarray(Image.open(io.BytesIO(png_bytes(image)))).max() == 0
    attribution = torch.zeros(1, 8, 8)
    attribution[0, 2, 3] = 1.0
    decoded = decode_map(png_bytes(attribution))  # auto: no negative value -> a map, 255 = 1.0
    assert decoded[2, 3] == 255 and decoded.sum() == 255
    bright = torch.full((1, 8, 8), 0.5)  # a bright image is only ambiguous under kind="auto"
    assert np.asarray(Image.open(io.BytesIO(png_bytes(bright, kind="image")))).max() == 191
    pil = Image.new("RGB", (5, 7), "red")
    assert Image.open(io.BytesIO(png_bytes(pil))).size == (5, 7)
    colour = torch.stack([torch.full((6, 4), 1.0), torch.full((6, 4), -1.0), torch.zeros(6, 4)])  # [3, 6, 4]
    decoded = Image.open(io.BytesIO(png_bytes(colour, kind="image")))  # RGB generators' images stay RGB
    assert decoded.mode == "RGB" and decoded.size == (4, 6) and decoded.getpixel((0, 0)) == (255, 0, 128)


def test_heatmap_without_base_is_the_colormap() -> None:
    out = heatmap(torch.ones(1, 6, 6))
    assert out.mode == "RGB" and out.size == (6, 6)
    assert np.array_equal(np.asarray(out)[0, 0], colorize(np.ones((1, 1), np.float32))[0, 0])


def test_heatmap_blends_by_map_value_over_gray_base() -> None:
    base = torch.linspace(-1, 1, 64).reshape(1, 8, 8)
    gray = to_uint8(base).astype(int)
    zero = np.asarray(heatmap(torch.zeros(1, 8, 8), base=base)).astype(int)
    for c in range(3):  # where the map is 0, the anatomy shows through untouched
        assert np.array_equal(zero[..., c], gray)
    top = colorize(np.ones((8, 8), np.float32)).astype(int)
    full = np.asarray(heatmap(torch.ones(1, 8, 8), base=base, alpha=1.0)).astype(int)
    assert np.array_equal(full, top)
    half = np.asarray(heatmap(torch.ones(1, 8, 8), base=base, alpha=0.5)).astype(int)
    assert np.abs(half - (gray[..., None] + top) / 2).max() <= 1


def test_heatmap_resizes_a_coarse_map_to_the_base() -> None:
    out = heatmap(torch.rand(1, 4, 4), base=torch.zeros(3, 16, 16))
    assert out.size == (16, 16)


def test_map_mass_finds_corners_centre_and_lungs() -> None:
    corner = map_mass(corner_map())
    centre = map_mass(centre_map())
    assert corner.edge == pytest.approx(1.0) and corner.corners == pytest.approx(1.0)
    assert centre.edge == 0.0 and centre.outside_lung is None and centre.on_shortcut is None
    lungs = np.zeros((32, 32), dtype=bool)
    lungs[8:24, 8:24] = True
    assert map_mass(centre_map(), lung_mask=lungs).outside_lung == 0.0
    assert map_mass(corner_map(), lung_mask=lungs, shortcut_mask=~lungs).on_shortcut == pytest.approx(1.0)
    flat = map_mass(np.ones((32, 32), np.float32))
    assert flat.edge == pytest.approx(uniform_edge_share(32, 32))
    assert np.isnan(map_mass(np.zeros((32, 32), np.float32)).edge)
