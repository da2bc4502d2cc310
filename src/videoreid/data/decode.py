"""Fast image decoding for the clip loader (the data pipeline's hot path).

Measured on real MARS frames (256x128 JPEGs, one core, ``bench/data_loading.py``; figures in
``docs/data_loading.md``): libjpeg-turbo through ``simplejpeg`` is fastest, OpenCV's
``cv2.imdecode`` next, PIL slowest; all three return bit-identical pixels for a full-size
decode. JPEG DCT-domain downscaling (``simplejpeg`` ``min_height/min_width``,
``cv2.IMREAD_REDUCED_COLOR_{2,4,8}``, PIL ``draft``) is faster still when the target is at
most half the stored size.

Backend order for JPEG: ``simplejpeg`` if it is installed (optional, not a dependency), else
OpenCV; both fall back to PIL on failure. Other formats (PNG of iLIDS-VID / PRID2011): OpenCV,
then PIL. ``VIDEOREID_DECODER=simplejpeg|cv2|pil`` forces a backend (for benchmarks).

Errors. A missing, unreadable, truncated or undecodable file raises
:class:`ImageDecodeError` naming the file. Truncation is caught by ``simplejpeg``'s strict
mode, and on the OpenCV path by a missing end-of-image marker sending the file to PIL, which
refuses truncated data (OpenCV would fill the missing part with grey and only print a
warning).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

try:  # optional: libjpeg-turbo binding, the fastest measured
    import simplejpeg
except ImportError:  # pragma: no cover - depends on the environment
    simplejpeg = None

__all__ = [
    "ImageDecodeError",
    "DECODERS",
    "available_backends",
    "default_backend",
    "decode_image",
    "decode_image_with_size",
    "jpeg_size",
    "reduction_factor",
]

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_CV2_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
                4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


class ImageDecodeError(OSError):
    """An image file could not be read or decoded; the message names the file."""


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from a JPEG's SOF header without decoding, or None if not found."""
    if not data.startswith(_JPEG_SOI):
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in _SOF_MARKERS and i + 9 <= n:
            return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def reduction_factor(size: tuple[int, int], min_size: tuple[int, int] | None) -> int:
    """Largest f in {1, 2, 4, 8} with the size divided by f still >= ``min_size``."""
    if min_size is None:
        return 1
    (h, w), (mh, mw) = size, min_size
    f = 1
    while f < 8 and h // (2 * f) >= mh and w // (2 * f) >= mw:
        f *= 2
    return f


def _pil(data: bytes, min_size: tuple[int, int] | None) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        if min_size is not None and im.format == "JPEG":
            # draft picks the smallest DCT scale whose size is >= the requested one
            im.draft("RGB", (min_size[1], min_size[0]))
        return np.asarray(im.convert("RGB"))


def _cv2(data: bytes, min_size: tuple[int, int] | None) -> np.ndarray:
    flag = cv2.IMREAD_COLOR
    if min_size is not None:
        size = jpeg_size(data)
        if size is not None:
            flag = _CV2_REDUCED[reduction_factor(size, min_size)]
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if bgr is None:
        raise ValueError("OpenCV could not decode the data")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _simplejpeg(data: bytes, min_size: tuple[int, int] | None) -> np.ndarray:
    if min_size is None:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    # libjpeg-turbo can scale by any M/8; keep to the powers of two OpenCV and PIL use, so
    # every backend returns the same pixels
    h, w = simplejpeg.decode_jpeg_header(data)[:2]
    f = reduction_factor((h, w), min_size)
    return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True,
                                  min_height=-(-h // f), min_width=-(-w // f))


DECODERS: dict[str, Callable[[bytes, tuple[int, int] | None], np.ndarray]] = {
    "pil": _pil,
    "cv2": _cv2,
}
if simplejpeg is not None:
    DECODERS["simplejpeg"] = _simplejpeg


def available_backends() -> list[str]:
    """Names of the usable decoders."""
    return list(DECODERS)


def default_backend() -> str:
    """The JPEG backend used: ``$VIDEOREID_DECODER`` if set, else the fastest installed."""
    forced = os.environ.get("VIDEOREID_DECODER")
    if forced:
        if forced not in DECODERS:
            raise ValueError(f"VIDEOREID_DECODER={forced!r} is not available; "
                             f"choose from {', '.join(DECODERS)}")
        return forced
    return "simplejpeg" if "simplejpeg" in DECODERS else "cv2"


def _decode_bytes(data: bytes, min_size: tuple[int, int] | None, backend: str) -> np.ndarray:
    is_jpeg = data.startswith(_JPEG_SOI)
    if backend == "pil":
        return _pil(data, min_size)
    if is_jpeg and backend == "simplejpeg":
        try:
            return _simplejpeg(data, min_size)
        except ValueError:
            return _pil(data, min_size)  # unusual colour spaces etc.; raises if truncated
    if is_jpeg and not data.rstrip(b"\x00\r\n ").endswith(_JPEG_EOI):
        return _pil(data, min_size)  # possibly truncated: PIL refuses, OpenCV would not
    try:
        return _cv2(data, min_size)
    except ValueError:
        return _pil(data, min_size)


def decode_image_with_size(
    path: str | os.PathLike[str],
    min_size: tuple[int, int] | None = None,
    backend: str | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode an image file to RGB, optionally at reduced size; also return its stored size.

    Args:
        path: image file (JPEG, PNG, anything OpenCV or PIL reads).
        min_size: ``(h, w)``: the decode may be reduced by 2, 4 or 8 (JPEG only) while
            staying at least this size; None decodes at full size.
        backend: decoder name (see :func:`available_backends`); default
            :func:`default_backend`.

    Returns:
        ``(image (h, w, 3) uint8 RGB, (H0, W0) stored size)``.

    Raises:
        ImageDecodeError: naming the file, if it cannot be read or decoded.
    """
    backend = backend or default_backend()
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImageDecodeError(f"cannot read image file {os.fspath(path)!r}: {e}") from e
    try:
        img = _decode_bytes(data, min_size, backend)
    except Exception as e:
        raise ImageDecodeError(
            f"cannot decode image file {os.fspath(path)!r} ({len(data)} bytes): "
            f"{type(e).__name__}: {e}"
        ) from e
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ImageDecodeError(f"image file {os.fspath(path)!r} decoded to an unexpected "
                               f"array {img.shape} {img.dtype}; expected (h, w, 3) uint8")
    size = (img.shape[0], img.shape[1])
    if min_size is not None:
        stored = jpeg_size(data)
        size = stored if stored is not None else size
    return img, size


def decode_image(
    path: str | os.PathLike[str],
    min_size: tuple[int, int] | None = None,
    backend: str | None = None,
) -> np.ndarray:
    """Decode an image file to ``(h, w, 3)`` uint8 RGB (see :func:`decode_image_with_size`).

    Raises:
        ImageDecodeError: naming the file, if it cannot be read or decoded.
    """
    return decode_image_with_size(path, min_size, backend)[0]
