"""Per-camera appearance: background clutter, illumination, colour cast, blur, noise, views.

Each camera owns a background canvas wider than a frame (the tracker's crop slides over it as
the person walks), a brightness gain and per-channel colour cast, a blur level, a noise level,
how much of the box the person fills, and a distribution over viewpoints (a corridor camera
sees people from the side, a doorway camera from the front or back).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from videoreid.data.synthetic.presets import Knobs
from videoreid.data.synthetic.skeleton import VIEWS


@dataclass
class Camera:
    """One camera's fixed appearance.

    Attributes:
        index: 0-based camera id.
        background: ``(Hb, Wb, 3)`` uint8 BGR canvas, ``Hb >= 2 H``, ``Wb >= 4 W``.
        transform: ``(3, 4)`` float32 colour transform (gain × cast, offset) for cv2.transform.
        gain: brightness gain.
        cast: per-channel (BGR) multiplicative colour cast.
        blur_sigma: Gaussian blur sigma in pixels (0 = none).
        noise: noise amplitude in uint8 levels.
        fill: fraction of the frame height a person of nominal height fills.
        y_bias: vertical offset of the person in the box, fraction of frame height.
        view_probs: probabilities of ``VIEWS`` (front, back, left, right).
        bg_speed: how fast the background scrolls when a person walks sideways (px/frame).
    """

    index: int
    background: np.ndarray
    transform: np.ndarray
    gain: float
    cast: tuple[float, float, float]
    blur_sigma: float
    noise: float
    fill: float
    y_bias: float
    view_probs: tuple[float, float, float, float]
    bg_speed: float

    def describe(self) -> dict:
        return {"index": self.index, "gain": round(self.gain, 4),
                "cast": [round(c, 4) for c in self.cast], "blur_sigma": round(self.blur_sigma, 4),
                "noise": round(self.noise, 3), "fill": round(self.fill, 4),
                "view_probs": dict(zip(VIEWS, (round(p, 4) for p in self.view_probs),
                                       strict=True))}


def _muted(rng: np.random.Generator, lo: int = 30, hi: int = 220, saturation: float = 0.4
           ) -> tuple[int, int, int]:
    """A random colour pulled toward grey: street and indoor scenes are mostly desaturated."""
    c = rng.integers(0, 256, size=3).astype(np.float64)
    grey = rng.uniform(lo, hi)
    v = np.clip(grey + saturation * (c - c.mean()), 0, 255)
    return (int(v[0]), int(v[1]), int(v[2]))


def make_background(rng: np.random.Generator, height: int, width: int, clutter: float
                    ) -> np.ndarray:
    """A procedural street/indoor background: wall, floor, windows, signs, poles, far people.

    Returns:
        ``(height, width, 3)`` uint8 BGR.
    """
    wall = np.asarray(_muted(rng, 70, 200, 0.35), dtype=np.float32)
    floor = np.asarray(_muted(rng, 50, 150, 0.25), dtype=np.float32)
    horizon = int(height * rng.uniform(0.55, 0.75))
    img = np.empty((height, width, 3), dtype=np.float32)
    ramp_w = np.linspace(1.08, 0.92, horizon, dtype=np.float32)[:, None, None]
    ramp_f = np.linspace(0.85, 1.1, height - horizon, dtype=np.float32)[:, None, None]
    img[:horizon] = wall[None, None, :] * ramp_w
    img[horizon:] = floor[None, None, :] * ramp_f
    img = np.clip(img, 0, 255).astype(np.uint8)
    scale = height / 256.0
    n_rect = int(round(clutter * width / height * 14))
    for _ in range(n_rect):  # windows, doors, shop signs, posters
        w = int(rng.uniform(10, 70) * scale * 2)
        h = int(rng.uniform(10, 90) * scale * 2)
        x = int(rng.integers(-w // 2, width))
        y = int(rng.integers(0, max(1, horizon - h // 3)))
        colour = _muted(rng, 20, 235, 0.6)
        cv2.rectangle(img, (x, y), (x + w, y + h), colour, -1)
        if rng.random() < 0.5:  # frame / mullion
            cv2.rectangle(img, (x, y), (x + w, y + h), tuple(c // 2 for c in colour),
                          max(1, int(2 * scale)))
    for _ in range(int(round(clutter * width / height * 5))):  # poles, pillars, lamp posts
        x = int(rng.integers(0, width))
        w = max(1, int(rng.uniform(2, 12) * scale * 2))
        colour = _muted(rng, 30, 180, 0.3)
        cv2.rectangle(img, (x, 0), (x + w, horizon + int(rng.uniform(0, 20) * scale)), colour, -1)
    for _ in range(int(round(clutter * width / height * 4))):  # far-away people / objects
        cx = int(rng.integers(0, width))
        cy = int(horizon - rng.uniform(0, 30) * scale)
        colour = _muted(rng, 20, 200, 0.7)
        cv2.ellipse(img, (cx, cy), (max(1, int(6 * scale)), max(2, int(22 * scale))), 0, 0, 360,
                    colour, -1)
    step = max(4, int(40 * scale))  # floor tiles
    for y in range(horizon + step // 2, height, step):
        cv2.line(img, (0, y), (width, y), tuple(int(c) for c in (floor * 0.75)), 1)
    if clutter > 0:
        speck = rng.integers(0, 255, size=(height // 4 + 1, width // 4 + 1, 1), dtype=np.uint8)
        speck = cv2.resize(speck, (width, height), interpolation=cv2.INTER_LINEAR)
        img = cv2.addWeighted(img, 1.0, cv2.cvtColor(speck, cv2.COLOR_GRAY2BGR),
                              0.08 * min(clutter, 1.5), -10.0 * min(clutter, 1.5))
    return cv2.GaussianBlur(img, (0, 0), 0.8 + 0.6 * scale)


def sample_camera(rng: np.random.Generator, index: int, knobs: Knobs, height: int, width: int
                  ) -> Camera:
    """Draw one camera's appearance for frames of ``height × width``."""
    lo, hi = knobs.illumination
    gain = float(rng.uniform(lo, hi))
    cast = tuple(float(1.0 + rng.uniform(-knobs.colour_cast, knobs.colour_cast))
                 for _ in range(3))
    m = np.zeros((3, 4), dtype=np.float32)
    for c in range(3):
        m[c, c] = gain * cast[c]
    m[:, 3] = float(rng.uniform(-8, 8))  # black level
    dirichlet = rng.dirichlet(np.full(4, 0.9))
    # Every camera sees every view sometimes: mix with a uniform floor.
    view_probs = 0.8 * dirichlet + 0.05
    view_probs = view_probs / view_probs.sum()
    bg = make_background(rng, 2 * height, 4 * width, knobs.clutter)
    return Camera(
        index=index, background=bg, transform=m, gain=gain,
        cast=(cast[0], cast[1], cast[2]),
        blur_sigma=float(rng.uniform(0.0, knobs.blur)) * width / 64.0,
        noise=float(rng.uniform(0.3, 1.0) * knobs.noise),
        fill=float(rng.uniform(0.8, 0.9)),
        y_bias=float(rng.uniform(-0.025, 0.025)),
        view_probs=(float(view_probs[0]), float(view_probs[1]), float(view_probs[2]),
                    float(view_probs[3])),
        bg_speed=float(rng.uniform(0.3, 1.0)) * width / 64.0,
    )


def noise_tiles(rng: np.random.Generator, height: int, width: int, amplitude: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative parts of a zero-mean noise field, ``(2H, 2W, 3)`` uint8 each.

    Adding one and subtracting the other with OpenCV's saturating arithmetic applies signed
    noise in two cheap calls; frames slice the tiles at random offsets.
    """
    n = rng.normal(0.0, amplitude / 2.0, size=(2 * height, 2 * width, 3))
    n = np.clip(np.round(n), -amplitude, amplitude)
    return (np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8))
