"""Small raster helpers shared by the figures: fonts, text, tiles, borders, image files.

Figures made of many photos (ranked lists, attention overlays) are composed directly as
``(H, W, 3)`` uint8 arrays and labelled with Pillow rather than drawn through matplotlib:
it is several times faster, the text size is exact in pixels (readable labels whatever the
figure's width), and the result is a plain array that can be saved as a palette PNG or a
JPEG of a few tens of kilobytes.

Fonts: DejaVu Sans, which ships inside matplotlib (a core dependency), so labels look the
same on every machine; Pillow's built-in font is the fallback.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from videoreid.utils.io import atomic_write_bytes

__all__ = [
    "font",
    "text_size",
    "label_bar",
    "add_border",
    "hstack",
    "vstack",
    "pad_to",
    "encode_image",
    "save_image",
    "data_uri",
]

WHITE = (255, 255, 255)
BLACK = (20, 20, 20)


@lru_cache(maxsize=16)
def font(size: int, bold: bool = False):  # -> PIL.ImageFont.FreeTypeFont
    """DejaVu Sans (bold) at ``size`` pixels."""
    import matplotlib
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:  # a matplotlib without its fonts: Pillow's own scalable font
        return ImageFont.load_default(size)


def text_size(text: str, size: int, bold: bool = False) -> tuple[int, int]:
    """``(width, height)`` in pixels of one line of ``text``."""
    from PIL import Image, ImageDraw

    box = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font(size, bold))
    return int(box[2] - box[0]), int(box[3])


def label_bar(
    lines: Sequence[str] | str,
    width: int,
    size: int = 15,
    *,
    color: tuple[int, int, int] = BLACK,
    background: tuple[int, int, int] = WHITE,
    bold_first: bool = False,
    align: str = "left",
) -> np.ndarray:
    """``(h, width, 3)`` uint8: lines of text on a plain background (clipped to ``width``)."""
    from PIL import Image, ImageDraw

    lines = [lines] if isinstance(lines, str) else list(lines)
    line_h = int(size * 1.3)
    img = Image.new("RGB", (max(1, width), line_h * len(lines) + 4), background)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        f = font(size, bold_first and i == 0)
        x = 3
        if align == "center":
            x = max(0, (width - text_size(line, size, bold_first and i == 0)[0]) // 2)
        draw.text((x, 2 + i * line_h), line, fill=color, font=f)
    return np.asarray(img)


def add_border(img: np.ndarray, width: int, color: Sequence[int]) -> np.ndarray:
    """``img`` framed by ``width`` pixels of ``color``."""
    out = np.empty((img.shape[0] + 2 * width, img.shape[1] + 2 * width, 3), dtype=np.uint8)
    out[:] = np.asarray(color, dtype=np.uint8)
    out[width:width + img.shape[0], width:width + img.shape[1]] = img
    return out


def pad_to(img: np.ndarray, height: int | None = None, width: int | None = None,
           color: Sequence[int] = WHITE) -> np.ndarray:
    """Pad ``img`` at the bottom/right with ``color`` to at least ``height × width``."""
    h = max(img.shape[0], height or 0)
    w = max(img.shape[1], width or 0)
    if (h, w) == img.shape[:2]:
        return img
    out = np.empty((h, w, 3), dtype=np.uint8)
    out[:] = np.asarray(color, dtype=np.uint8)
    out[:img.shape[0], :img.shape[1]] = img
    return out


def hstack(images: Sequence[np.ndarray], gap: int = 0, color: Sequence[int] = WHITE) -> np.ndarray:
    """Images side by side (top-aligned, padded to the tallest), ``gap`` pixels apart."""
    # vstack of the transposed images: padding bottom/right there is right/bottom here
    t = vstack([im.transpose(1, 0, 2) for im in images], gap, color)
    return np.ascontiguousarray(t.transpose(1, 0, 2))


def vstack(images: Sequence[np.ndarray], gap: int = 0, color: Sequence[int] = WHITE) -> np.ndarray:
    """Images one below the other (left-aligned, padded to the widest), ``gap`` pixels apart."""
    w = max(im.shape[1] for im in images)
    parts = []
    for i, im in enumerate(images):
        if i and gap:
            parts.append(np.full((gap, w, 3), np.asarray(color, np.uint8)))
        parts.append(pad_to(im, None, w, color))
    return np.concatenate(parts, axis=0)


def encode_image(img: np.ndarray, fmt: str = "png", *, quality: int = 85,
                 colors: int = 256) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 array.

    Args:
        fmt: ``"png"`` (quantised to a ``colors``-entry palette: photos stay recognisable and
            the file is 3–4× smaller than true-colour PNG) or ``"jpeg"``.
        quality: JPEG quality.
        colors: palette size for PNG.
    """
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    if fmt == "png":
        im.quantize(colors=colors, method=Image.Quantize.FASTOCTREE).save(buf, "PNG", optimize=True)
    elif fmt in ("jpeg", "jpg"):
        im.save(buf, "JPEG", quality=quality, optimize=True)
    else:
        raise ValueError(f"image format must be 'png' or 'jpeg', got {fmt!r}")
    return buf.getvalue()


def save_image(img: np.ndarray, path: str | Path, **kwargs) -> Path:
    """Write ``img`` atomically; the format follows the suffix (``.png``, ``.jpg``)."""
    path = Path(path)
    fmt = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unsupported image suffix (use .png or .jpg)")
    atomic_write_bytes(path, encode_image(img, fmt, **kwargs))
    return path


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,...`` for embedding a file in HTML."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
