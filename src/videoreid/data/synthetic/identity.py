"""Procedural identities: body shape, gait, clothing colours and patterns, accessories.

An identity is everything that stays the same for a person across cameras. Look-alike
identities copy another identity and change exactly ONE attribute: an accessory (backpack,
bag, hat) or a clothing pattern. Several of those differences are visible only from some
viewpoints (a backpack is hidden behind the torso in a front view, a chest logo is seen only
from the front), which is what makes the ``occlusion`` preset hard for frame-averaging models.

Colours are BGR ``uint8`` triples (OpenCV's order) throughout the renderer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from videoreid.data.synthetic.skeleton import BodyShape, Gait

UPPER_PATTERNS: tuple[str, ...] = ("solid", "stripes", "checks", "logo")
LOWER_PATTERNS: tuple[str, ...] = ("solid", "stripes", "checks")
ACCESSORIES: tuple[str, ...] = ("backpack", "bag", "hat")

# Clothing colours (BGR) with sampling weights: neutral and dark clothes dominate street scenes.
_CLOTHES: tuple[tuple[tuple[int, int, int], float], ...] = (
    ((25, 25, 25), 3.0),     # black
    ((235, 235, 235), 2.0),  # white
    ((128, 128, 128), 2.0),  # grey
    ((90, 40, 20), 2.0),     # navy
    ((170, 110, 40), 1.0),   # denim blue
    ((40, 40, 190), 1.0),    # red
    ((40, 130, 40), 1.0),    # green
    ((140, 180, 200), 1.0),  # beige
    ((30, 70, 110), 1.0),    # brown
    ((30, 200, 230), 0.6),   # yellow
    ((150, 60, 150), 0.6),   # purple
    ((180, 180, 60), 0.6),   # teal
    ((60, 120, 240), 0.6),   # orange
    ((180, 130, 230), 0.5),  # pink
)
_SKIN: tuple[tuple[int, int, int], ...] = (
    (190, 210, 240), (160, 190, 225), (120, 160, 205), (90, 125, 170), (60, 85, 120),
)
_HAIR: tuple[tuple[int, int, int], ...] = (
    (20, 20, 25), (30, 45, 70), (40, 80, 120), (90, 160, 200), (160, 160, 165),
)

# Part labels drawn into the label map. Contiguous ranges let the compositor select the
# textured garment parts with one cv2.inRange call.
BG = 0
HEAD, HAIR, HAT, NECK = 1, 2, 3, 4
TORSO = 5
R_UPPER_ARM, L_UPPER_ARM, R_FOREARM, L_FOREARM, R_HAND, L_HAND = 6, 7, 8, 9, 10, 11
PELVIS, R_THIGH, L_THIGH, R_SHIN, L_SHIN = 12, 13, 14, 15, 16
R_SHOE, L_SHOE = 17, 18
BACKPACK, BAG, STRAP, LOGO = 19, 20, 21, 22
NUM_LABELS = 23
RIGHT_PARTS = (R_UPPER_ARM, R_FOREARM, R_HAND, R_THIGH, R_SHIN, R_SHOE)
LEFT_PARTS = (L_UPPER_ARM, L_FOREARM, L_HAND, L_THIGH, L_SHIN, L_SHOE)


@dataclass(frozen=True)
class Garment:
    """One piece of clothing.

    Attributes:
        colour: main BGR colour.
        colour2: second colour of a pattern (stripes, checks, logo).
        pattern: one of ``UPPER_PATTERNS`` / ``LOWER_PATTERNS``.
        period: pattern period in body-height units.
        cut: ``"long"``/``"short"`` sleeves (upper) or ``"trousers"``/``"shorts"`` (lower).
    """

    colour: tuple[int, int, int]
    colour2: tuple[int, int, int]
    pattern: str = "solid"
    period: float = 0.06
    cut: str = "long"


@dataclass(frozen=True)
class Identity:
    """Everything about a person that stays the same across cameras.

    Attributes:
        index: position in the generator's identity list.
        shape: body proportions.
        gait: walking-cycle parameters.
        skin, hair: BGR colours; ``hair_style`` is ``"short"`` or ``"long"``.
        upper, lower: garments.
        shoes: BGR colour.
        accessories: subset of ``ACCESSORIES``.
        accessory_colours: BGR colour per accessory name.
        logo_shape: ``"circle"``/``"square"``/``"triangle"`` (used when upper pattern is logo).
        lookalike_of: index of the identity this one copies, if any.
        differs_in: the single attribute changed from ``lookalike_of`` (e.g.
            ``"accessory:backpack"``, ``"upper_pattern"``).
    """

    index: int
    shape: BodyShape
    gait: Gait
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: str
    upper: Garment
    lower: Garment
    shoes: tuple[int, int, int]
    accessories: frozenset[str] = frozenset()
    accessory_colours: dict[str, tuple[int, int, int]] = field(default_factory=dict, compare=False)
    logo_shape: str = "circle"
    lookalike_of: int | None = None
    differs_in: str | None = None

    def palette(self) -> np.ndarray:
        """Colour of every part label, shape ``(NUM_LABELS, 3)`` uint8 BGR."""
        pal = np.zeros((NUM_LABELS, 3), dtype=np.uint8)
        pal[[HEAD, NECK, R_HAND, L_HAND]] = self.skin
        pal[HAIR] = self.hair
        pal[HAT] = self.accessory_colours.get("hat", (60, 60, 60))
        pal[[TORSO, R_UPPER_ARM, L_UPPER_ARM]] = self.upper.colour
        sleeve = self.upper.colour if self.upper.cut == "long" else self.skin
        pal[[R_FOREARM, L_FOREARM]] = sleeve
        pal[[PELVIS, R_THIGH, L_THIGH]] = self.lower.colour
        shin = self.lower.colour if self.lower.cut == "trousers" else self.skin
        pal[[R_SHIN, L_SHIN]] = shin
        pal[[R_SHOE, L_SHOE]] = self.shoes
        pal[BACKPACK] = self.accessory_colours.get("backpack", (50, 50, 50))
        pal[BAG] = self.accessory_colours.get("bag", (40, 60, 90))
        pal[STRAP] = np.asarray(pal[BACKPACK if "backpack" in self.accessories else BAG]) // 2
        pal[LOGO] = self.upper.colour2
        return pal

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary (for the manifest)."""
        return {
            "index": self.index,
            "upper": {"colour": list(self.upper.colour), "colour2": list(self.upper.colour2),
                      "pattern": self.upper.pattern, "cut": self.upper.cut},
            "lower": {"colour": list(self.lower.colour), "colour2": list(self.lower.colour2),
                      "pattern": self.lower.pattern, "cut": self.lower.cut},
            "accessories": sorted(self.accessories),
            "hair_style": self.hair_style,
            "gait_period": round(self.gait.period, 3),
            "build": round(self.shape.thickness, 3),
            "lookalike_of": self.lookalike_of,
            "differs_in": self.differs_in,
        }


def _jitter_colour(rng: np.random.Generator, c: tuple[int, int, int], amount: int = 18
                   ) -> tuple[int, int, int]:
    v = np.clip(np.asarray(c) + rng.integers(-amount, amount + 1, size=3), 0, 255)
    return (int(v[0]), int(v[1]), int(v[2]))


def _clothing_colour(rng: np.random.Generator, avoid: tuple[int, int, int] | None = None
                     ) -> tuple[int, int, int]:
    weights = np.array([w for _, w in _CLOTHES])
    for _ in range(8):
        c = _CLOTHES[rng.choice(len(_CLOTHES), p=weights / weights.sum())][0]
        if avoid is None or np.abs(np.subtract(c, avoid)).sum() > 120:
            break
    return _jitter_colour(rng, c)


def _garment(rng: np.random.Generator, patterns: tuple[str, ...], probs: tuple[float, ...],
             cuts: tuple[str, ...], cut_probs: tuple[float, float]) -> Garment:
    colour = _clothing_colour(rng)
    return Garment(colour=colour, colour2=_clothing_colour(rng, avoid=colour),
                   pattern=str(rng.choice(patterns, p=probs)),
                   period=float(rng.uniform(0.045, 0.085)),
                   cut=str(rng.choice(cuts, p=cut_probs)))


def sample_identity(rng: np.random.Generator, index: int) -> Identity:
    """Draw a new random identity."""
    build = float(rng.uniform(0.85, 1.2))
    shape = BodyShape(
        shoulder_half=float(rng.uniform(0.1, 0.128)) * (0.6 + 0.4 * build),
        hip_half=float(rng.uniform(0.075, 0.095)) * (0.6 + 0.4 * build),
        torso_depth_half=float(rng.uniform(0.055, 0.07)) * build,
        head_rx=float(rng.uniform(0.057, 0.066)),
        head_ry=float(rng.uniform(0.069, 0.078)),
        hip_height=float(rng.uniform(0.5, 0.545)),
        thickness=build,
        height=float(rng.uniform(0.93, 1.0)),
    )
    gait = Gait(period=float(rng.uniform(18.0, 30.0)), hip_amp=float(rng.uniform(0.3, 0.5)),
                knee_amp=float(rng.uniform(0.6, 0.95)), arm_amp=float(rng.uniform(0.2, 0.5)),
                bob=float(rng.uniform(0.004, 0.012)))
    upper = _garment(rng, UPPER_PATTERNS, (0.45, 0.22, 0.13, 0.2), ("long", "short"), (0.6, 0.4))
    lower = _garment(rng, LOWER_PATTERNS, (0.75, 0.1, 0.15), ("trousers", "shorts"), (0.8, 0.2))
    accessories = frozenset(a for a, p in zip(ACCESSORIES, (0.3, 0.25, 0.2), strict=True)
                            if rng.random() < p)
    colours = {"backpack": _clothing_colour(rng), "bag": _clothing_colour(rng),
               "hat": _clothing_colour(rng)}
    return Identity(
        index=index, shape=shape, gait=gait,
        skin=_jitter_colour(rng, _SKIN[rng.integers(len(_SKIN))], 10),
        hair=_jitter_colour(rng, _HAIR[rng.integers(len(_HAIR))], 10),
        hair_style=str(rng.choice(("short", "long"), p=(0.65, 0.35))),
        upper=upper, lower=lower,
        shoes=_jitter_colour(rng, ((20, 20, 20), (230, 230, 230), (60, 70, 90))[rng.integers(3)]),
        accessories=accessories, accessory_colours=colours,
        logo_shape=str(rng.choice(("circle", "square", "triangle"))),
    )


def make_lookalike(base: Identity, rng: np.random.Generator, index: int) -> Identity:
    """Copy ``base`` and change exactly one accessory or one clothing pattern."""
    options = [f"accessory:{a}" for a in ACCESSORIES] + ["upper_pattern", "lower_pattern"]
    change = str(options[rng.integers(len(options))])
    acc, upper, lower = set(base.accessories), base.upper, base.lower
    if change.startswith("accessory:"):
        acc ^= {change.split(":", 1)[1]}
    elif change == "upper_pattern":
        choices = [p for p in UPPER_PATTERNS if p != upper.pattern]
        upper = dataclasses.replace(upper, pattern=str(choices[rng.integers(len(choices))]))
    else:
        choices = [p for p in LOWER_PATTERNS if p != lower.pattern]
        lower = dataclasses.replace(lower, pattern=str(choices[rng.integers(len(choices))]))
    return dataclasses.replace(base, index=index, accessories=frozenset(acc), upper=upper,
                               lower=lower, lookalike_of=base.index, differs_in=change)


def sample_identities(n: int, rng: np.random.Generator, lookalike_fraction: float = 0.0,
                      groups: list[list[int]] | None = None) -> list[Identity]:
    """Draw ``n`` identities, a fraction of which are look-alikes of another one.

    Look-alike pairs are formed WITHIN each group (e.g. the test identities), so that a test
    gallery really contains the confusable pair.

    Args:
        n: number of identities.
        rng: random generator.
        lookalike_fraction: fraction in ``[0, 0.5]`` of each group made of look-alikes.
        groups: lists of identity indices; default one group with all.

    Returns:
        list of ``n`` identities, ``identities[i].index == i``.
    """
    if not 0.0 <= lookalike_fraction <= 0.5:
        raise ValueError(f"lookalike_fraction must be in [0, 0.5], got {lookalike_fraction}")
    ids: list[Identity] = [sample_identity(rng, i) for i in range(n)]
    for group in groups if groups is not None else [list(range(n))]:
        k = int(round(lookalike_fraction * len(group)))
        if k == 0:
            continue
        order = [group[i] for i in rng.permutation(len(group))]
        for copy_idx, base_idx in zip(order[:k], order[k:2 * k], strict=False):
            ids[copy_idx] = make_lookalike(ids[base_idx], rng, copy_idx)
    return ids


def pattern_texture(garment: Garment, scale: float, height: int, width: int
                    ) -> np.ndarray | None:
    """A garment texture canvas aligned to the body, or None for plain colours.

    The canvas is ``(2 * height, 2 * width, 3)``; its centre pixel maps to the body's neck, so
    the compositor slices ``canvas[cy - neck_y : ..., cx - neck_x : ...]`` each frame and the
    pattern moves with the body.

    Args:
        garment: the garment.
        scale: body height in pixels.
        height, width: frame size.

    Returns:
        ``(2 * height, 2 * width, 3)`` uint8 BGR, or None for ``solid`` and ``logo`` (the logo
        is drawn as its own part because it is seen only from the front).
    """
    pattern = garment.pattern
    if pattern in ("solid", "logo"):
        return None
    period = max(2.0, garment.period * scale)
    yy = np.arange(2 * height, dtype=np.float32)[:, None] - height
    xx = np.arange(2 * width, dtype=np.float32)[None, :] - width
    band_y = (np.floor(yy / (period / 2)).astype(np.int64) & 1).astype(bool)
    if pattern == "stripes":
        mask = np.broadcast_to(band_y, (2 * height, 2 * width))
    elif pattern == "checks":
        band_x = (np.floor(xx / (period / 2)).astype(np.int64) & 1).astype(bool)
        mask = band_y ^ band_x
    else:
        raise ValueError(f"unknown pattern {pattern!r}; expected one of {UPPER_PATTERNS}")
    tex = np.empty((2 * height, 2 * width, 3), dtype=np.uint8)
    tex[...] = garment.colour
    tex[mask] = garment.colour2
    return tex
