"""COCO-18 skeleton (OpenPose order) and a procedural walking cycle.

Body frame, in units of body height: origin on the ground between the feet, ``x`` toward the
person's LEFT, ``y`` up, ``z`` forward (the walking direction). A camera at yaw ``psi`` sees
(orthographic projection; pedestrians are far from the camera compared with their depth)::

    x_img = x cos(psi) + z sin(psi)      # toward image right, body units
    depth = -x sin(psi) + z cos(psi)     # toward the camera (larger = nearer)

``psi = 0``: the person faces the camera (front view, their right side on the image left);
``psi = pi``: back view; ``psi = +pi/2``: the person faces and walks toward image right.

The gait is a sinusoidal walking cycle (hip flexion, knee flexion during swing, counter-phase
arm swing, vertical bob at twice the step frequency); everything is vectorised over frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)
NUM_KEYPOINTS = 18
NOSE, NECK, R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST = range(8)
R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE, R_EYE, L_EYE, R_EAR, L_EAR = range(8, 18)

# OpenPose's COCO POSE_PAIRS (19 limbs → 38 PAF channels), 0-based keypoint indices.
LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
    (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
)

VIEWS: tuple[str, ...] = ("front", "back", "left", "right")
# Yaw of each named view: "left"/"right" = the direction the person walks in the image.
VIEW_YAW: dict[str, float] = {"front": 0.0, "back": np.pi, "right": np.pi / 2, "left": -np.pi / 2}


def view_of_yaw(yaw: float) -> str:
    """The named view nearest to ``yaw`` (radians)."""
    c, s = np.cos(yaw), np.sin(yaw)
    if abs(c) >= abs(s):
        return "front" if c > 0 else "back"
    return "right" if s > 0 else "left"


@dataclass(frozen=True)
class BodyShape:
    """Body proportions in units of body height (head top = 1, ground = 0)."""

    shoulder_half: float = 0.115
    hip_half: float = 0.085
    torso_depth_half: float = 0.065
    head_rx: float = 0.062
    head_ry: float = 0.074
    neck_height: float = 0.845
    shoulder_height: float = 0.815
    hip_height: float = 0.525
    knee_height: float = 0.285
    ankle_height: float = 0.045
    upper_arm: float = 0.175
    forearm: float = 0.15
    thickness: float = 1.0  # limb-thickness multiplier (slim … heavy build)
    height: float = 0.97  # how much of the nominal box height the person fills


@dataclass(frozen=True)
class Gait:
    """Walking-cycle parameters (an identity cue: people walk differently)."""

    period: float = 24.0  # frames per full stride (two steps)
    hip_amp: float = 0.42  # radians of thigh swing
    knee_amp: float = 0.8  # radians of maximum knee flexion
    arm_amp: float = 0.38  # radians of upper-arm swing
    bob: float = 0.008  # vertical bob, body units


def walk_joints(shape: BodyShape, gait: Gait, t: np.ndarray, phase0: float = 0.0) -> np.ndarray:
    """3D joint positions of a walking person.

    Args:
        shape: body proportions.
        gait: walking-cycle parameters.
        t: frame times, shape ``(T,)`` (float, frames).
        phase0: gait phase at ``t = 0`` (radians).

    Returns:
        ``(T, 18, 3)`` float64 joint positions in the body frame (COCO-18 order).
    """
    t = np.asarray(t, dtype=np.float64)
    T = t.shape[0]
    phi = phase0 + 2.0 * np.pi * t / gait.period
    J = np.zeros((T, NUM_KEYPOINTS, 3), dtype=np.float64)
    sh_y = np.full(T, shape.shoulder_height)
    hip_y = np.full(T, shape.hip_height)
    J[:, NECK] = np.stack([np.zeros(T), np.full(T, shape.neck_height), np.zeros(T)], axis=1)
    # Head: joints sit on the head's surface so that the face rules of `face_visible` work.
    head_y = np.full(T, 1.0 - shape.head_ry)
    J[:, NOSE] = np.stack([np.zeros(T), head_y - 0.012, np.full(T, shape.head_rx * 0.95)], axis=1)
    for j, side in ((R_EYE, -1.0), (L_EYE, 1.0)):
        J[:, j] = np.stack([np.full(T, side * 0.42 * shape.head_rx), head_y + 0.008,
                            np.full(T, 0.82 * shape.head_rx)], axis=1)
    for j, side in ((R_EAR, -1.0), (L_EAR, 1.0)):
        J[:, j] = np.stack([np.full(T, side * 0.85 * shape.head_rx), head_y,
                            np.full(T, -0.1 * shape.head_rx)], axis=1)

    # Arms swing in counter-phase to the legs of the same side.
    for sh, el, wr, side, sgn in ((R_SHOULDER, R_ELBOW, R_WRIST, -1.0, -1.0),
                                  (L_SHOULDER, L_ELBOW, L_WRIST, 1.0, 1.0)):
        alpha = sgn * gait.arm_amp * np.sin(phi)  # forward (+z) swing of the upper arm
        beta = 0.25 + 0.35 * np.clip(alpha / max(gait.arm_amp, 1e-6), 0.0, 1.0)  # elbow bend
        shoulder = np.stack([np.full(T, side * shape.shoulder_half), sh_y, np.zeros(T)], axis=1)
        abduct = side * 0.12  # arms hang slightly outside the torso
        elbow = shoulder + shape.upper_arm * np.stack(
            [np.full(T, abduct), -np.cos(alpha), np.sin(alpha)], axis=1)
        wrist = elbow + shape.forearm * np.stack(
            [np.full(T, abduct * 0.5), -np.cos(alpha + beta), np.sin(alpha + beta)], axis=1)
        J[:, sh], J[:, el], J[:, wr] = shoulder, elbow, wrist

    thigh = shape.hip_height - shape.knee_height
    shin = shape.knee_height - shape.ankle_height
    for hp, kn, an, side, sgn in ((R_HIP, R_KNEE, R_ANKLE, -1.0, 1.0),
                                  (L_HIP, L_KNEE, L_ANKLE, 1.0, -1.0)):
        theta = sgn * gait.hip_amp * np.sin(phi)  # thigh flexion, forward positive
        # Knee bends during the swing phase (thigh moving forward: d theta/dt > 0).
        kappa = 0.08 + gait.knee_amp * np.clip(sgn * np.cos(phi), 0.0, 1.0) ** 1.5
        hip = np.stack([np.full(T, side * shape.hip_half), hip_y, np.zeros(T)], axis=1)
        knee = hip + thigh * np.stack([np.zeros(T), -np.cos(theta), np.sin(theta)], axis=1)
        ankle = knee + shin * np.stack(
            [np.zeros(T), -np.cos(theta - kappa), np.sin(theta - kappa)], axis=1)
        J[:, hp], J[:, kn], J[:, an] = hip, knee, ankle
    # Keep the lower foot on the ground (the body rises over a straight stance leg), plus a
    # small bob at twice the step frequency.
    lowest = np.minimum(J[:, R_ANKLE, 1], J[:, L_ANKLE, 1])
    J[..., 1] += (shape.ankle_height - lowest + gait.bob * np.cos(2.0 * phi))[:, None]
    return J


def project(points: np.ndarray, yaw: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthographic projection of body-frame points for a camera at ``yaw``.

    Args:
        points: ``(..., 3)`` body-frame points.
        yaw: scalar, or an array broadcastable to ``points.shape[:-1]`` (per-frame yaw).

    Returns:
        ``(xy, depth)``: ``xy (..., 2)`` with x to image right and y UP (body units), and
        ``depth (...)`` toward the camera.
    """
    c, s = np.cos(yaw), np.sin(yaw)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    xi = x * c + z * s
    depth = -x * s + z * c
    return np.stack([xi, y], axis=-1), depth


def face_visible(joints: np.ndarray, yaw: float | np.ndarray, shape: BodyShape) -> np.ndarray:
    """Which face keypoints (nose, eyes, ears) face the camera.

    A face point is seen when it lies on the camera-facing side of the head: its depth exceeds
    the head centre's by a margin (ears are seen from the front and back, the far ear is
    hidden in profile; eyes and nose are hidden from behind).

    Args:
        joints: ``(T, 18, 3)`` body-frame joints.
        yaw: scalar or ``(T,)``.
        shape: body proportions (head radius sets the margins).

    Returns:
        ``(T, 18)`` bool, True for every non-face joint.
    """
    _, depth = project(joints, np.asarray(yaw)[..., None] if np.ndim(yaw) else yaw)
    head_centre = 0.5 * (joints[:, R_EAR] + joints[:, L_EAR])
    _, dc = project(head_centre, yaw)
    rel = (depth - dc[:, None]) / shape.head_rx
    vis = np.ones(depth.shape, dtype=bool)
    vis[:, NOSE] = rel[:, NOSE] > -0.25
    vis[:, R_EYE] = rel[:, R_EYE] > 0.05
    vis[:, L_EYE] = rel[:, L_EYE] > 0.05
    vis[:, R_EAR] = rel[:, R_EAR] > -0.35
    vis[:, L_EAR] = rel[:, L_EAR] > -0.35
    return vis
