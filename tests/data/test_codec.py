"""Image codec: every image form users bring decodes to [C, S, S] in [-1, 1]; bad bytes fail clearly."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from raygan.data.codec import ImageDecodeError, ImageTooLarge, decode_image, encode_png, image_size


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    img.save(buf, format="PNG")
    return buf.getvalue()


def _ramp(h: int, w: int) -> np.ndarray:
    """Horizontal ramp in [0, 1], a known signal for checking scale and orientation."""
    return np.tile(np.linspace(0.0, 1.0, w), (h, 1))


def test_8bit_gray_keeps_values() -> None:
    arr = np.full((16, 16), 51, dtype=np.uint8)  # 51/255 = 0.2 -> -0.6
    out = decode_image(_png(arr), size=16)
    assert out.shape == (1, 16, 16) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full_like(out, -0.6), atol=1e-5)


def test_16bit_gray_uses_full_depth() -> None:
    arr = (_ramp(32, 32) * 65535).astype(np.uint16)
    data = _png(arr)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really a 16-bit PNG
    out = decode_image(data, size=32)
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert out[0, 0, 0] == pytest.approx(-1.0, abs=0.02) and out[0, 0, -1] == pytest.approx(1.0, abs=0.02)
    # Values between the 8-bit steps survive: 16-bit precision is not quantized away.
    mid = np.full((8, 8), 32768 + 64, dtype=np.uint16)
    assert decode_image(_png(mid), size=8)[0, 0, 0].item() == pytest.approx((32768 + 64) / 65535 * 2 - 1, abs=1e-4)


def test_16bit_round_trip_through_encode() -> None:
    arr = (_ramp(8, 8) * 65535).astype(np.uint16)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(arr)))), arr)


def test_rgb_png_to_gray_and_rgb() -> None:
    arr = np.zeros((20, 20, 3), dtype=np.uint8)
    arr[..., 0] = 255  # pure red
    data = _png(arr)
    gray = decode_image(data, size=10, channels=1)
    assert gray.shape == (1, 10, 10)
    assert gray.mean().item() == pytest.approx(0.299 * 2 - 1, abs=1e-3)  # luma of red
    rgb = decode_image(data, size=10, channels=3)
    assert rgb.shape == (3, 10, 10)
    assert torch.allclose(rgb[0], torch.ones(10, 10)) and torch.allclose(rgb[1], -torch.ones(10, 10))


def test_gray_to_three_channels_and_rgba_palette() -> None:
    arr = np.full((12, 12), 255, dtype=np.uint8)
    out = decode_image(_png(arr), size=6, channels=3)
    assert out.shape == (3, 6, 6) and torch.allclose(out, torch.ones_like(out))
    rgba = np.dstack([np.full((12, 12), 255, np.uint8)] * 3 + [np.zeros((12, 12), np.uint8)])
    assert torch.allclose(decode_image(_png(rgba), size=6), torch.ones(1, 6, 6))  # alpha dropped
    pal = _png(np.full((12, 12, 3), 255, np.uint8), mode="P")
    assert torch.allclose(decode_image(pal, size=6), torch.ones(1, 6, 6), atol=1e-5)


def test_jpeg() -> None:
    buf = io.BytesIO()
    Image.fromarray((_ramp(64, 64) * 255).astype(np.uint8)).save(buf, format="JPEG", quality=95)
    out = decode_image(buf.getvalue(), size=32)
    assert out.shape == (1, 32, 32)
    assert out[0, :, :4].mean() < -0.8 and out[0, :, -4:].mean() > 0.8  # dark left, bright right


def test_non_square_is_center_cropped() -> None:
    # 20 x 60: left and right thirds black, the centered 20 x 20 square white.
    arr = np.zeros((20, 60), dtype=np.uint8)
    arr[:, 20:40] = 255
    out = decode_image(_png(arr), size=10)
    assert out.shape == (1, 10, 10)
    assert torch.allclose(out, torch.ones_like(out), atol=1e-5)  # only the center square remains
    tall = decode_image(_png(arr.T.copy()), size=10)
    assert torch.allclose(tall, torch.ones_like(tall), atol=1e-5)


def test_downscale_antialiases() -> None:
    checker = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)  # 1-pixel checkerboard
    out = decode_image(_png(checker), size=8)
    assert out.abs().max() < 0.1  # averages to mid-gray instead of aliasing to black/white


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"this is not an image at all", "cannot decode"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "cannot decode"),
    ],
)
def test_garbage_raises_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(data, size=8)


def test_truncated_png_raises() -> None:
    data = _png((_ramp(64, 64) * 255).astype(np.uint8))
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 2], size=8)
    assert issubclass(ImageDecodeError, ValueError)


def test_encode_png_round_trips_floats_and_masks() -> None:
    x = torch.linspace(-1, 1, 64).reshape(1, 8, 8)  # [1, H, W]
    back = decode_image(encode_png(x), size=8)
    assert torch.allclose(back, x, atol=1 / 255 + 1e-6)
    rgb = torch.rand(3, 8, 8) * 2 - 1  # [3, H, W]
    assert torch.allclose(decode_image(encode_png(rgb), size=8, channels=3), rgb, atol=1 / 255 + 1e-6)
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:4, 2:4] = True
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(mask)))) > 0, mask)
    u8 = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(u8)))), u8)
    with pytest.raises(ValueError, match="dtype"):
        encode_png(np.zeros((8, 8), dtype=np.int64))
    with pytest.raises(ValueError, match="shape"):
        encode_png(np.zeros((2, 8, 8), dtype=np.float32))


def test_bad_arguments() -> None:
    data = _png(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="channels"):
        decode_image(data, size=4, channels=2)
    with pytest.raises(ValueError, match="size"):
        decode_image(data, size=0)


def encoded(fmt: str, array: np.ndarray | None = None, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 128, np.uint8) if array is None else array).save(buf, format=fmt, **save)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "WEBP", "BMP"])
def test_only_png_and_jpeg_are_decoded(fmt: str) -> None:
    data = encoded(fmt)
    with pytest.raises(ImageDecodeError, match=f"a {fmt} image; accepted: PNG or JPEG") as e:
        decode_image(data, size=8)
    assert "0x" not in str(e.value)  # no object reprs in the message
    assert decode_image(data, size=8, formats=None).shape == (1, 8, 8)  # converters (ingest) may ask for more


def test_non_finite_pixels_are_refused() -> None:
    nan = encoded("TIFF", np.full((8, 8), np.nan, np.float32))
    with pytest.raises(ImageDecodeError, match="non-finite pixels"):
        decode_image(nan, size=8, formats=None)
    with pytest.raises(ImageDecodeError, match="TIFF"):
        decode_image(nan, size=8)


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height 8-bit gray pixels and holds none (a decompression-bomb header)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(
        b"IEND", b"")


def test_decompression_bombs_are_too_large_not_undecodable() -> None:
    assert image_size(png_header(300, 200)) == (300, 200)  # from the header, without pixels
    with pytest.raises(ImageTooLarge, match="decompression-bomb guard") as e:
        image_size(png_header(20_000, 20_000))  # 400 MP: over PIL's 179 MP limit
    assert "0x" not in str(e.value) and "DecompressionBomb" not in str(e.value)
