"""Occluders: things in front of the person that hide part of the body in some frames.

A pole or a sign is static in the scene (it moves with the background as the tracker's crop
slides); a car or another pedestrian crosses the crop during a window of frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

OCCLUDER_KINDS: tuple[str, ...] = ("pole", "sign", "car", "person")


@dataclass
class Occluder:
    """Something in front of the person, sliding across the crop.

    Attributes:
        kind: one of ``OCCLUDER_KINDS``.
        x0: left edge at ``t = 0`` in image px (before the background shift).
        vx: own horizontal speed (px/frame); static objects move with the background only.
        y0, w, h: top, width and height in px.
        colour, colour2: BGR colours.
    """

    kind: str
    x0: float
    vx: float
    y0: float
    w: float
    h: float
    colour: tuple[int, int, int]
    colour2: tuple[int, int, int]


def sample_occluder(rng: np.random.Generator, length: int, height: int, width: int
                    ) -> Occluder:
    """Draw an occluder for a tracklet of ``length`` frames of ``height × width``."""
    kind = str(OCCLUDER_KINDS[rng.choice(4, p=(0.25, 0.15, 0.3, 0.3))])
    colour = tuple(int(c) for c in rng.integers(20, 235, size=3))
    colour2 = tuple(int(c) for c in rng.integers(20, 235, size=3))
    if kind == "pole":
        w, h, y0 = rng.uniform(0.12, 0.22) * width, 1.2 * height, -0.1 * height
    elif kind == "sign":
        w, h = rng.uniform(0.4, 0.7) * width, rng.uniform(0.25, 0.4) * height
        y0 = rng.uniform(0.35, 0.6) * height
    elif kind == "car":
        w, h = rng.uniform(1.3, 2.0) * width, rng.uniform(0.3, 0.5) * height
        y0 = height - h + rng.uniform(0.0, 0.05) * height
    else:
        w, h = rng.uniform(0.35, 0.5) * width, rng.uniform(0.9, 1.05) * height
        y0 = height - h + rng.uniform(0.0, 0.08) * height
    if kind in ("car", "person"):
        # A passing object crosses the crop during a window of frames.
        duration = max(3.0, rng.uniform(0.35, 0.9) * length)
        t0 = rng.uniform(-0.2, 0.6) * length
        vx = (width + w) / duration * (1 if rng.random() < 0.5 else -1)
        start = -w if vx > 0 else float(width)
        x0 = start - vx * t0
    else:
        vx = 0.0
        x0 = rng.uniform(-0.3 * w, width - 0.7 * w)
    return Occluder(kind, float(x0), float(vx), float(y0), float(w), float(h), colour, colour2)


def draw_occluder(frame: np.ndarray, mask: np.ndarray, occ: Occluder, x: float, y: float
                  ) -> None:
    """Draw ``occ`` with its left/top edge at ``(x, y)`` on ``frame`` (BGR) and as 255 on
    ``mask`` (uint8, same size)."""
    x0, y0 = int(round(x)), int(round(y))
    x1, y1 = int(round(x + occ.w)), int(round(y + occ.h))
    if occ.kind == "pole":
        cv2.rectangle(frame, (x0, y0), (x1, y1), occ.colour, -1)
        cv2.line(frame, (x0 + max(1, (x1 - x0) // 3), y0), (x0 + max(1, (x1 - x0) // 3), y1),
                 occ.colour2, max(1, (x1 - x0) // 5))
        cv2.rectangle(mask, (x0, y0), (x1, y1), 255, -1)
    elif occ.kind == "sign":
        cv2.rectangle(frame, (x0, y0), (x1, y1), occ.colour, -1)
        cv2.rectangle(frame, (x0 + 2, y0 + 2), (x1 - 2, y0 + (y1 - y0) // 3), occ.colour2, -1)
        cv2.rectangle(mask, (x0, y0), (x1, y1), 255, -1)
    elif occ.kind == "car":
        cv2.rectangle(frame, (x0, y0), (x1, y1), occ.colour, -1)
        wy = y0 + (y1 - y0) // 3
        cv2.rectangle(frame, (x0 + (x1 - x0) // 8, y0 + 2), (x1 - (x1 - x0) // 8, wy),
                      occ.colour2, -1)
        r = max(2, (y1 - y0) // 4)
        for cx in (x0 + (x1 - x0) // 5, x1 - (x1 - x0) // 5):
            cv2.circle(frame, (cx, y1 - r // 2), r, (20, 20, 20), -1)
        cv2.rectangle(mask, (x0, y0), (x1, y1), 255, -1)
    else:  # another pedestrian walking past
        w, h = x1 - x0, y1 - y0
        head_r = max(2, w // 4)
        cx = (x0 + x1) // 2
        body = np.array([[x0, y0 + 2 * head_r], [x1, y0 + 2 * head_r],
                         [x1 - w // 6, y1], [x0 + w // 6, y1]], dtype=np.int32)
        for img, c1, c2 in ((frame, occ.colour, occ.colour2), (mask, 255, 255)):
            cv2.fillConvexPoly(img, body, c1)
            cv2.rectangle(img, (x0 + w // 6, y0 + int(0.55 * h)), (x1 - w // 6, y1), c2, -1)
            cv2.circle(img, (cx, y0 + head_r), head_r, c1 if img is mask else (120, 150, 190),
                       -1)
