"""Difficulty knobs of the synthetic generator and the named presets.

``occlusion`` is the project's standard synthetic benchmark on which method issues compare
ablation variants: frequent moving occluders, strong box misalignment, occasional detector
failures and many look-alike identities that differ only in one accessory or one clothing
pattern (often visible from some viewpoints only). ``easy`` is for smoke tests and the demo.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Knobs:
    """Difficulty settings.

    Attributes:
        occluder_prob: probability that a tracklet contains an occlusion event (a pole, car,
            sign or another person sliding across the crop in front of the body).
        jitter: per-frame bounding-box misalignment, standard deviation as a fraction of the
            frame width (x) and height (y, halved).
        scale_jitter: per-frame box-scale noise (standard deviation, relative).
        blur: maximum Gaussian blur sigma in pixels at 64 px width (per camera, in [0, blur]).
        noise: maximum per-pixel sensor noise amplitude (uint8 levels, per camera).
        lookalike_fraction: fraction of identities (within train and within test) that copy
            another identity but for one accessory or one clothing pattern.
        failure_rate: per-frame probability of a detector failure (box badly off the person,
            frame mostly background, or box much too large).
        illumination: ``(min, max)`` camera brightness gain.
        colour_cast: maximum per-channel colour-cast deviation of a camera (relative).
        clutter: background clutter density (0 = plain wall and floor).
        motion: maximum body drift in the crop, px/frame at 64 px width (the nominal motion).
    """

    occluder_prob: float = 0.25
    jitter: float = 0.03
    scale_jitter: float = 0.03
    blur: float = 0.8
    noise: float = 6.0
    lookalike_fraction: float = 0.2
    failure_rate: float = 0.02
    illumination: tuple[float, float] = (0.7, 1.3)
    colour_cast: float = 0.12
    clutter: float = 1.0
    motion: float = 1.0

    def __post_init__(self) -> None:
        for name in ("occluder_prob", "failure_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"knob {name} must be in [0, 1], got {v}")
        if not 0.0 <= self.lookalike_fraction <= 0.5:
            raise ValueError(f"knob lookalike_fraction must be in [0, 0.5], got "
                             f"{self.lookalike_fraction}")
        lo, hi = self.illumination
        if not 0.0 < lo <= hi:
            raise ValueError(f"knob illumination must be (min, max) with 0 < min <= max, got "
                             f"{self.illumination}")
        for name in ("jitter", "scale_jitter", "blur", "noise", "colour_cast", "clutter",
                     "motion"):
            if getattr(self, name) < 0:
                raise ValueError(f"knob {name} must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["illumination"] = list(self.illumination)
        return d


KNOB_HELP: dict[str, str] = {
    "occluder_prob": "probability of an occlusion event per tracklet",
    "jitter": "box misalignment std, fraction of the frame width",
    "scale_jitter": "box scale noise std (relative)",
    "blur": "max camera blur sigma (px at 64 px width)",
    "noise": "max sensor noise amplitude (uint8 levels)",
    "lookalike_fraction": "fraction of identities that copy another but for one attribute",
    "failure_rate": "per-frame detector-failure probability",
    "illumination": "camera brightness gain range",
    "colour_cast": "max per-channel camera colour cast (relative)",
    "clutter": "background clutter density",
    "motion": "max body drift in the crop, px/frame at 64 px width",
}

PRESETS: dict[str, Knobs] = {
    "default": Knobs(),
    "easy": Knobs(occluder_prob=0.0, jitter=0.0, scale_jitter=0.0, blur=0.3, noise=2.0,
                  lookalike_fraction=0.0, failure_rate=0.0, illumination=(0.9, 1.1),
                  colour_cast=0.04, clutter=0.4, motion=1.0),
    "occlusion": Knobs(occluder_prob=0.75, jitter=0.07, scale_jitter=0.06, blur=1.0, noise=7.0,
                       lookalike_fraction=0.5, failure_rate=0.05, illumination=(0.65, 1.35),
                       colour_cast=0.15, clutter=1.3, motion=1.0),
}


def knob_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(Knobs))


def get_knobs(preset: str = "default", **overrides: Any) -> Knobs:
    """The knobs of a named preset with some values overridden.

    Raises:
        ValueError: unknown preset or knob name (the message lists the valid ones).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; choose from {sorted(PRESETS)}")
    unknown = sorted(set(overrides) - set(knob_names()))
    if unknown:
        raise ValueError(f"unknown synthetic knob(s) {unknown}; valid knobs: {list(knob_names())}")
    clean = {k: (tuple(v) if k == "illumination" else v) for k, v in overrides.items()
             if v is not None}
    return dataclasses.replace(PRESETS[preset], **clean)
