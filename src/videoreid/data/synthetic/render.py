"""Render one tracklet: a walking person cropped by an imperfect tracker in one camera.

Per tracklet everything geometric is computed for all ``T`` frames at once with numpy
(joints, part endpoints, depths, placements); the per-frame loop only issues ~20 OpenCV
drawing calls into a uint8 part-label map, then composites with a handful of vectorised
OpenCV calls (LUT colouring, texture copy, background copy, colour transform, blur, noise).

Image model of frame ``t`` (pixels, x right, y down; sub-pixel drawing with ``shift=2``):

    body point P  →  (W/2 + off_x[t] + s[t] * x_img(P),  foot_y[t] + off_y[t] - s[t] * y(P))
    off[t] = off0 + motion * t + jitter[t] + failure_offset[t]

``motion`` is the tracklet's nominal body drift in the crop (px/frame; the tracker lags the
walker), ``jitter`` the per-frame box misalignment (integer px; the whole crop moves, so the
background shifts by it too) and ``s[t]`` the body height in pixels (with box-scale noise).

Recorded ground truth per frame: COCO-18 keypoints ``(x, y, c)`` in pixels (``c = 0`` and
``x = y = 0`` when out of frame, hidden behind another body part or an accessory, covered by
an occluder, or a face point turned away), the occluded fraction of the body's pixels, and
the body's motion: ``motion[t]`` = position of the mid-hip point in frame ``t + 1`` minus in
frame ``t`` (forward difference, the displacement a forward optical flow from frame ``t`` to
``t + 1`` measures on the body); the last frame repeats the nominal drift, as there is no
next frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from videoreid.data.synthetic import identity as L
from videoreid.data.synthetic.body import ALLOWED, CAPSULE, ELLIPSE, SHIFT, build_parts
from videoreid.data.synthetic.camera import Camera, noise_tiles
from videoreid.data.synthetic.identity import Identity, pattern_texture
from videoreid.data.synthetic.occluders import draw_occluder
from videoreid.data.synthetic.skeleton import (
    L_HIP,
    NECK,
    R_HIP,
    face_visible,
    project,
    view_of_yaw,
    walk_joints,
)
from videoreid.data.synthetic.spec import TrackletSpec

__all__ = ["RenderedTracklet", "Renderer"]


@dataclass
class RenderedTracklet:
    """Frames and ground truth of one rendered tracklet.

    Attributes:
        frames: ``T`` arrays ``(H, W, 3)`` uint8 BGR.
        keypoints: ``(T, 18, 3)`` float32 ``(x, y, c)`` in pixels.
        occluded: ``(T,)`` float32 fraction of the body's pixels hidden by the occluder.
        motion: ``(T, 2)`` float32 body (mid-hip) displacement to the next frame, px.
        bg_motion: ``(T, 2)`` float32 background displacement to the next frame, px.
        failure: ``(T,)`` bool detector-failure frames.
        view: named viewpoint (``front``/``back``/``left``/``right``).
        yaw: yaw angle (radians) at frame 0.
        nominal_motion: ``(2,)`` the tracklet's drift, px/frame.
        occluder: kind of occluder or None.
    """

    frames: list[np.ndarray]
    keypoints: np.ndarray
    occluded: np.ndarray
    motion: np.ndarray
    bg_motion: np.ndarray
    failure: np.ndarray
    view: str
    yaw: float
    nominal_motion: np.ndarray
    occluder: str | None


class Renderer:
    """Renders tracklets of a fixed frame size; caches textures and noise tiles.

    Args:
        height, width: frame size in pixels.
        cameras: the cameras (index = camid).
        seed: seeds the per-camera noise tiles.
    """

    def __init__(self, height: int, width: int, cameras: list[Camera], seed: int = 0) -> None:
        if height < 32 or width < 16:
            raise ValueError(f"frame size {height}x{width} too small; need at least 32x16")
        self.height, self.width = int(height), int(width)
        self.cameras = cameras
        self._noise = [noise_tiles(np.random.default_rng([seed, 7, c.index]), self.height,
                                   self.width, c.noise) for c in cameras]
        self._textures: dict[tuple[int, int], tuple[np.ndarray | None, np.ndarray | None]] = {}

    def textures(self, ident: Identity, scale_px: float
                 ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Cached upper/lower garment textures of an identity at a body height in px."""
        key = (ident.index, int(round(scale_px)))
        if key not in self._textures:
            if len(self._textures) > 1024:
                self._textures.clear()
            self._textures[key] = (
                pattern_texture(ident.upper, key[1], self.height, self.width),
                pattern_texture(ident.lower, key[1], self.height, self.width))
        return self._textures[key]

    # ------------------------------------------------------------------ rendering
    def render(self, ident: Identity | None, camid: int, spec: TrackletSpec) -> RenderedTracklet:
        """Render a tracklet.

        Args:
            ident: the person (None, or ``spec.person == False``: background only).
            camid: 0-based camera index.
            spec: random state from `sample_spec`.
        """
        H, W, T = self.height, self.width, spec.length
        cam = self.cameras[camid]
        t = np.arange(T, dtype=np.float64)
        person = spec.person and ident is not None
        yaw = spec.yaw + spec.yaw_drift * t
        shape_h = ident.shape.height if ident is not None else 1.0
        s = H * cam.fill * shape_h * spec.scale  # body height, px
        foot_y = H * (0.5 + cam.y_bias) + 0.5 * s
        off = spec.offset0[None, :] + spec.motion[None, :] * t[:, None] + spec.jitter \
            + spec.failure_offset
        org = np.stack([W / 2.0 + off[:, 0], foot_y + off[:, 1]], axis=1)  # body origin px

        # Background: the crop slides with the tracker (bg_velocity) and with box jitter.
        g = np.stack([spec.bg_velocity * t, np.zeros(T)], axis=1) + spec.jitter \
            + spec.failure_offset
        hb, wb = cam.background.shape[:2]
        bx = np.clip(spec.bg_origin[0] - np.round(g[:, 0]).astype(np.int64), 0, wb - W)
        by = np.clip(spec.bg_origin[1] - np.round(g[:, 1]).astype(np.int64), 0, hb - H)
        bg_shift = -np.stack([bx, by], axis=1).astype(np.float32)  # content position
        bg_motion = np.zeros((T, 2), dtype=np.float32)
        bg_motion[:-1] = bg_shift[1:] - bg_shift[:-1]
        if T > 1:
            bg_motion[-1] = bg_motion[-2]

        if person:
            J = walk_joints(ident.shape, ident.gait, t, spec.phase0)
            xy, _ = project(J, yaw[:, None])
            kp_xy = org[:, None, :] + s[:, None, None] * np.stack([xy[..., 0], -xy[..., 1]], -1)
            face_ok = face_visible(J, yaw, ident.shape)
            parts, depth, points = build_parts(ident, J, yaw, s, org)
            order = np.argsort(depth, axis=1, kind="stable").tolist()
            pal32 = self._palette32(ident, spec.yaw)
            tex_up, tex_lo = self.textures(ident, float(np.median(s)))
            lower_hi = L.L_SHIN if ident.lower.cut == "trousers" else L.L_THIGH
            neck_px = np.round(kp_xy[:, NECK]).astype(np.int64)
            tex_x = np.clip(W - neck_px[:, 0], 0, W).tolist()
            tex_y = np.clip(H - neck_px[:, 1], 0, H).tolist()
            kx = np.round(kp_xy[..., 0]).astype(np.int64)
            ky = np.round(kp_xy[..., 1]).astype(np.int64)
            inside = (kx >= 0) & (kx < W) & (ky >= 0) & (ky < H)
            kx, ky = np.clip(kx, 0, W - 1), np.clip(ky, 0, H - 1)
            label_at = np.zeros((T, 18), dtype=np.uint8)
            root = 0.5 * (kp_xy[:, R_HIP] + kp_xy[:, L_HIP])
            motion = np.zeros((T, 2), dtype=np.float32)
            motion[:-1] = root[1:] - root[:-1]
            motion[-1] = spec.motion
        else:
            motion = np.zeros((T, 2), dtype=np.float32)
            motion[:] = bg_motion
        occluded = np.zeros(T, dtype=np.float32)
        occ_at = np.zeros((T, 18), dtype=np.uint8)
        npos, nneg = self._noise[camid]
        transform = cam.transform.copy()
        transform[:, :3] *= spec.gain
        occ = spec.occluder
        if occ is not None:
            occ_x = (occ.x0 + occ.vx * t + g[:, 0]).tolist()
            occ_y = (occ.y0 + g[:, 1]).tolist()
        blur = cam.blur_sigma if cam.blur_sigma > 0.2 else 0.0
        # A fixed small kernel: OpenCV's automatic size (6 sigma + 1) costs twice as much for
        # a visually identical result at these sigmas.
        ksize = (3, 3) if blur < 0.9 else (5, 5)
        noise_yx = spec.noise_offsets.tolist()
        bxl, byl = bx.tolist(), by.tolist()
        frames: list[np.ndarray] = []
        lab = np.zeros((H, W), dtype=np.uint8)
        occ_mask = np.zeros((H, W), dtype=np.uint8)
        for i in range(T):
            frame = cam.background[byl[i]:byl[i] + H, bxl[i]:bxl[i] + W].copy()
            if person:
                lab[...] = 0
                pt = points[i]
                for p in order[i]:
                    kind, label, a, b, geo, present = parts[p]
                    if present is not None and not present[i]:
                        continue
                    if kind == CAPSULE:
                        cv2.line(lab, pt[a], pt[b], label, geo[i], cv2.LINE_8, SHIFT)
                    elif kind == ELLIPSE:
                        cv2.ellipse(lab, pt[a], geo[i], 0, 0, 360, label, -1, cv2.LINE_8, SHIFT)
                    else:
                        cv2.fillConvexPoly(lab, geo[i], label, cv2.LINE_8, SHIFT)
                # Palette lookup via packed uint32 colours: the fastest colouring measured.
                colour = cv2.cvtColor(np.take(pal32, lab).view(np.uint8).reshape(H, W, 4),
                                      cv2.COLOR_BGRA2BGR)
                if tex_up is not None:
                    ox, oy = tex_x[i], tex_y[i]
                    cv2.copyTo(tex_up[oy:oy + H, ox:ox + W],
                               cv2.inRange(lab, L.TORSO, L.TORSO), colour)
                if tex_lo is not None:
                    ox, oy = tex_x[i], tex_y[i]
                    cv2.copyTo(tex_lo[oy:oy + H, ox:ox + W],
                               cv2.inRange(lab, L.PELVIS, lower_hi), colour)
                body = cv2.compare(lab, 0, cv2.CMP_GT)
                cv2.copyTo(colour, body, frame)
                label_at[i] = lab[ky[i], kx[i]]
            if occ is not None:
                occ_mask[...] = 0
                draw_occluder(frame, occ_mask, occ, occ_x[i], occ_y[i])
                if person:
                    occ_at[i] = occ_mask[ky[i], kx[i]]
                    n_body = cv2.countNonZero(body)
                    if n_body:
                        occluded[i] = cv2.countNonZero(cv2.bitwise_and(body, occ_mask)) / n_body
            frame = cv2.transform(frame, transform)
            if blur:
                frame = cv2.GaussianBlur(frame, ksize, blur)
            ny, nx = noise_yx[i]
            cv2.add(frame, npos[ny:ny + H, nx:nx + W], dst=frame)
            cv2.subtract(frame, nneg[ny:ny + H, nx:nx + W], dst=frame)
            frames.append(frame)
        keypoints = np.zeros((T, 18, 3), dtype=np.float32)
        if person:
            vis = inside & face_ok & ALLOWED[np.arange(18)[None, :], label_at] & (occ_at == 0)
            keypoints[..., :2] = np.where(vis[..., None], kp_xy, 0.0)
            keypoints[..., 2] = np.where(vis, spec.confidence, 0.0)
        return RenderedTracklet(
            frames=frames, keypoints=keypoints, occluded=occluded, motion=motion,
            bg_motion=bg_motion, failure=spec.failure.copy(), view=view_of_yaw(spec.yaw),
            yaw=float(spec.yaw), nominal_motion=np.asarray(spec.motion, dtype=np.float32),
            occluder=occ.kind if occ is not None else None)

    @staticmethod
    def _palette32(ident: Identity, yaw: float) -> np.ndarray:
        """``(256,)`` uint32 packed BGRA colour per part label; far-side limbs shaded darker."""
        pal = ident.palette().astype(np.float32)
        sin = np.sin(yaw)
        if abs(sin) > 0.4:
            far = L.LEFT_PARTS if sin > 0 else L.RIGHT_PARTS
            pal[list(far)] *= 0.72
        packed = np.zeros((256, 4), dtype=np.uint8)
        packed[: pal.shape[0], :3] = np.clip(pal, 0, 255).astype(np.uint8)
        return packed.view(np.uint32)[:, 0].copy()
