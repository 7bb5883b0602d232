"""Image codec: PNG/JPEG bytes <-> float tensors in [-1, 1], the scale every model in raygan uses.

Decoding accepts what users actually have: 8- or 16-bit, grayscale, RGB, RGBA and palette PNGs,
and JPEGs. Only those formats are decoded (the shard contract and the HTTP API name them); GIF,
TIFF, WebP, BMP and the rest are refused with a message naming the format, unless a caller
(`raygan ingest`, a converter) asks for more with `formats=None`. Images whose header claims more
pixels than PIL's decompression-bomb limit are refused as `ImageTooLarge`, and pixels that are
not finite (float TIFFs can hold NaN) as `ImageDecodeError`. Error messages carry no Python
object reprs. Pixels are scaled by the bit depth (not by the image's own min/max), so
brightness is preserved. Non-square images are center-cropped to a square (the
longer side is trimmed equally on both ends) before resizing, so anatomy is never stretched.
Resizing uses PIL's Lanczos filter on float data, which antialiases when shrinking.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

# ITU-R 601 luma weights, the same PIL uses for RGB -> "L"; applied in float to keep 16-bit precision.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


ACCEPTED_FORMATS = ("PNG", "JPEG")  # what input shards and the HTTP API promise (PIL format names)
_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")  # e.g. "<_io.BytesIO object at 0x7f...>" in PIL's messages


class ImageDecodeError(ValueError):
    """The bytes are not an image raygan can read; the message says what is wrong."""


class ImageTooLarge(ImageDecodeError):
    """The image has more pixels than allowed (answered with 413 by the service)."""


def _clean(error: BaseException) -> str:
    """An exception's message without object reprs (they leak nothing useful to a user)."""
    return " ".join(_REPR.sub("the image", str(error)).split()) or type(error).__name__


def _describe(data: bytes) -> str:
    return f"{len(data)} bytes, starting {bytes(data[:4]).hex(' ')}"


def _open(data: bytes, formats: Sequence[str] | None, *, load: bool = True) -> Image.Image:
    """PIL image of `data` restricted to `formats` (None: any format PIL reads), decoded when `load`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageDecodeError(f"expected image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageDecodeError("empty image data (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data), formats=None if formats is None else list(formats))
        if load:
            img.load()  # decode now: truncated files fail here, not later
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"image has more pixels than the decoder's limit of {2 * Image.MAX_IMAGE_PIXELS} "
                            "(a decompression-bomb guard)") from e
    except UnidentifiedImageError as e:
        wanted = " or ".join(formats) if formats is not None else "an image format PIL reads"
        found = _sniff(data)
        what = f"a {found} image" if found else f"not a {wanted} image ({_describe(data)})"
        raise ImageDecodeError(f"cannot decode image: {what}; accepted: {wanted}") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageDecodeError(f"cannot decode image ({_describe(data)}): {_clean(e)}") from e
    return img


def _sniff(data: bytes) -> str | None:
    """The format PIL would read `data` as, ignoring any restriction (for the error message)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format
    except Exception:  # only names the format in a message; "unknown" is a fine answer
        return None


def image_size(data: bytes, *, formats: Sequence[str] | None = ACCEPTED_FORMATS) -> tuple[int, int]:
    """(width, height) from the header, without decoding the pixels; ImageDecodeError / ImageTooLarge."""
    with _open(data, formats, load=False) as img:
        return img.size


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


def decode_image(data: bytes, *, size: int, channels: int = 1,
                 formats: Sequence[str] | None = ACCEPTED_FORMATS) -> torch.Tensor:
    """Decode PNG/JPEG bytes to a float32 tensor [channels, size, size] in [-1, 1].

    Gray sources are repeated for channels=3; color sources are converted to luma for
    channels=1. Raises ImageDecodeError for empty, truncated, non-image or non-finite data and
    for formats outside `formats` (None: any format PIL reads); ImageTooLarge for bombs.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    img = _open(data, formats)
    if img.mode == "F" and not np.isfinite(np.asarray(img, dtype=np.float32)).all():
        raise ImageDecodeError("image has non-finite pixels (NaN or infinity)")  # before _to_float clips them
    arr = _to_float(img)  # [H, W, C0]
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
