"""Tracks from videos: a tracker's MOTChallenge text file → per-track crops.

Format (MOTChallenge 2D, one box per line, comma separated)::

    <frame>, <id>, <bb_left>, <bb_top>, <bb_width>, <bb_height>, <conf>, <x>, <y>, <z>

``frame`` is 1-based (the first decoded frame of the video is frame 1); boxes are in pixels
(top-left corner, width, height). Only the first six values are required; ``conf`` defaults
to 1; anything after it (world coordinates, class, visibility) is ignored. Blank lines and
lines starting with ``#`` are skipped. Every tracker of the MOTChallenge family (SORT,
DeepSORT, ByteTrack, OC-SORT, BoT-SORT, ...) writes this format.

Cropping reads the video once, in order (``cv2.VideoCapture``; frames without boxes are only
grabbed, not decoded into images), and for each kept box writes the crop as a JPEG into
``<crops>/<track id>/<frame>.jpg``. Nothing is dropped silently; :class:`CropReport` counts:

- ``no_id``: boxes with a negative id (untracked detections);
- ``low_conf``: ``conf < min_conf``;
- ``outside``: boxes with no overlap with the image (after clamping);
- ``too_small``: clamped boxes smaller than ``min_size`` (height, width) pixels;
- ``over_cap``: boxes beyond the per-track cap ``max_frames`` (evenly spaced frames are kept);
- ``past_end``: boxes on frames the video does not have;
- ``duplicate``: a second box of a track on the same frame (the first is kept).

Boxes are clamped to the image (a pedestrian half out of view keeps the visible half).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["MotBoxes", "CropReport", "TrackCrops", "read_mot", "write_mot", "crop_tracks"]


class MotFormatError(ValueError):
    """A MOT file line could not be parsed; names the file and line."""


@dataclass
class MotBoxes:
    """All boxes of a MOT file, as arrays of equal length ``N``.

    Attributes:
        frame: ``(N,)`` int64, 1-based. track: ``(N,)`` int64.
        box: ``(N, 4)`` float64 ``x, y, w, h``. conf: ``(N,)`` float64.
    """

    frame: np.ndarray
    track: np.ndarray
    box: np.ndarray
    conf: np.ndarray

    def __len__(self) -> int:
        return int(self.frame.size)


def read_mot(path: str | os.PathLike[str]) -> MotBoxes:
    """Parse a MOTChallenge text file (module docstring).

    Raises:
        FileNotFoundError: no such file.
        MotFormatError: a line with fewer than 6 values, a non-number, a frame < 1 or a
            negative width/height (the message names file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"track file {path} does not exist")
    rows: list[list[float]] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            parts = s.split(",")
            if len(parts) < 6:
                raise MotFormatError(f"{path}:{lineno}: expected 'frame,id,x,y,w,h[,conf,...]' "
                                     f"(at least 6 values), got {s!r}")
            try:
                vals = [float(p) for p in parts[:7]]
            except ValueError:
                raise MotFormatError(f"{path}:{lineno}: non-numeric value in {s!r}; expected "
                                     "'frame,id,x,y,w,h[,conf,...]'") from None
            if vals[0] < 1 or vals[0] != int(vals[0]):
                raise MotFormatError(f"{path}:{lineno}: frame must be an integer >= 1 "
                                     f"(MOT frames are 1-based), got {parts[0]!r}")
            if vals[4] < 0 or vals[5] < 0:
                raise MotFormatError(f"{path}:{lineno}: negative box width/height in {s!r}")
            rows.append(vals if len(vals) == 7 else vals + [1.0])
    a = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    return MotBoxes(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2:6].copy(),
                    a[:, 6].copy())


def write_mot(path: str | os.PathLike[str], boxes: MotBoxes) -> Path:
    """Write boxes in MOTChallenge format (10 values, world coordinates −1), atomically."""
    from videoreid.utils.io import atomic_write_text

    order = np.lexsort((boxes.track, boxes.frame))
    lines = [f"{boxes.frame[i]},{boxes.track[i]},{boxes.box[i, 0]:.2f},{boxes.box[i, 1]:.2f},"
             f"{boxes.box[i, 2]:.2f},{boxes.box[i, 3]:.2f},{boxes.conf[i]:.3f},-1,-1,-1"
             for i in order]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return Path(path)


@dataclass
class CropReport:
    """Counts of what :func:`crop_tracks` kept and skipped (module docstring)."""

    boxes: int = 0
    kept: int = 0
    no_id: int = 0
    low_conf: int = 0
    outside: int = 0
    too_small: int = 0
    over_cap: int = 0
    past_end: int = 0
    duplicate: int = 0
    tracks: int = 0
    empty_tracks: list[int] = field(default_factory=list)
    video_frames: int = 0

    @property
    def skipped(self) -> int:
        return self.boxes - self.kept

    def as_dict(self) -> dict[str, int | list[int]]:
        return {k: getattr(self, k) for k in ("boxes", "kept", "no_id", "low_conf", "outside",
                                              "too_small", "over_cap", "past_end", "duplicate", "tracks",
                                              "empty_tracks", "video_frames")}

    def summary(self) -> str:
        parts = [f"{k} {getattr(self, k)}" for k in ("no_id", "low_conf", "outside",
                                                     "too_small", "over_cap", "past_end", "duplicate")
                 if getattr(self, k)]
        return (f"{self.boxes} boxes, {self.kept} cropped into {self.tracks} tracks"
                + (f"; skipped: {', '.join(parts)}" if parts else "; nothing skipped")
                + (f"; {len(self.empty_tracks)} tracks lost every box "
                   f"(ids {self.empty_tracks[:10]})" if self.empty_tracks else ""))


@dataclass
class TrackCrops:
    """The crops of one track: ``paths[i]`` shows video frame ``frames[i]`` (1-based)."""

    track_id: int
    frames: list[int]
    paths: list[Path]

    @property
    def frame_start(self) -> int:
        return self.frames[0]

    @property
    def frame_end(self) -> int:
        return self.frames[-1]


def _clamp(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """``x, y, w, h`` (float) → integer ``x0, y0, x1, y1`` inside the image (may be empty)."""
    x, y, w, h = box
    x0, y0 = int(np.floor(max(x, 0.0))), int(np.floor(max(y, 0.0)))
    x1, y1 = int(np.ceil(min(x + w, width))), int(np.ceil(min(y + h, height)))
    return x0, y0, max(x0, x1), max(y0, y1)


def crop_tracks(
    video: str | os.PathLike[str],
    boxes: MotBoxes,
    out_dir: str | os.PathLike[str],
    *,
    min_size: Sequence[int] = (16, 8),
    max_frames: int | None = 64,
    min_conf: float | None = None,
    jpeg_quality: int = 95,
) -> tuple[list[TrackCrops], CropReport]:
    """Cut each box of ``boxes`` from the decoded frames of ``video`` into ``out_dir``.

    Args:
        video: a video file OpenCV can read (mp4, avi, ...), or an image-sequence pattern
            such as ``img1/%06d.jpg``.
        boxes: the tracker's boxes (:func:`read_mot`).
        out_dir: crops go to ``out_dir/<track id>/<frame:06d>.jpg``.
        min_size: smallest clamped box ``(height, width)`` kept, pixels.
        max_frames: per-track cap (evenly spaced frames kept); ``None``/0 for no cap.
        min_conf: skip boxes with ``conf`` below this (``None``: keep all).
        jpeg_quality: JPEG quality of the crops.

    Returns:
        ``(tracks, report)``: tracks sorted by id (only those with at least one crop).

    Raises:
        FileNotFoundError / ValueError: the video cannot be opened (named).
    """
    import cv2

    video = Path(video)
    if "%" not in video.name and not video.is_file():
        raise FileNotFoundError(f"video {video} does not exist")
    report = CropReport(boxes=len(boxes))
    keep = np.ones(len(boxes), dtype=bool)
    no_id = boxes.track < 0
    report.no_id = int(no_id.sum())
    keep &= ~no_id
    if min_conf is not None:
        low = keep & (boxes.conf < float(min_conf))
        report.low_conf = int(low.sum())
        keep &= ~low
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise ValueError(f"video {video}: OpenCV cannot open it (codec or format not supported)")
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    # geometry checks need the frame size, known before decoding
    for i in np.flatnonzero(keep):
        x0, y0, x1, y1 = _clamp(boxes.box[i], height, width)
        if x1 <= x0 or y1 <= y0:
            report.outside += 1
            keep[i] = False
        elif (y1 - y0) < int(min_size[0]) or (x1 - x0) < int(min_size[1]):
            report.too_small += 1
            keep[i] = False
    # one box per (track, frame): a duplicate would be a second crop of the same view
    idx = np.flatnonzero(keep)
    order = idx[np.lexsort((boxes.frame[idx], boxes.track[idx]))]
    per_track: dict[int, list[int]] = {}
    prev = (-1, -1)
    for i in order:
        key = (int(boxes.track[i]), int(boxes.frame[i]))
        if key == prev:  # a second box of the same track on the same frame
            report.duplicate += 1
            continue
        prev = key
        per_track.setdefault(key[0], []).append(int(i))
    all_ids = sorted({int(t) for t in boxes.track[boxes.track >= 0]})
    if max_frames:
        for tid, rows in per_track.items():
            if len(rows) > max_frames:
                pick = np.unique(np.linspace(0, len(rows) - 1, num=max_frames).round().astype(int))
                report.over_cap += len(rows) - pick.size
                per_track[tid] = [rows[j] for j in pick]
    wanted: dict[int, list[int]] = {}
    for rows in per_track.values():
        for i in rows:
            wanted.setdefault(int(boxes.frame[i]), []).append(i)
    out = Path(out_dir)
    written: dict[int, tuple[int, Path]] = {}
    last_needed = max(wanted) if wanted else 0
    frame_no = 0
    try:
        while frame_no < last_needed:
            if not cap.grab():
                break
            frame_no += 1
            if frame_no not in wanted:
                continue
            ok, img = cap.retrieve()
            if not ok:
                break
            for i in wanted[frame_no]:
                x0, y0, x1, y1 = _clamp(boxes.box[i], img.shape[0], img.shape[1])
                tid = int(boxes.track[i])
                p = out / f"{tid}" / f"{frame_no:06d}.jpg"
                p.parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(p), img[y0:y1, x0:x1],
                                   [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]):
                    raise OSError(f"could not write crop {p}")
                written[i] = (frame_no, p)
        report.video_frames = max(frame_no, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        cap.release()
    tracks = []
    for tid in sorted(per_track):
        rows = [i for i in per_track[tid] if i in written]
        report.past_end += len(per_track[tid]) - len(rows)
        if rows:
            tracks.append(TrackCrops(tid, [written[i][0] for i in rows],
                                     [written[i][1] for i in rows]))
    report.kept = sum(len(t.frames) for t in tracks)
    report.tracks = len(tracks)
    report.empty_tracks = sorted(set(all_ids) - {t.track_id for t in tracks})
    log.info("%s: %s", video, report.summary())
    return tracks, report
