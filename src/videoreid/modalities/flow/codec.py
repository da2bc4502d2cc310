"""The on-disk format of one cached flow field: an 8-bit, 2-channel PNG.

Format ``png8-la`` (recorded in the cache's ``flow_meta.json``):

- one PNG per flow field, colour type "grey + alpha" (PIL mode ``LA``), 8 bits per channel,
  the same size as the flow map; channel 0 (grey) holds ``dx``, channel 1 (alpha) ``dy``;
- ``value = clip(round(d / step) + 128, 0, 255)``, decoded as ``d = (value - 128) * step``;
- ``step`` (px per level) is fixed per cache, default 0.25 px: flow in
  ``[-128 step, 127 step] = [-32, 31.75]`` px round-trips within ``step / 2 = 0.125`` px, larger
  displacements saturate at those bounds. (On real MARS crops, DIS flow exceeds 16 px at
  ~6 % of pixels but 32 px at only ~0.3 %, hence the default.)

A 256×128 MARS flow takes ~15–20 KB (zlib level 1: PNG's heavier levels cost 2–40× the time for
~20 % less). Reading uses OpenCV (which returns grey + alpha as 4-channel BGRA, handled
here) and falls back to Pillow; an unreadable or malformed file is a :class:`FlowFileError`
naming the file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from videoreid.utils.io import atomic_write_bytes

__all__ = ["FORMAT", "DEFAULT_STEP", "FlowFileError", "quantize", "dequantize", "encode_png",
           "decode_png", "write_flow", "read_flow"]

FORMAT = "png8-la"
DEFAULT_STEP = 0.25
ZERO = 128


class FlowFileError(RuntimeError):
    """A cached flow file is missing, unreadable or malformed (the message names it)."""


def quantize(flow: np.ndarray, step: float = DEFAULT_STEP) -> np.ndarray:
    """``(2, h, w)`` float flow → ``(h, w, 2)`` uint8 levels (see module docstring)."""
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow must be (2, h, w), got {flow.shape}")
    q = np.rint(flow / np.float32(step)) + ZERO
    return np.clip(q, 0, 255).astype(np.uint8).transpose(1, 2, 0).copy()


def dequantize(levels: np.ndarray, step: float = DEFAULT_STEP) -> np.ndarray:
    """``(h, w, 2)`` uint8 levels → ``(2, h, w)`` float32 flow in px."""
    return ((levels.transpose(2, 0, 1).astype(np.float32) - ZERO) * np.float32(step))


def encode_png(flow: np.ndarray, step: float = DEFAULT_STEP) -> bytes:
    """PNG bytes of a ``(2, h, w)`` flow."""
    buf = io.BytesIO()
    Image.fromarray(quantize(flow, step), mode="LA").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_png(data: bytes | np.ndarray, step: float = DEFAULT_STEP, name: str = "<bytes>") -> np.ndarray:
    """``(2, h, w)`` float32 flow from PNG bytes; :class:`FlowFileError` if malformed."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        # OpenCV refuses some valid files (and says nothing why); Pillow gives the reason.
        try:
            with Image.open(io.BytesIO(buf.tobytes())) as im:
                im.load()
                if im.mode != "LA":
                    raise FlowFileError(f"{name} is a {im.mode} image, not a 2-channel "
                                        f"(grey + alpha) flow PNG")
                img = np.asarray(im)
        except FlowFileError:
            raise
        except Exception as e:  # Pillow raises many types for broken files
            raise FlowFileError(f"cannot decode flow file {name}: {type(e).__name__}: {e} "
                                "(corrupt or truncated)") from e
    if img.ndim == 3 and img.shape[2] == 4:  # OpenCV: grey + alpha → B = G = R = grey, A
        levels = img[:, :, (0, 3)]
    elif img.ndim == 3 and img.shape[2] == 2:
        levels = img
    else:
        raise FlowFileError(f"{name} is not a 2-channel (grey + alpha) flow PNG: decoded "
                            f"shape {img.shape}")
    if levels.dtype != np.uint8:
        raise FlowFileError(f"{name}: expected 8-bit channels, got {levels.dtype}")
    return dequantize(levels, step)


def write_flow(path: str | os.PathLike[str], flow: np.ndarray, step: float = DEFAULT_STEP) -> None:
    """Write a flow PNG atomically (a crash never leaves a half-written file)."""
    atomic_write_bytes(path, encode_png(flow, step))


def read_flow(path: str | os.PathLike[str], step: float = DEFAULT_STEP) -> np.ndarray:
    """Read a flow PNG → ``(2, h, w)`` float32.

    Raises:
        FlowFileError: the file is missing, unreadable or not a flow PNG (names the file).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise FlowFileError(f"flow file not found: {path}") from e
    except OSError as e:
        raise FlowFileError(f"cannot read flow file {path}: {e}") from e
    return decode_png(data, step, name=str(path))
