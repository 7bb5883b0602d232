"""Image codec: PNG/JPEG bytes <-> float tensors in [-1, 1], the scale every model in raygan uses.

Decoding accepts what users actually have: 8- or 16-bit, grayscale, RGB, RGBA and palette PNGs,
JPEGs, and anything else PIL opens. Pixels are scaled by the bit depth (not by the image's own
min/max), so brightness is preserved. Non-square images are center-cropped to a square (the
longer side is trimmed equally on both ends) before resizing, so anatomy is never stretched.
Resizing uses PIL's Lanczos filter on float data, which antialiases when shrinking.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

# ITU-R 601 luma weights, the same PIL uses for RGB -> "L"; applied in float to keep 16-bit precision.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class ImageDecodeError(ValueError):
    """The bytes are not an image raygan can read; the message says what is wrong."""


def _open(data: bytes) -> Image.Image:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageDecodeError(f"expected image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageDecodeError("empty image data (0 bytes)")
    head = f"{len(data)} bytes, starting {bytes(data[:8])!r}"
    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # decode now: truncated files fail here, not later
    except UnidentifiedImageError as e:
        raise ImageDecodeError(f"cannot decode image: not a PNG, JPEG or other format PIL reads ({head})") from e
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise ImageDecodeError(f"cannot decode image ({head}): {e}") from e
    return img


def _to_float(img: Image.Image) -> np.ndarray:
    """PIL image -> float32 array [H, W, C] in [0, 1] with C = 1 (gray) or 3 (RGB); alpha is dropped."""
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")  # RGBA keeps palette transparency from warning; alpha dropped below
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grayscale; PIL may hand it over as 32-bit "I" but the range is 16-bit.
        arr = np.asarray(img, dtype=np.float32) / 65535.0
        return np.clip(arr, 0.0, 1.0)[:, :, None]
    if img.mode == "F":
        return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)[:, :, None]
    if img.mode in ("1", "L", "LA"):
        arr = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
        return arr[:, :, None]
    if img.mode not in ("RGB", "RGBA"):
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV: PIL knows the conversion
    arr = np.asarray(img, dtype=np.float32)[:, :, :3] / 255.0
    return arr


def _center_square(arr: np.ndarray) -> np.ndarray:
    """The centered square of side min(H, W) of an [H, W, C] array; the longer side loses both ends."""
    h, w = arr.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return arr[top:top + side, left:left + side]


def decode_image(data: bytes, *, size: int, channels: int = 1) -> torch.Tensor:
    """Decode PNG/JPEG bytes to a float32 tensor [channels, size, size] in [-1, 1].

    Gray sources are repeated for channels=3; color sources are converted to luma for
    channels=1. Raises ImageDecodeError for empty, truncated or non-image bytes.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    arr = _to_float(_open(data))  # [H, W, C0]
    h, w, c0 = arr.shape
    if h == 0 or w == 0:
        raise ImageDecodeError(f"image has no pixels ({w}x{h})")
    if channels == 1 and c0 == 3:
        arr = (arr @ _LUMA)[:, :, None]
    arr = _center_square(arr)  # [S0, S0, C]
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(arr[:, :, k])).resize(
                (size, size), Image.Resampling.LANCZOS
            ),
            dtype=np.float32,
        )
        for k in range(arr.shape[2])
    ]
    out = np.clip(np.stack(planes), 0.0, 1.0)  # [C, size, size]; Lanczos may overshoot
    if channels == 3 and out.shape[0] == 1:
        out = np.repeat(out, 3, axis=0)
    return torch.from_numpy(out * 2.0 - 1.0)


def encode_png(image: torch.Tensor | np.ndarray) -> bytes:
    """Encode an image as PNG bytes.

    Accepts [H, W] or [C, H, W] with C in (1, 3): float data in [-1, 1] (clipped, stored 8-bit),
    uint8 (stored as is), uint16 (stored 16-bit, gray only) or bool (0/255 mask).
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 3:
        if arr.shape[0] not in (1, 3):
            raise ValueError(f"expected [C, H, W] with C in (1, 3), got shape {arr.shape}")
        arr = arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))
    elif arr.ndim != 2:
        raise ValueError(f"expected [H, W] or [C, H, W], got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        arr = np.round((np.clip(arr, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    elif arr.dtype == np.uint16:
        if arr.ndim != 2:
            raise ValueError("16-bit PNG encoding supports grayscale only")
        img = Image.fromarray(np.ascontiguousarray(arr).astype("<u2"))  # mode I;16
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()
    elif arr.dtype != np.uint8:
        raise ValueError(f"unsupported dtype {arr.dtype}: use float in [-1, 1], uint8, uint16 or bool")
    buf = io.BytesIO()
    # PIL infers the mode from dtype and shape: uint8 [H, W] -> "L", [H, W, 3] -> "RGB".
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()
