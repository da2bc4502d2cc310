"""MOTChallenge track files and cropping tracks out of a video."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from videoreid.inference.tracks import MotBoxes, MotFormatError, crop_tracks, read_mot, write_mot

FH, FW = 60, 80  # video frame size


def write_video(path, frames: int) -> list[np.ndarray]:
    """Frames whose pixel (y, x) encodes (y, x, frame): crops can be checked exactly."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (FW, FH))
    assert w.isOpened()
    out = []
    yy, xx = np.mgrid[0:FH, 0:FW]
    for t in range(frames):
        img = np.stack([yy * 4, xx * 3, np.full_like(yy, 40 * t)], axis=2).astype(np.uint8)
        w.write(img)
        out.append(img)
    w.release()
    return out


def test_read_mot_parses_and_defaults(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("# comment\n1,3,10.5,5,20,30,0.9,-1,-1,-1\n\n2,3,11,5,20,30\n2,-1,0,0,5,5,0.2\n")
    b = read_mot(p)
    assert b.frame.tolist() == [1, 2, 2] and b.track.tolist() == [3, 3, -1]
    np.testing.assert_array_equal(b.box[0], [10.5, 5, 20, 30])
    assert b.conf.tolist() == [0.9, 1.0, 0.2]
    q = write_mot(tmp_path / "w.txt", b)
    again = read_mot(q)
    np.testing.assert_array_equal(np.sort(again.frame), np.sort(b.frame))


@pytest.mark.parametrize("line, match", [
    ("1,2,3,4,5", "at least 6 values"),
    ("1,2,a,4,5,6", "non-numeric"),
    ("0,2,3,4,5,6", "1-based"),
    ("1,2,3,4,-5,6", "negative box"),
])
def test_read_mot_errors_name_file_and_line(tmp_path, line, match):
    p = tmp_path / "bad.txt"
    p.write_text("1,1,0,0,10,10,1\n" + line + "\n")
    with pytest.raises(MotFormatError, match=match) as e:
        read_mot(p)
    assert "bad.txt:2" in str(e.value)


def test_crop_tracks_clamps_skips_and_counts(tmp_path):
    video = tmp_path / "cam.avi"
    frames = write_video(video, 6)
    rows = [
        # track 1: inside, frames 1..5 -> 5 boxes, capped to 3
        *[(f, 1, 10, 8, 12, 20, 1.0) for f in range(1, 6)],
        (2, 2, -10, 30, 25, 40, 1.0),    # clamped: x 0..15, y 30..60
        (3, 2, 200, 10, 10, 10, 1.0),    # entirely outside
        (4, 2, 5, 5, 3, 30, 1.0),        # 3 px wide: too small (min width 8)
        (5, 2, 5, 5, 20, 20, 0.1),       # low confidence
        (9, 2, 5, 5, 20, 20, 1.0),       # past the video's 6 frames
        (2, -1, 5, 5, 20, 20, 1.0),      # untracked detection
        (2, 2, 0, 0, 20, 20, 1.0),       # second box of track 2 on frame 2
    ]
    a = np.array(rows, dtype=np.float64)
    boxes = MotBoxes(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2:6], a[:, 6])
    tracks, rep = crop_tracks(video, boxes, tmp_path / "crops", min_size=(16, 8), max_frames=3,
                              min_conf=0.5)
    assert rep.boxes == len(rows)
    assert (rep.outside, rep.too_small, rep.low_conf, rep.past_end, rep.no_id,
            rep.duplicate, rep.over_cap) == (1, 1, 1, 1, 1, 1, 2)
    assert rep.kept == 3 + 1 and rep.kept + rep.skipped == rep.boxes
    by_id = {t.track_id: t for t in tracks}
    assert by_id[1].frames == [1, 3, 5]  # evenly spaced under the cap
    assert by_id[2].frames == [2]
    crop = cv2.imread(str(by_id[2].paths[0]))
    assert crop.shape[:2] == (30, 15)  # clamped to the image: y 30..60, x 0..15
    ref = frames[1][30:60, 0:15].astype(np.int16)
    assert np.abs(crop.astype(np.int16) - ref).mean() < 6  # MJPG + JPEG losses only
    crop1 = cv2.imread(str(by_id[1].paths[1]))  # frame 3: blue channel = 40 * 2
    assert abs(float(crop1[..., 2].mean()) - 80) < 6
    assert "too_small 1" in rep.summary() and "outside 1" in rep.summary()


def test_missing_video_is_named(tmp_path):
    b = MotBoxes(np.array([1]), np.array([1]), np.array([[0, 0, 10, 10.0]]), np.array([1.0]))
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        crop_tracks(tmp_path / "nope.mp4", b, tmp_path)
