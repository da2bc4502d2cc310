"""A person as drawable parts: capsules (limbs), ellipses (head, hair, hat) and convex
polygons (torso, pelvis, backpack, bag, logo), ordered by depth each frame.

Geometry is built for all frames at once; points are in OpenCV's sub-pixel integer
coordinates (``SHIFT`` fractional bits). A box seen from the side is as wide as it is deep,
so torso, pelvis and bags change width with the yaw. Which parts may cover a joint without
hiding it is `OWN_PARTS` (a keypoint is visible only on its own limb segments).
"""

from __future__ import annotations

import numpy as np

from videoreid.data.synthetic import identity as L
from videoreid.data.synthetic.identity import Identity
from videoreid.data.synthetic.skeleton import (
    L_ANKLE,
    L_EAR,
    L_ELBOW,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    L_WRIST,
    NECK,
    R_ANKLE,
    R_EAR,
    R_ELBOW,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    R_WRIST,
    project,
)

SHIFT = 2  # OpenCV sub-pixel bits: coordinates are multiplied by 4
_ONE = 1 << SHIFT

CAPSULE, ELLIPSE, POLY = 0, 1, 2

# Part labels at which each keypoint counts as visible (its own limb segments; anything else
# drawn on top of it hides it).
OWN_PARTS: tuple[tuple[int, ...], ...] = (
    (L.HEAD, L.HAIR, L.HAT),                          # nose
    (L.NECK, L.TORSO, L.HEAD, L.HAIR, L.STRAP),       # neck
    (L.TORSO, L.R_UPPER_ARM, L.STRAP, L.NECK),        # r shoulder
    (L.R_UPPER_ARM, L.R_FOREARM),                     # r elbow
    (L.R_FOREARM, L.R_HAND),                          # r wrist
    (L.TORSO, L.L_UPPER_ARM, L.STRAP, L.NECK),        # l shoulder
    (L.L_UPPER_ARM, L.L_FOREARM),                     # l elbow
    (L.L_FOREARM, L.L_HAND),                          # l wrist
    (L.PELVIS, L.TORSO, L.R_THIGH),                   # r hip
    (L.R_THIGH, L.R_SHIN),                            # r knee
    (L.R_SHIN, L.R_SHOE),                             # r ankle
    (L.PELVIS, L.TORSO, L.L_THIGH),                   # l hip
    (L.L_THIGH, L.L_SHIN),                            # l knee
    (L.L_SHIN, L.L_SHOE),                             # l ankle
    (L.HEAD, L.HAIR, L.HAT),                          # r eye
    (L.HEAD, L.HAIR, L.HAT),                          # l eye
    (L.HEAD, L.HAIR, L.HAT),                          # r ear
    (L.HEAD, L.HAIR, L.HAT),                          # l ear
)
ALLOWED = np.zeros((18, 256), dtype=bool)
for _j, _own in enumerate(OWN_PARTS):
    ALLOWED[_j, list(_own)] = True


def build_parts(ident: Identity, J: np.ndarray, yaw: np.ndarray, s: np.ndarray, org: np.ndarray
                ) -> tuple[list[tuple], np.ndarray, list]:
    """Every drawable part of a person for all ``T`` frames.

    All 3D points of all parts are projected in one batch (numpy call overhead, not
    arithmetic, dominates at these sizes).

    Args:
        ident: the person.
        J: ``(T, 18, 3)`` body-frame joints (`walk_joints`).
        yaw: ``(T,)`` camera yaw per frame.
        s: ``(T,)`` body height in pixels.
        org: ``(T, 2)`` pixel position of the body origin (between the feet, on the ground).

    Returns:
        ``(parts, depth, points)``: ``parts[p] = (kind, label, a, b, extra, present)``
        with point indices ``a``/``b`` into ``points[t]`` (shifted int px, as nested
        lists), ``extra[t]`` the capsule thickness, ellipse axes or polygon of frame ``t``
        and ``present[t]`` (or None: always drawn); ``depth (T, P)`` for the draw order.
    """
    sh = ident.shape
    T = J.shape[0]
    c, sn = np.abs(np.cos(yaw)), np.abs(np.sin(yaw))
    pts: list[np.ndarray] = []
    specs: list[tuple] = []  # (kind, label, a, b, extra-spec, bias, present)

    def point(P: np.ndarray) -> int:
        pts.append(P)
        return len(pts) - 1

    def off(P: np.ndarray, dx: float = 0.0, dy: float = 0.0, dz: float = 0.0) -> np.ndarray:
        return P + np.array([dx, dy, dz])

    def capsule(label: int, A: np.ndarray, B: np.ndarray, thick: float,
                bias: float = 0.0) -> None:
        specs.append((CAPSULE, label, point(A), point(B), thick, bias, None))

    def ellipse(label: int, C: np.ndarray, rx: float, ry: float, bias: float = 0.0) -> None:
        specs.append((ELLIPSE, label, point(C), -1, (rx, ry), bias, None))

    def quad(label: int, top: np.ndarray, bottom: np.ndarray, half_top: np.ndarray,
             half_bottom: np.ndarray, bias: float = 0.0) -> None:
        specs.append((POLY, label, point(top), point(bottom), (half_top, half_bottom),
                      bias, None))

    k = sh.thickness
    td = sh.torso_depth_half
    mid_sh = 0.5 * (J[:, R_SHOULDER] + J[:, L_SHOULDER])
    mid_hip = 0.5 * (J[:, R_HIP] + J[:, L_HIP])
    head = 0.5 * (J[:, R_EAR] + J[:, L_EAR]) + np.array([0.0, 0.0, 0.1 * sh.head_rx])

    # Torso and pelvis: a box seen from the side is as wide as it is deep.
    quad(L.TORSO, off(mid_sh, dy=0.018), off(mid_hip, dy=0.02),
         sh.shoulder_half * 1.02 * c + td * sn + 0.012,
         sh.hip_half * 1.1 * c + td * sn, bias=-0.002)
    quad(L.PELVIS, off(mid_hip, dy=0.035), off(mid_hip, dy=-0.075),
         sh.hip_half * 1.15 * c + td * sn, sh.hip_half * 1.05 * c + td * 0.9 * sn,
         bias=-0.003)
    capsule(L.NECK, off(J[:, NECK], dy=-0.03), off(J[:, NECK], dy=0.03), 0.05 * k)
    for shl, elb, wri, ua, fa, hand in (
            (R_SHOULDER, R_ELBOW, R_WRIST, L.R_UPPER_ARM, L.R_FOREARM, L.R_HAND),
            (L_SHOULDER, L_ELBOW, L_WRIST, L.L_UPPER_ARM, L.L_FOREARM, L.L_HAND)):
        capsule(ua, J[:, shl], J[:, elb], 0.058 * k)
        capsule(fa, J[:, elb], J[:, wri], 0.047 * k)
        direction = J[:, wri] - J[:, elb]
        direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-9
        capsule(hand, J[:, wri], J[:, wri] + 0.035 * direction, 0.04, bias=0.001)
    for hip, knee, ankle, th, shin, shoe in (
            (R_HIP, R_KNEE, R_ANKLE, L.R_THIGH, L.R_SHIN, L.R_SHOE),
            (L_HIP, L_KNEE, L_ANKLE, L.L_THIGH, L.L_SHIN, L.L_SHOE)):
        capsule(th, J[:, hip], J[:, knee], 0.075 * k)
        capsule(shin, J[:, knee], J[:, ankle], 0.058 * k)
        capsule(shoe, J[:, ankle], off(J[:, ankle], dy=-0.025, dz=0.065), 0.045)

    # Head group: drawn over the torso (bias) but ordered among itself by depth.
    ellipse(L.HEAD, head, sh.head_rx, sh.head_ry, bias=0.3)
    ellipse(L.HAIR, off(head, dy=0.014, dz=-0.018), sh.head_rx * 1.05, sh.head_ry * 0.86,
            bias=0.3)
    if ident.hair_style == "long":
        capsule(L.HAIR, off(head, dz=-0.035), off(mid_sh, dy=-0.035, dz=-0.05),
                1.8 * sh.head_rx)
    if "hat" in ident.accessories:
        ellipse(L.HAT, off(head, dy=0.045), sh.head_rx * 1.1, sh.head_ry * 0.55, bias=0.32)
        capsule(L.HAT, off(head, dy=0.025), off(head, dy=0.025, dz=1.6 * sh.head_rx), 0.02,
                bias=0.31)
    if "backpack" in ident.accessories:
        bd = 0.05
        centre = off(mid_hip, dy=0.17, dz=-(td + bd))
        quad(L.BACKPACK, off(centre, dy=0.12), off(centre, dy=-0.11),
             0.092 * c + bd * sn, 0.1 * c + bd * sn)
        for side in (-1.0, 1.0):  # straps: the only front-view cue of a backpack
            capsule(L.STRAP, off(mid_sh, dx=side * 0.065, dz=td + 0.004),
                    off(mid_hip, dx=side * 0.075, dy=0.1, dz=td + 0.004), 0.018, bias=0.01)
    if "bag" in ident.accessories:
        centre = off(mid_hip, dx=-(sh.hip_half + 0.06), dy=-0.05)
        quad(L.BAG, off(centre, dy=0.055), off(centre, dy=-0.055),
             0.055 * c + 0.03 * sn, 0.06 * c + 0.03 * sn)
        capsule(L.STRAP, off(mid_sh, dx=0.07, dz=td + 0.004),
                off(centre, dy=0.055), 0.016, bias=0.01)
    if ident.upper.pattern == "logo":
        # A chest logo is seen only from the front, foreshortened by the yaw.
        facing = (np.cos(yaw) > 0.35).tolist()
        specs.append((POLY if ident.logo_shape != "circle" else ELLIPSE, L.LOGO,
                      point(off(mid_sh, dy=-0.1, dz=td + 0.006)), -1, "logo", 0.02, facing))

    # One batched projection of every point.
    P = np.stack(pts, axis=1)  # (T, K, 3)
    xy, depth = project(P, yaw[:, None])
    px = org[:, None, :] + s[:, None, None] * np.stack([xy[..., 0], -xy[..., 1]], -1)
    px_int = np.round(px * _ONE).astype(np.int64)  # shifted integer pixels
    parts: list[tuple] = []
    depths: list[np.ndarray] = []
    cache: dict = {}
    for kind, label, a, b, extra, bias, present in specs:
        if kind == CAPSULE:
            if extra not in cache:
                cache[extra] = np.maximum(1, np.round(extra * s)).astype(np.int64).tolist()
            geo = cache[extra]
            d = 0.5 * (depth[:, a] + depth[:, b])
        elif extra == "logo":
            r = 0.034 * s * _ONE
            rx = np.maximum(1, np.round(r * np.abs(np.cos(yaw)))).astype(np.int64)
            ry = np.maximum(1, np.round(r)).astype(np.int64)
            d = depth[:, a]
            if kind == ELLIPSE:
                geo = np.stack([rx, ry], -1).tolist()
            else:
                cx, cy = px_int[:, a, 0], px_int[:, a, 1]
                if ident.logo_shape == "square":
                    corners = [(cx - rx, cy - ry), (cx + rx, cy - ry), (cx + rx, cy + ry),
                               (cx - rx, cy + ry)]
                else:
                    corners = [(cx, cy - ry), (cx + rx, cy + ry), (cx - rx, cy + ry)]
                geo = list(np.stack([np.stack(q, -1) for q in corners], 1).astype(np.int32))
        elif kind == ELLIPSE:
            axes = np.stack([extra[0] * s, extra[1] * s], -1) * _ONE
            geo = np.maximum(1, np.round(axes)).astype(np.int64).tolist()
            d = depth[:, a]
        else:
            ht = np.round(extra[0] * s * _ONE).astype(np.int64)
            hb = np.round(extra[1] * s * _ONE).astype(np.int64)
            top, bot = px_int[:, a], px_int[:, b]
            poly = np.empty((T, 4, 2), dtype=np.int32)
            poly[:, 0, 0], poly[:, 1, 0] = top[:, 0] - ht, top[:, 0] + ht
            poly[:, 2, 0], poly[:, 3, 0] = bot[:, 0] + hb, bot[:, 0] - hb
            poly[:, :2, 1] = top[:, 1:2]
            poly[:, 2:, 1] = bot[:, 1:2]
            geo = list(poly)
            d = 0.5 * (depth[:, a] + depth[:, b])
        parts.append((kind, label, a, b, geo, present))
        depths.append(d + bias)
    return parts, np.stack(depths, axis=1), px_int.tolist()

