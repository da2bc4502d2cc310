"""Multi-camera street scenes: videos of walking identities plus MOTChallenge ground truth.

``render_scene(out, cameras=2, ids=6, ...)`` writes, per camera ``c``::

    OUT/cam<c>.mp4          the video (OpenCV ``mp4v``), ``fps`` frames per second
    OUT/cam<c>_gt.txt       ground-truth tracks, MOTChallenge format (1-based frames):
                            frame,id,x,y,w,h,1,1,visibility
    OUT/scene.json          manifest: cameras, files, identities per camera, which identities
                            are shared, frame size, seed

How a frame is made. The street background is the generator's procedural background
(:func:`~videoreid.data.synthetic.camera.make_background`, at the video's size). Every
identity (:func:`~videoreid.data.synthetic.identity.sample_identities`) crosses the image
sideways at its own depth, speed and entry time. Its appearance comes from the generator's
own renderer (:class:`~videoreid.data.synthetic.render.Renderer`): the walk is rendered as
a centred crop on two flat backgrounds with a neutral camera, the pixels that differ
between the two give the person's mask exactly, and the crop is scaled to the person's
depth (farther = smaller and higher) and composited far-to-near, so people crossing
occlude each other; a lamp post in front of everyone occludes whoever passes it. The
camera's colour cast, blur and noise (:func:`~videoreid.data.synthetic.camera.sample_camera`)
are applied to the whole frame afterwards, so the same person looks different in each
camera.

Ground truth. A track id is the identity's number (1-based) in every camera, so the ids of
the ground-truth files are cross-camera identity labels (``videoreid embed --labels
track``). Boxes are the tight box of the full body, which may extend past the image border
while a person enters or leaves (readers clamp); ``visibility`` is the fraction of the
body's pixels that are not hidden by nearer people, the post or the border. The first
``ids`` identities appear in every camera; ``extra`` more per camera are seen by that
camera only (distractors for the cross-camera search).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from videoreid.data.synthetic.camera import Camera, make_background, sample_camera
from videoreid.data.synthetic.identity import Identity, sample_identities
from videoreid.data.synthetic.presets import get_knobs
from videoreid.data.synthetic.render import Renderer
from videoreid.data.synthetic.spec import sample_spec
from videoreid.utils.io import atomic_write_text

__all__ = ["SCENE_MANIFEST", "Walker", "render_scene"]

SCENE_MANIFEST = "scene.json"
CROP_H, CROP_W = 128, 64  # rendering size of a person; scaled to depth afterwards
_FLAT = (40, 200)  # the two flat backgrounds that separate body from background


@dataclass
class Walker:
    """One identity's pass through one camera (scene pixel units)."""

    track_id: int
    identity: int
    start: int  # first frame index (0-based) it is on screen
    length: int  # frames on screen
    x0: float  # body centre x at ``start``
    speed: float  # px/frame, signed
    foot_y: float  # ground line of its depth
    height_px: float  # body crop height at that depth


def _neutral_cameras(seed: int) -> list[Camera]:
    """Two cameras identical but for their flat background (no cast, blur or noise)."""
    cams = []
    for i, level in enumerate(_FLAT):
        cams.append(Camera(
            index=i, background=np.full((2 * CROP_H, 4 * CROP_W, 3), level, np.uint8),
            transform=np.hstack([np.eye(3, dtype=np.float32), np.zeros((3, 1), np.float32)]),
            gain=1.0, cast=(1.0, 1.0, 1.0), blur_sigma=0.0, noise=0.0, fill=0.85, y_bias=0.0,
            view_probs=(0.25, 0.25, 0.25, 0.25), bg_speed=0.0))
    return cams


def _render_walker(renderer: Renderer, ident: Identity, w: Walker, rng: np.random.Generator,
                   knobs: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per frame, ``(colour (h, w, 3) uint8, alpha (h, w) float32)`` at the walker's scale."""
    view = "right" if w.speed > 0 else "left"
    spec = sample_spec(rng, renderer.cameras[0], w.length, knobs, CROP_H, CROP_W, view=view)
    zero2 = np.zeros((w.length, 2))
    # the crop follows the person exactly: no drift, jitter, failures, occluder or scroll
    spec = dataclasses.replace(
        spec, motion=np.zeros(2), offset0=np.zeros(2), jitter=zero2.astype(np.int64),
        scale=np.ones(w.length), failure=np.zeros(w.length, dtype=bool),
        failure_offset=zero2, bg_origin=(0, 0), bg_velocity=0.0, occluder=None, gain=1.0,
        yaw_drift=0.0)
    dark = renderer.render(ident, 0, spec).frames
    light = renderer.render(ident, 1, spec).frames
    f = w.height_px / CROP_H
    size = (max(2, round(CROP_W * f)), max(2, round(CROP_H * f)))
    colours, alphas = [], []
    for a, b in zip(dark, light, strict=True):
        mask = (np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) == 0)
        m = mask.astype(np.float32)
        alpha = cv2.resize(m, size, interpolation=cv2.INTER_AREA)
        # premultiplied resize: edge pixels take the body's colour, not the flat background's
        pre = cv2.resize(a.astype(np.float32) * m[..., None], size, interpolation=cv2.INTER_AREA)
        colours.append(pre / np.maximum(alpha, 1e-6)[..., None])
        alphas.append(alpha)
    return colours, alphas


def _street(rng: np.random.Generator, height: int, width: int, clutter: float) -> np.ndarray:
    """Street background: facades above, pavement and a kerb line below."""
    bg = make_background(rng, height, width, clutter)
    kerb = int(height * 0.93)
    cv2.line(bg, (0, kerb), (width, kerb), (90, 90, 90), max(1, height // 90))
    return bg


def _schedule(rng: np.random.Generator, identities: list[int], first_id: int, frames: int,
              height: int, width: int) -> list[Walker]:
    walkers = []
    for n, ident in enumerate(identities):
        depth = float(rng.uniform(0.0, 1.0))  # 0 far, 1 near
        height_px = height * (0.42 + 0.28 * depth)
        foot_y = height * (0.70 + 0.24 * depth)
        speed = float(rng.uniform(0.010, 0.016)) * width * (1 if rng.random() < 0.5 else -1)
        half = 0.25 * height_px  # half a crop width: enters/leaves partly outside
        span = width + 2 * half
        length = int(np.ceil(span / abs(speed)))
        length = min(length, frames)
        start = int(rng.integers(0, max(1, frames - length + 1)))
        x0 = -half if speed > 0 else width + half
        walkers.append(Walker(track_id=first_id + n, identity=ident, start=start, length=length,
                              x0=x0, speed=speed, foot_y=foot_y, height_px=height_px))
    return walkers


def render_scene(
    out: str | os.PathLike[str],
    cameras: int = 2,
    ids: int = 6,
    extra: int = 2,
    frames: int = 200,
    height: int = 270,
    width: int = 480,
    fps: float = 10.0,
    seed: int = 0,
    preset: str = "easy",
) -> dict[str, Any]:
    """Render a multi-camera scene (module docstring); returns the manifest.

    Args:
        out: output folder (created).
        cameras: number of cameras.
        ids: identities seen by every camera.
        extra: identities seen by one camera only, per camera.
        frames: frames per video.
        height, width: video frame size.
        fps: frame rate written into the videos.
        seed: random seed (same seed → same scene).
        preset: difficulty preset of the generator (camera casts, blur, noise, clutter).

    Raises:
        ValueError: bad sizes or counts; RuntimeError: OpenCV cannot write the video.
    """
    if cameras < 1 or ids < 1 or extra < 0 or frames < 2:
        raise ValueError(f"scene needs cameras >= 1, ids >= 1, extra >= 0, frames >= 2; got "
                         f"{cameras}, {ids}, {extra}, {frames}")
    if height < 96 or width < 128:
        raise ValueError(f"scene frame size {height}x{width} too small; need at least 96x128")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 31])
    knobs = get_knobs(preset)
    total = ids + extra * cameras
    people = sample_identities(total, rng)
    renderer = Renderer(CROP_H, CROP_W, _neutral_cameras(seed), seed=seed)
    manifest: dict[str, Any] = {
        "format": "videoreid-scene", "version": 1, "seed": seed, "preset": preset,
        "frame_size": [height, width], "fps": fps, "frames": frames,
        "shared_identities": list(range(1, ids + 1)), "cameras": [],
        "track_ids": "identity number (1-based), the same in every camera",
    }
    for c in range(cameras):
        crng = np.random.default_rng([seed, 32, c])
        cam = sample_camera(crng, c, knobs, height, width)
        street = _street(crng, height, width, knobs.clutter)
        own = list(range(ids)) + [ids + c * extra + e for e in range(extra)]
        walkers = _schedule(crng, own, 1, frames, height, width)
        for w in walkers:
            w.track_id = w.identity + 1
        post_x = int(crng.uniform(0.3, 0.7) * width)
        post_w = max(3, width // 60)
        sprites = {w.track_id: _render_walker(renderer, people[w.identity], w,
                                              np.random.default_rng([seed, 33, c, w.identity]),
                                              knobs) for w in walkers}
        video_path, gt_path = out / f"cam{c}.mp4", out / f"cam{c}_gt.txt"
        tmp_video = out / f".cam{c}.part.mp4"  # renamed into place when complete
        writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"), float(fps),
                                 (width, height))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write {video_path} (no mp4v encoder)")
        lines: list[str] = []
        noise = np.random.default_rng([seed, 34, c])
        order = sorted(walkers, key=lambda w: w.foot_y)  # far first: near people occlude
        try:
            for t in range(frames):
                frame = street.astype(np.float32)
                owner = np.zeros((height, width), dtype=np.int32)
                boxes = []
                for w in order:
                    k = t - w.start
                    if not 0 <= k < w.length:
                        continue
                    colour, alpha = sprites[w.track_id][0][k], sprites[w.track_id][1][k]
                    sh, sw = alpha.shape
                    cx = w.x0 + w.speed * k
                    x0, y0 = int(round(cx - sw / 2)), int(round(w.foot_y - sh))
                    xa, ya = max(x0, 0), max(y0, 0)
                    xb, yb = min(x0 + sw, width), min(y0 + sh, height)
                    body = alpha > 0.5
                    ys, xs = np.nonzero(body)
                    if ys.size == 0:
                        continue
                    box = (x0 + xs.min(), y0 + ys.min(), xs.max() - xs.min() + 1,
                           ys.max() - ys.min() + 1)
                    if not (box[0] < width and box[0] + box[2] > 0):
                        continue  # body entirely outside the image: not in the scene yet
                    if xb > xa and yb > ya:
                        a = alpha[ya - y0:yb - y0, xa - x0:xb - x0, None]
                        region = frame[ya:yb, xa:xb]
                        region *= 1.0 - a
                        region += a * colour[ya - y0:yb - y0, xa - x0:xb - x0]
                        owner[ya:yb, xa:xb][body[ya - y0:yb - y0, xa - x0:xb - x0]] = w.track_id
                    boxes.append((w.track_id, box, int(body.sum())))
                cv2.rectangle(frame, (post_x, 0), (post_x + post_w, height), (60, 60, 70), -1)
                owner[:, post_x:post_x + post_w + 1] = 0
                for tid, (bx, by, bw, bh), n_body in boxes:
                    vis = float((owner == tid).sum()) / max(n_body, 1)
                    lines.append(f"{t + 1},{tid},{bx},{by},{bw},{bh},1,1,{vis:.3f}")
                img = cv2.transform(np.clip(frame, 0, 255).astype(np.uint8), cam.transform)
                if cam.blur_sigma > 0.2:
                    img = cv2.GaussianBlur(img, (0, 0), cam.blur_sigma)
                if cam.noise > 0:
                    n = noise.normal(0.0, cam.noise / 2.0, size=img.shape)
                    img = np.clip(img + np.round(n), 0, 255).astype(np.uint8)
                writer.write(img)
        finally:
            writer.release()
        os.replace(tmp_video, video_path)
        atomic_write_text(gt_path, "\n".join(lines) + "\n")
        manifest["cameras"].append({
            "index": c, "video": video_path.name, "tracks": gt_path.name,
            "identities": sorted(w.track_id for w in walkers),
            "only_here": sorted(w.track_id for w in walkers if w.identity >= ids),
            "walkers": [dataclasses.asdict(w) for w in walkers], "camera": cam.describe(),
            "boxes": len(lines)})
    atomic_write_text(out / SCENE_MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest
