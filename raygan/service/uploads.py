"""Uploaded images: base64 text or raw bytes -> the model's input tensor, refusing what is not an image.

Any size and aspect ratio is accepted: the image is center-cropped to a square and resized to
the generator's side (raygan.data.codec.decode_image); colour becomes gray for 1-channel models.
Images above `max_pixels` are refused before decoding, so a small compressed file cannot
expand into gigabytes of pixels.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid

import torch

from raygan.data.codec import ImageTooLarge, decode_image, image_size

_SAFE_ID = re.compile(r"[^A-Za-z0-9._\-]+")


def decode_base64(text: str) -> bytes:
    """Standard base64 (a `data:...;base64,` prefix and whitespace allowed) -> bytes; ValueError if malformed."""
    if text.startswith("data:"):
        _, sep, text = text.partition(",")
        if not sep:
            raise ValueError("image_base64: data: URL without a comma")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"image_base64 is not valid base64: {e}") from e


def pixel_count(data: bytes) -> int:
    """Width x height of a PNG/JPEG from its header (no pixel decoding); ImageDecodeError / ImageTooLarge."""
    width, height = image_size(data)
    return width * height


def decode_upload(data: bytes, *, size: int, channels: int, max_pixels: int) -> torch.Tensor:
    """Image bytes -> [channels, size, size] float32 in [-1, 1]; ImageDecodeError / ImageTooLarge otherwise."""
    pixels = pixel_count(data)
    if pixels > max_pixels:
        raise ImageTooLarge(f"image has {pixels} pixels; this service accepts at most {max_pixels}")
    return decode_image(data, size=size, channels=channels)  # [C, S, S]


def default_image_id(filename: str | None) -> str:
    """An image_id for an upload: the file name's stem made safe, else a fresh 'upload-<hex>'."""
    stem = (filename or "").rsplit("/", 1)[-1].rsplit("\\", 1)[-1].rsplit(".", 1)[0]
    stem = _SAFE_ID.sub("_", stem).strip("._-")[:100]
    return stem or f"upload-{uuid.uuid4().hex[:12]}"


__all__ = ["ImageTooLarge", "decode_base64", "decode_upload", "default_image_id", "pixel_count"]
