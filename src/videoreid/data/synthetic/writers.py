"""Byte-level writers: image encoding, OpenPose keypoint JSON, deterministic .mat files.

Frames are encoded with ``cv2.imencode`` (JPEG for MARS/Duke/Market, PNG for iLIDS-VID and
PRID2011, as in the official archives) on a small thread pool: OpenCV's encoders and file
writes release the GIL, so encoding overlaps with rendering in the main thread. Output bytes
depend only on the frame content, never on thread scheduling.
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
import scipy.io

from videoreid.utils.io import atomic_write_bytes, atomic_write_text

# MATLAB v5 header text is 116 bytes; scipy writes the creation time there, which would make
# two runs with the same seed differ. A fixed header keeps the files byte-identical.
_MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: videoreid synth"


def encode_image(frame: np.ndarray, ext: str, jpeg_quality: int = 90) -> bytes:
    """Encode a BGR ``(H, W, 3)`` uint8 frame as ``.jpg`` or ``.png`` bytes."""
    if ext == ".jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    elif ext == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    else:
        raise ValueError(f"unsupported image extension {ext!r}; expected '.jpg' or '.png'")
    ok, buf = cv2.imencode(ext, frame, params)
    if not ok:
        raise RuntimeError(f"cv2.imencode failed for a {frame.shape} frame as {ext}")
    return buf.tobytes()


# One C-level format call for the 54 numbers (json.dumps costs ~10x more per frame).
_KP_FORMAT = ",".join(["%.3f"] * 54)
_NOBODY = '{"version":1.3,"people":[]}\n'
_HEAD = '{"version":1.3,"people":[{"person_id":[-1],"pose_keypoints_2d":['
_TAIL = ('],"face_keypoints_2d":[],"hand_left_keypoints_2d":[],"hand_right_keypoints_2d":[],'
         '"pose_keypoints_3d":[],"face_keypoints_3d":[],"hand_left_keypoints_3d":[],'
         '"hand_right_keypoints_3d":[]}]}\n')


def openpose_texts(keypoints: np.ndarray) -> list[str]:
    """Keypoints of ``T`` frames in OpenPose's JSON output format (version 1.3).

    Args:
        keypoints: ``(T, 18, 3)`` ``(x, y, c)`` in pixels, COCO-18 order; joints with ``c = 0``
            are written as ``0.000,0.000,0.000``. Numbers have 3 decimals.

    Returns:
        one JSON text per frame. A frame without any visible joint has ``"people": []``, as
        OpenPose writes when it detects nobody.
    """
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 18, 3)
    visible = kp[..., 2] > 0
    rows = np.where(visible[..., None], kp, 0.0).reshape(len(kp), 54).tolist()
    return [_HEAD + _KP_FORMAT % tuple(r) + _TAIL if any_visible else _NOBODY
            for r, any_visible in zip(rows, visible.any(axis=1).tolist(), strict=True)]


def openpose_json(keypoints: np.ndarray) -> str:
    """One frame's ``(18, 3)`` keypoints as OpenPose JSON (see `openpose_texts`)."""
    return openpose_texts(np.asarray(keypoints).reshape(1, 18, 3))[0]


def savemat_bytes(mdict: dict[str, Any]) -> bytes:
    """``scipy.io.savemat`` (MATLAB v5, compressed like the official files) to bytes with a
    fixed header so the output is deterministic."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, mdict, do_compression=True, oned_as="row")
    data = bytearray(buf.getvalue())
    data[:116] = _MAT_HEADER.ljust(116, b" ")
    return bytes(data)


def write_mat(path: str | os.PathLike[str], mdict: dict[str, Any]) -> None:
    """Write a deterministic ``.mat`` file atomically."""
    atomic_write_bytes(path, savemat_bytes(mdict))


def write_lines(path: str | os.PathLike[str], lines: Sequence[str], newline: str = "\n") -> None:
    """Write lines (each terminated by ``newline``, the last one too) atomically."""
    atomic_write_text(path, "".join(f"{line}{newline}" for line in lines))


def _write_frames(paths: Sequence[str], frames: Sequence[np.ndarray], ext: str,
                  quality: int, keypoints: np.ndarray | None) -> None:
    texts = openpose_texts(keypoints) if keypoints is not None else None
    cut = len(ext)
    for i, (path, frame) in enumerate(zip(paths, frames, strict=True)):
        with open(path, "wb") as f:
            f.write(encode_image(frame, ext, quality))
        if texts is not None:
            with open(path[:-cut] + "_keypoints.json", "w") as f:
                f.write(texts[i])


class FrameWriter:
    """Encodes and writes frames (and keypoint files) on a bounded thread pool.

    Args:
        workers: encoding threads; 0 writes synchronously in the caller's thread.
        jpeg_quality: JPEG quality (1–100).

    Use as a context manager; leaving it waits for every pending write and re-raises the
    first error.
    """

    def __init__(self, workers: int = 2, jpeg_quality: int = 90) -> None:
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
        self.quality = int(jpeg_quality)
        self.workers = max(0, int(workers))
        self._pool = ThreadPoolExecutor(self.workers) if self.workers else None
        self._pending: deque[Future[None]] = deque()
        self.frames_written = 0

    def write(self, paths: Sequence[str | os.PathLike[str]], frames: Sequence[np.ndarray],
              keypoints: np.ndarray | None) -> None:
        """Queue one tracklet's frames; ``keypoints (T, 18, 3)`` or None for no JSON files."""
        if not paths:
            return
        paths = [os.fspath(p) for p in paths]
        ext = os.path.splitext(paths[0])[1].lower()
        for folder in {os.path.dirname(p) for p in paths}:
            os.makedirs(folder, exist_ok=True)
        self.frames_written += len(paths)
        if self._pool is None:
            _write_frames(paths, frames, ext, self.quality, keypoints)
            return
        # Bound the queue: rendered frames waiting for encoding hold memory.
        while len(self._pending) >= 4 * self.workers:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(_write_frames, paths, list(frames), ext,
                                               self.quality, keypoints))

    def close(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
