"""Images: tensors in [-1, 1] and maps in [0, 1] -> uint8 arrays, PNG bytes and heat-map overlays.

Conventions shared with the rest of raygan: an image is [C, H, W] (C = 1 or 3) float in [-1, 1];
an attribution map is [1, H, W] float in [0, 1] (1 = most salient). Maps are stored as 8-bit
grayscale PNGs (255 = 1.0) so a report can average them later; heat maps are for people only.
"""

from __future__ import annotations

import functools
import io
import math
import os
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from raygan.data.codec import encode_png

PngKind = Literal["auto", "image", "map"]

DEFAULT_CMAP = "turbo"  # perceptually smoothed jet: familiar from Grad-CAM, and it stands out on gray anatomy
OVERLAY_ALPHA = 0.8  # opacity of the colour where the map is 1; it fades to 0 where the map is 0


def to_numpy(x: Any) -> np.ndarray:
    """A torch tensor (any device, any float dtype) or array-like -> numpy array, without copying numpy input."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.float()  # bf16/fp16 have no numpy dtype
        return x.numpy()
    return np.asarray(x)


def to_uint8(image: Any) -> np.ndarray:
    """An image [C, H, W] (C in 1, 3) or [H, W], float in [-1, 1] or uint8 -> uint8 [H, W] or [H, W, 3]."""
    arr = to_numpy(image)
    if arr.ndim == 3:
        assert arr.shape[0] in (1, 3), f"expected [C, H, W] with C in (1, 3), got {arr.shape}"
        arr = arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))
    assert arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3), f"expected an image, got shape {arr.shape}"
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    # Same rounding as codec.encode_png, so a figure and the stored artifact agree pixel for pixel.
    return np.round((np.clip(arr.astype(np.float32), -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def map_to_float(attribution: Any) -> np.ndarray:
    """A map [1, H, W] or [H, W] (float in [0, 1], or uint8 where 255 = 1) -> float32 [H, W] in [0, 1]."""
    arr = to_numpy(attribution)
    if arr.ndim == 3:
        assert arr.shape[0] == 1, f"expected a map [1, H, W], got {arr.shape}"
        arr = arr[0]
    assert arr.ndim == 2, f"expected a map [1, H, W] or [H, W], got {arr.shape}"
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    out = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(out, 0.0, 1.0)


def map_to_uint8(attribution: Any) -> np.ndarray:
    """A map in [0, 1] -> uint8 [H, W] with 255 = 1.0 (the stored form of maps)."""
    return np.round(map_to_float(attribution) * 255.0).astype(np.uint8)


def png_bytes(image: Any, *, kind: PngKind = "auto") -> bytes:
    """PNG bytes of a PIL image, an image in [-1, 1], a map in [0, 1] or a uint8/bool array.

    Float input is ambiguous between the two scales: kind="auto" reads float data with no
    negative value as a map (8-bit gray, 255 = 1.0) and anything else as an image. Pass
    kind="image" or kind="map" where the caller knows, e.g. for a very bright image.
    """
    if isinstance(image, Image.Image):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()
    arr = to_numpy(image)
    if kind == "map" or (kind == "auto" and np.issubdtype(arr.dtype, np.floating) and float(np.nanmin(arr)) >= 0.0):
        return encode_png(map_to_uint8(arr))
    pixels = to_uint8(arr)  # [H, W] or [H, W, 3]
    return encode_png(pixels if pixels.ndim == 2 else np.transpose(pixels, (2, 0, 1)))  # encode_png takes [C, H, W]


@functools.lru_cache(maxsize=1)
def _colormaps() -> Any:
    import matplotlib  # only for its colour tables; no figure or backend is created

    return matplotlib.colormaps


def colorize(attribution: Any, *, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """A map in [0, 1] -> uint8 RGB [H, W, 3] through a matplotlib colormap."""
    values = map_to_float(attribution)
    rgba = _colormaps()[cmap](values)  # [H, W, 4] float in [0, 1]
    return np.round(rgba[..., :3] * 255.0).astype(np.uint8)


def _resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map [H, W] to (width, height); Grad-CAM may arrive coarser than the image."""
    if values.shape[::-1] == size:
        return values
    resized = Image.fromarray(values.astype(np.float32)).resize(size, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def heatmap(attribution: Any, *, base: Any = None, cmap: str = DEFAULT_CMAP,
            alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """A map [1, H, W] in [0, 1] as an RGB heat map, alpha-blended over a grayscale `base` image when given.

    The blend weight is alpha * map per pixel, so regions the map ignores show the anatomy
    untouched and only salient regions are coloured. `base` is [C, H, W] in [-1, 1]; the map is
    resized to it when their sizes differ.
    """
    assert 0.0 <= alpha <= 1.0, f"alpha must be in [0, 1], got {alpha}"
    values = map_to_float(attribution)  # [H, W]
    if base is None:
        return Image.fromarray(colorize(values, cmap=cmap))
    gray = Image.fromarray(to_uint8(base)).convert("L")  # colour bases become gray so the only colour is the map's
    values = _resize_map(values, gray.size)
    colour = colorize(values, cmap=cmap).astype(np.float32)  # [H, W, 3]
    under = np.asarray(gray, dtype=np.float32)[..., None]  # [H, W, 1]
    weight = alpha * values[..., None]  # [H, W, 1]
    blended = (1.0 - weight) * under + weight * colour
    return Image.fromarray(np.round(blended).astype(np.uint8))


def as_pil(image: Any) -> Image.Image:
    """An image in [-1, 1] ([C, H, W] or [H, W]) or a PIL image -> PIL image (L or RGB)."""
    if isinstance(image, Image.Image):
        return image
    return Image.fromarray(to_uint8(image))


def upscale(image: Image.Image, side: int) -> Image.Image:
    """Resize to side x side: nearest-neighbour for whole-number factors (pixels stay honest), Lanczos otherwise."""
    if image.size == (side, side):
        return image
    w, h = image.size
    whole = side % w == 0 and side % h == 0
    return image.resize((side, side), Image.Resampling.NEAREST if whole else Image.Resampling.LANCZOS)


def tile_side(size: int, minimum: int) -> int:
    """The smallest whole multiple of `size` that is at least `minimum` pixels."""
    assert size > 0, f"size must be positive, got {size}"
    return size * max(1, math.ceil(minimum / size))


@functools.lru_cache(maxsize=16)
def font(size: int, *, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (shipped inside matplotlib, so always present, with Greek glyphs) at `size` px."""
    import matplotlib

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name)
    return ImageFont.truetype(path, size)


def text_width(text: str, face: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    """Rendered width of `text` in pixels."""
    return math.ceil(face.getlength(text))


def draw_centered(draw: ImageDraw.ImageDraw, text: str, *, x: int, y: int, width: int,
                  face: ImageFont.FreeTypeFont | ImageFont.ImageFont, fill: str) -> None:
    """Draw `text` horizontally centred in [x, x + width), top at y."""
    draw.text((x + (width - text_width(text, face)) // 2, y), text, font=face, fill=fill)


def colorbar(height: int, *, width: int = 14, cmap: str = DEFAULT_CMAP) -> Image.Image:
    """A vertical colour bar, 1 at the top and 0 at the bottom."""
    ramp = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None].repeat(width, axis=1)  # [H, W]
    return Image.fromarray(colorize(ramp, cmap=cmap))
