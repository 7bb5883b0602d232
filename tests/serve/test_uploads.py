"""Uploaded images: base64, any size or aspect, refusing non-images and pixel bombs before decoding."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from raygan.data.codec import ImageDecodeError
from raygan.service.uploads import ImageTooLarge, decode_base64, decode_upload, default_image_id


def png(width: int, height: int, mode: str = "L") -> bytes:
    rng = np.random.default_rng(0)
    shape = (height, width) if mode == "L" else (height, width, 3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, format="PNG")
    return buf.getvalue()


def test_base64_with_data_url_and_whitespace() -> None:
    data = png(5, 7)
    text = base64.b64encode(data).decode()
    assert decode_base64(text) == data
    assert decode_base64("data:image/png;base64," + text[:10] + "\n" + text[10:]) == data
    for bad in ("!!!", "abc", "data:image/png;base64"):
        with pytest.raises(ValueError):
            decode_base64(bad)


@pytest.mark.parametrize("size", [(1, 1), (40, 30), (30, 300), (513, 64)])
def test_any_size_and_aspect_becomes_the_model_size(size: tuple[int, int]) -> None:
    image = decode_upload(png(*size, mode="RGB"), size=32, channels=1, max_pixels=10**6)
    assert image.shape == (1, 32, 32) and float(image.min()) >= -1 and float(image.max()) <= 1


def test_non_images_and_pixel_bombs_are_refused() -> None:
    for data in (b"", b"hello, world", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, png(8, 8)[:40]):
        with pytest.raises(ImageDecodeError):
            decode_upload(data, size=32, channels=1, max_pixels=10**6)
    with pytest.raises(ImageTooLarge, match="2500 pixels"):
        decode_upload(png(50, 50), size=32, channels=1, max_pixels=2000)


def test_default_image_ids_are_safe() -> None:
    assert default_image_id("scans/chest 01.png") == "chest_01"
    assert default_image_id("..\\..\\evil.png") == "evil"
    assert default_image_id("...").startswith("upload-")
    assert default_image_id(None).startswith("upload-")
