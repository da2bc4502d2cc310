"""OpenPose JSON keypoint files (``<frame stem>_keypoints.json``): reading and writing.

The format is OpenPose's ``--write_json`` output (version 1.x):
``{"version": 1.3, "people": [{"pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...], ...}]}``
with pixel coordinates of the frame and ``0, 0, 0`` for a keypoint that was not found. The
project's synthetic generator writes the same files. Both body models OpenPose ships are
accepted: COCO (18 keypoints, the order of :data:`~videoreid.modalities.pose.layout.KEYPOINT_NAMES`)
and BODY_25 (25 keypoints, OpenPose's default since 1.3), which is converted to COCO-18 by
dropping the mid-hip and the six foot points (:data:`BODY25_TO_COCO18`). Other layouts (MPI,
15 points) are an error naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from videoreid.modalities.pose.layout import NUM_KEYPOINTS

__all__ = ["BODY25_TO_COCO18", "KeypointFileError", "keypoints_path", "read_keypoints",
           "parse_keypoints", "keypoints_json"]

# BODY_25: 0 nose, 1 neck, 2-4 right arm, 5-7 left arm, 8 mid-hip, 9-11 right leg, 12-14 left
# leg, 15/16 right/left eye, 17/18 right/left ear, 19-24 feet.
BODY25_TO_COCO18: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)


class KeypointFileError(ValueError):
    """A keypoint file is missing or is not OpenPose JSON with COCO-18 / BODY_25 keypoints."""


def keypoints_path(frame: str | os.PathLike[str]) -> Path:
    """``<frame folder>/<frame stem>_keypoints.json`` (OpenPose's ``--write_json`` name)."""
    frame = Path(frame)
    return frame.with_name(f"{frame.stem}_keypoints.json")


def parse_keypoints(data: dict, where: str = "<json>") -> np.ndarray:
    """People of one parsed OpenPose JSON document.

    Returns:
        ``(P, 18, 3)`` float32 ``(x, y, c)``; ``P = 0`` when nobody was detected.
    Raises:
        KeypointFileError: no ``people`` list or an unsupported keypoint count.
    """
    people = data.get("people") if isinstance(data, dict) else None
    if not isinstance(people, list):
        raise KeypointFileError(f"{where}: not an OpenPose keypoint file (no 'people' list)")
    out = np.zeros((len(people), NUM_KEYPOINTS, 3), dtype=np.float32)
    for i, person in enumerate(people):
        flat = np.asarray(person.get("pose_keypoints_2d", person.get("pose_keypoints", [])),
                          dtype=np.float32)
        if flat.size == 3 * NUM_KEYPOINTS:
            out[i] = flat.reshape(NUM_KEYPOINTS, 3)
        elif flat.size == 3 * 25:
            out[i] = flat.reshape(25, 3)[list(BODY25_TO_COCO18)]
        elif flat.size == 0:
            continue  # a person entry with no body keypoints (e.g. face only)
        else:
            raise KeypointFileError(
                f"{where}: person {i} has {flat.size // 3} body keypoints; expected 18 (COCO) "
                "or 25 (BODY_25) as written by OpenPose")
    # OpenPose writes 0,0,0 for a keypoint it did not find; make that explicit
    out[out[..., 2] <= 0] = 0.0
    return out


def read_keypoints(path: str | os.PathLike[str]) -> np.ndarray:
    """Read ``(P, 18, 3)`` keypoints from an OpenPose JSON file.

    Raises:
        KeypointFileError: naming the file, when it is missing or malformed.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KeypointFileError(f"keypoint file not found: {path}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise KeypointFileError(f"{path}: not valid JSON ({e})") from None
    return parse_keypoints(data, str(path))


def keypoints_json(people: np.ndarray) -> str:
    """OpenPose JSON text (version 1.3) for ``(P, 18, 3)`` keypoints (``c = 0``: not found)."""
    kp = np.asarray(people, dtype=np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    entries = []
    for person in kp:
        if not (person[:, 2] > 0).any():
            continue
        person = np.where(person[:, 2:3] > 0, person, 0.0)
        entries.append({"person_id": [-1],
                        "pose_keypoints_2d": [round(float(v), 3) for v in person.reshape(-1)],
                        "face_keypoints_2d": [], "hand_left_keypoints_2d": [],
                        "hand_right_keypoints_2d": [], "pose_keypoints_3d": [],
                        "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
                        "hand_right_keypoints_3d": []})
    return json.dumps({"version": 1.3, "people": entries}, separators=(",", ":")) + "\n"
