"""The random state of one tracklet: viewpoint, gait phase, drift, box jitter, detector
failures, background scroll, occluder, lighting and noise offsets.

Drawn once per tracklet from its own generator, so tracklets render identically whatever
order they are rendered in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videoreid.data.synthetic.camera import Camera
from videoreid.data.synthetic.occluders import Occluder, sample_occluder
from videoreid.data.synthetic.presets import Knobs
from videoreid.data.synthetic.skeleton import VIEW_YAW, VIEWS


@dataclass
class TrackletSpec:
    """Everything random about one tracklet (drawn by `sample_spec`)."""

    length: int
    yaw: float
    yaw_drift: float
    phase0: float
    motion: np.ndarray  # (2,) nominal drift px/frame
    offset0: np.ndarray  # (2,)
    jitter: np.ndarray  # (T, 2) int
    scale: np.ndarray  # (T,)
    failure: np.ndarray  # (T,) bool
    failure_offset: np.ndarray  # (T, 2)
    bg_origin: tuple[int, int]
    bg_velocity: float
    occluder: Occluder | None
    gain: float
    noise_offsets: np.ndarray  # (T, 2) int
    confidence: np.ndarray  # (T, 18) detector-like scores of visible joints
    person: bool = True


def sample_spec(rng: np.random.Generator, camera: Camera, length: int, knobs: Knobs,
                height: int, width: int, failure_rate: float | None = None,
                person: bool = True, view: str | None = None) -> TrackletSpec:
    """Draw the random state of one tracklet.

    Args:
        rng: generator (one per tracklet, so rendering order does not matter).
        camera: the camera.
        length: number of frames ``T``.
        knobs: difficulty knobs.
        height, width: frame size.
        failure_rate: override of ``knobs.failure_rate`` (junk tracklets use 1.0).
        person: False renders background only (a false detection).
        view: force a named view instead of drawing one from the camera's distribution.
    """
    T = int(length)
    if view is None:
        view = str(VIEWS[rng.choice(4, p=np.asarray(camera.view_probs))])
    yaw = VIEW_YAW[view] + float(rng.normal(0.0, 0.2))
    yaw_drift = float(rng.uniform(-0.8, 0.8)) / max(T, 1) if rng.random() < 0.15 else 0.0
    speed = knobs.motion * float(rng.uniform(0.3, 1.0)) * width / 64.0
    if view in ("left", "right"):
        sign = 1.0 if view == "right" else -1.0
        motion = np.array([sign * speed, rng.uniform(-0.15, 0.15) * speed])
        bg_velocity = -sign * camera.bg_speed
    else:
        motion = np.array([rng.uniform(-0.4, 0.4) * speed,
                           (0.25 if view == "front" else -0.25) * speed])
        bg_velocity = 0.0
    # Keep the total drift inside the crop: long tracklets drift slower.
    span = max(T - 1, 1)
    limit = np.array([0.25 * width, 0.08 * height]) / span
    motion = np.clip(motion, -limit, limit)
    offset0 = -motion * (T - 1) / 2.0 + rng.uniform(-0.03, 0.03, size=2) * (width, height / 2)
    jitter = np.stack([np.round(rng.normal(0.0, knobs.jitter * width, T)),
                       np.round(rng.normal(0.0, knobs.jitter * height / 2, T))], axis=1)
    scale = np.clip(1.0 + rng.normal(0.0, knobs.scale_jitter, T), 0.8, 1.2)
    rate = knobs.failure_rate if failure_rate is None else failure_rate
    failure = rng.random(T) < rate
    failure_offset = np.zeros((T, 2))
    mode = rng.integers(0, 3, size=T)
    side = np.where(rng.random(T) < 0.5, -1.0, 1.0)
    amount = rng.uniform(0.35, 0.75, size=T)
    shift_x = failure & (mode == 0)  # box beside the person: mostly background
    cut_y = failure & (mode == 1)  # box cuts the person in half
    too_big = failure & (mode == 2)  # box much too large: small person, off-centre
    failure_offset[shift_x, 0] = (side * amount * width)[shift_x]
    failure_offset[cut_y, 1] = (side * amount * 0.7 * height)[cut_y]
    failure_offset[too_big, 0] = (side * amount * 0.3 * width)[too_big]
    scale[too_big] *= rng.uniform(0.45, 0.65, size=int(too_big.sum()))
    jitter[failure] = 0
    hb, wb = camera.background.shape[:2]
    # Start where the whole scroll fits on the canvas (else it stops at the edge).
    max_x, span = wb - width, int(np.ceil(abs(bg_velocity) * (T - 1)))
    if span <= max_x:
        lo_x, hi_x = (0, max_x - span) if bg_velocity < 0 else (span, max_x)
    else:
        lo_x = hi_x = 0 if bg_velocity < 0 else max_x
    bg_origin = (int(rng.integers(lo_x, hi_x + 1)), int(rng.integers(0, max(1, hb - height + 1))))
    occluder = (sample_occluder(rng, T, height, width)
                if rng.random() < knobs.occluder_prob else None)
    return TrackletSpec(
        length=T, yaw=yaw, yaw_drift=yaw_drift, phase0=float(rng.uniform(0, 2 * np.pi)),
        motion=motion, offset0=offset0, jitter=jitter.astype(np.int64), scale=scale,
        failure=failure, failure_offset=failure_offset, bg_origin=bg_origin,
        bg_velocity=float(bg_velocity), occluder=occluder, gain=float(rng.uniform(0.92, 1.08)),
        noise_offsets=np.stack([rng.integers(0, height, T), rng.integers(0, width, T)], axis=1),
        confidence=rng.uniform(0.55, 0.95, size=(T, 18)), person=person,
    )


