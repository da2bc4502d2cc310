"""Clip-consistent augmentation of frames and of maps aligned with them (flow, pose).

Every random choice (flip, crop offset, colour factors, erased rectangle) is drawn *once per
clip* from the generator passed in and applied identically to all T frames, so a clip stays
a coherent video. Geometric choices are applied to aligned maps too.

Training pipeline (the order of torchreid and Gao & Nevatia's code): resize to (H, W) ->
horizontal flip (p = ``flip_p``) -> zero-pad by ``pad`` and random-crop back to (H, W), i.e. a
translation by ``(tx, ty)`` in ``[-pad, pad]`` pixels -> colour jitter -> to [0, 1] ->
normalise -> random erasing. Test pipeline: resize -> normalise.

Maps. A map of size (h, w) that belongs to a frame of size (H0, W0) is resized to
``(round(h H / H0), round(w W / W0))``, i.e. it keeps its resolution *relative to the image*
(a full-size flow stays full-size, 1/8-size pose heatmaps stay 1/8 of the output). The flip
and the translation are applied in the same normalised coordinates as for the image, so
map and image stay aligned: the translation is ``tx * w' / W`` map pixels (exact integer
shift when that is whole, bilinear otherwise); areas shifted in are zero. Colour jitter and
erasing touch images only.

Flow. For maps named in ``flow_keys`` (default ``("flow",)``, channels (dx, dy)) a flip
negates dx, and with ``scale_flow=True`` (default) displacements are multiplied by the
resize factor (``w'/w`` for dx, ``h'/h`` for dy), which is right when flow is stored in
pixels of its own map; pass ``scale_flow=False`` for flow already in resolution-free units.

Mirror-aware maps. A horizontal flip turns a left wrist into a right wrist: maps whose
channels have a handedness (OpenPose heatmaps and part-affinity fields) name a rule in
``flip_rules``: ``{name: (perm, sign)}`` gives, after the spatial flip,
``out[:, c] = sign[c] * map[:, perm[c]]`` (swap left/right channels, negate PAF x
components). ``engine.builders`` passes the pose layout's rule.

uint8 output (``output="uint8"``, what the training loader uses). The worker does only the
geometric part (resize, flip, pad + crop) and returns ``(T, 3, H, W)`` uint8 images plus the
clip's photometric choices as a ``(7,)`` float vector (:meth:`ClipTransform.photometric_vector`:
brightness, contrast, saturation, erase top/left/height/width; height 0 = no erasing).
:meth:`ClipTransform.finish_batch` then applies colour jitter, normalisation and erasing to
the whole batch at once on the training device (4× less data crosses the process boundary
and the host-to-device link, and the float work runs on the device's threads or GPU). The
colour arithmetic is OpenCV's (rounding and saturation to 0..255 after each step, OpenCV's
fixed-point grey), so both outputs agree to within one grey level (tests), and exactly
without colour jitter.

Choices: colour jitter draws brightness, contrast and saturation factors uniformly from
``[1 - c, 1 + c]`` and applies them in that fixed order (no hue: it is costly and none of the
implemented papers uses it). Random erasing (Zhong et al. 2020) draws area in
``[0.02, 0.4]`` of the image and log-uniform aspect ratio in ``[0.3, 1/0.3]``, at most 10
tries, and fills with 0 after normalisation, i.e. the dataset mean colour.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ClipParams", "ClipTransform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ClipParams:
    """The random choices for one clip.

    Attributes:
        flip: horizontal flip.
        tx, ty: translation in output pixels; output ``(y, x)`` shows input ``(y+ty, x+tx)``.
        brightness, contrast, saturation: colour factors (1 = unchanged).
        erase: ``(top, left, height, width)`` in output pixels, or None.
    """

    flip: bool = False
    tx: int = 0
    ty: int = 0
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    erase: tuple[int, int, int, int] | None = None


class ClipTransform:
    """Resize / augment / normalise a clip and its aligned maps with one set of choices.

    Args:
        height, width: output image size (H, W).
        train: apply the random augmentations (else resize + normalise only).
        flip_p: horizontal flip probability.
        pad: zero padding before the random crop (max translation in pixels).
        erasing_p: random erasing probability.
        color_jitter: strength c of brightness/contrast/saturation jitter (0 = off).
        mean, std: per-channel normalisation of [0, 1] RGB.
        flow_keys: names of maps holding (dx, dy) flow.
        scale_flow: rescale flow values when resizing flow maps.
        flip_rules: per map name, ``(perm, sign)`` applied to channels on a horizontal flip
            (left/right swap, sign flips), e.g. the pose layout's ``FLIP_PERMUTATION`` and
            ``FLIP_SIGN``.
        output: ``"float"`` (normalised float32 images) or ``"uint8"`` (geometric part only;
            finish with :meth:`finish_batch`, see the module docstring).
    """

    def __init__(
        self,
        height: int,
        width: int,
        train: bool,
        flip_p: float = 0.5,
        pad: int = 10,
        erasing_p: float = 0.0,
        color_jitter: float = 0.0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        flow_keys: Sequence[str] = ("flow",),
        scale_flow: bool = True,
        flip_rules: Mapping[str, tuple[Sequence[int], Sequence[float]]] | None = None,
        output: str = "float",
    ) -> None:
        self.height, self.width, self.train = int(height), int(width), bool(train)
        self.flip_p, self.pad = float(flip_p), int(pad)
        self.erasing_p, self.color_jitter = float(erasing_p), float(color_jitter)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"ClipTransform: mean/std must be 3 values, std > 0; got {mean}, {std}")
        self.flow_keys = tuple(flow_keys)
        self.scale_flow = bool(scale_flow)
        self.flip_rules: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for key, (perm, sign) in (flip_rules or {}).items():
            perm_t = torch.as_tensor(np.array(perm), dtype=torch.long)
            sign_t = torch.as_tensor(np.array(sign), dtype=torch.float32)
            if perm_t.ndim != 1 or perm_t.shape != sign_t.shape:
                raise ValueError(f"ClipTransform: flip rule for {key!r} needs a permutation and "
                                 f"a sign of equal length, got {tuple(perm_t.shape)} and "
                                 f"{tuple(sign_t.shape)}")
            self.flip_rules[key] = (perm_t, sign_t)
        if output not in ("float", "uint8"):
            raise ValueError(f"ClipTransform: output must be 'float' or 'uint8', got {output!r}")
        self.output = output
        # x_norm = x_uint8 * scale + shift, per channel
        self._scale = np.array([1.0 / (255.0 * s) for s in self.std], dtype=np.float32)
        self._shift = np.array([-m / s for m, s in zip(self.mean, self.std, strict=True)], dtype=np.float32)

    def __repr__(self) -> str:
        return (f"ClipTransform(height={self.height}, width={self.width}, train={self.train}, "
                f"flip_p={self.flip_p}, pad={self.pad}, erasing_p={self.erasing_p}, "
                f"color_jitter={self.color_jitter})")

    # ------------------------------------------------------------------ random choices
    def sample_params(self, rng: np.random.Generator | None) -> ClipParams:
        """Draw the choices for one clip (identity when ``train`` is False)."""
        if not self.train:
            return ClipParams()
        if rng is None:
            raise ValueError("ClipTransform(train=True) needs a numpy Generator")
        flip = bool(rng.random() < self.flip_p)
        tx, ty = (int(v) for v in rng.integers(-self.pad, self.pad + 1, size=2))
        b = c = s = 1.0
        if self.color_jitter > 0:
            lo, hi = max(0.0, 1 - self.color_jitter), 1 + self.color_jitter
            b, c, s = (float(v) for v in rng.uniform(lo, hi, size=3))
        erase = None
        if self.erasing_p > 0 and rng.random() < self.erasing_p:
            erase = self._draw_erase(rng)
        return ClipParams(flip, tx, ty, b, c, s, erase)

    def _draw_erase(self, rng: np.random.Generator) -> tuple[int, int, int, int] | None:
        H, W = self.height, self.width
        for _ in range(10):
            area = rng.uniform(0.02, 0.4) * H * W
            ratio = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
            h = int(round(math.sqrt(area * ratio)))
            w = int(round(math.sqrt(area / ratio)))
            if 0 < h < H and 0 < w < W:
                return int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1)), h, w
        return None

    # ------------------------------------------------------------------ application
    def __call__(
        self,
        frames: Sequence[np.ndarray],
        maps: Mapping[str, np.ndarray | torch.Tensor] | None = None,
        rng: np.random.Generator | None = None,
        frame_size: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Transform one clip.

        Args:
            frames: T images, each ``(h_i, w_i, 3)`` uint8 RGB.
            maps: name -> ``(T, C, h, w)`` float maps aligned with the frames.
            rng: generator for the random choices (required when training).
            frame_size: ``(H0, W0)`` of the frames on disk, when they were decoded at reduced
                size; maps are scaled relative to it. Default: the first frame's size.

        Returns:
            images ``(T, 3, H, W)`` float32 normalised, and name -> ``(T, C, h', w')`` float32.
        """
        params = self.sample_params(rng)
        return self.apply(frames, maps or {}, params, frame_size)

    def apply(
        self,
        frames: Sequence[np.ndarray],
        maps: Mapping[str, np.ndarray | torch.Tensor],
        params: ClipParams,
        frame_size: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Apply given choices (see :meth:`__call__`)."""
        if len(frames) == 0:
            raise ValueError("ClipTransform: empty clip")
        if frame_size is None:
            frame_size = (int(frames[0].shape[0]), int(frames[0].shape[1]))
        images = self._images(frames, params)
        out_maps = {k: self._map(k, v, params, frame_size, len(frames)) for k, v in maps.items()}
        return images, out_maps

    def _images(self, frames: Sequence[np.ndarray], p: ClipParams) -> torch.Tensor:
        if self.output == "uint8":
            return self._images_uint8(frames, p)
        H, W = self.height, self.width
        jitter = p.brightness != 1.0 or p.contrast != 1.0 or p.saturation != 1.0
        # colour works on the padded uint8 crop (torchreid's order: pad, crop, jitter), so
        # then the shift is done on uint8 first; otherwise it is folded into normalisation
        tx, ty = (0, 0) if jitter else (p.tx, p.ty)
        src, dst = _shift_slices(tx, ty, H, W)
        out = np.empty((len(frames), 3, H, W), dtype=np.float32)
        if src is None or tx or ty:  # zero padding shows as normalised black
            out[:] = self._shift.reshape(1, 3, 1, 1)
        if src is None:
            return torch.from_numpy(out)
        # frame by frame, normalising straight into (T, 3, H, W) from the flipped, shifted
        # view: one pass over each frame and no stacked intermediate. numpy rather than torch
        # so the cost does not depend on torch's thread pool (oversubscribed in the main
        # process).
        for t, f in enumerate(frames):
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise ValueError(f"ClipTransform: frames must be (h, w, 3) uint8 RGB, got "
                                 f"{f.shape} {f.dtype}")
            if f.shape[0] != H or f.shape[1] != W:
                down = f.shape[0] > H and f.shape[1] > W
                f = cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR)
            if p.flip:
                f = f[:, ::-1]
            if jitter:
                if p.tx or p.ty:
                    f = _shift(f, p.tx, p.ty, axis_y=0, axis_x=1)
                f = _colour(np.ascontiguousarray(f), p.brightness, p.contrast, p.saturation)
            for c in range(3):
                o = out[t, c, dst[0], dst[1]]
                np.multiply(f[src[0], src[1], c], self._scale[c], out=o, casting="unsafe")
                o += self._shift[c]
        if p.erase is not None:
            top, left, h, w = p.erase
            out[:, :, top:top + h, left:left + w] = 0.0
        return torch.from_numpy(out)

    def _resized(self, f: np.ndarray) -> np.ndarray:
        H, W = self.height, self.width
        if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
            raise ValueError(f"ClipTransform: frames must be (h, w, 3) uint8 RGB, got "
                             f"{f.shape} {f.dtype}")
        if f.shape[0] != H or f.shape[1] != W:
            down = f.shape[0] > H and f.shape[1] > W
            f = cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR)
        return f

    def _images_uint8(self, frames: Sequence[np.ndarray], p: ClipParams) -> torch.Tensor:
        """Resize, flip, shift (zero padding): ``(T, 3, H, W)`` uint8."""
        H, W = self.height, self.width
        src, dst = _shift_slices(p.tx, p.ty, H, W)
        out = np.zeros((len(frames), 3, H, W), dtype=np.uint8)
        for t, f in enumerate(frames):
            f = self._resized(f)
            if src is None:
                continue
            if p.flip:
                f = f[:, ::-1]
            out[t, :, dst[0], dst[1]] = f[src[0], src[1]].transpose(2, 0, 1)
        return torch.from_numpy(out)

    @staticmethod
    def photometric_vector(p: ClipParams) -> torch.Tensor:
        """``(7,)`` float32: brightness, contrast, saturation, erase top, left, height, width
        (height = width = 0 when nothing is erased); what :meth:`finish_batch` reads."""
        top, left, h, w = p.erase if p.erase is not None else (0, 0, 0, 0)
        return torch.tensor([p.brightness, p.contrast, p.saturation, top, left, h, w],
                            dtype=torch.float32)

    def finish_batch(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Colour jitter, normalisation and erasing of a batch of uint8 clips, batched.

        Args:
            batch: batch dict whose ``images`` are ``(B, T, 3, H, W)`` uint8 (on any device)
                with ``photometric (B, 7)`` from :meth:`photometric_vector`; a batch with
                float images is returned unchanged.

        Returns:
            the batch with ``images`` float32 normalised on the same device and without
            ``photometric``.
        """
        x = batch.get("images")
        if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8:
            return dict(batch)
        out = dict(batch)
        p = out.pop("photometric", None)
        dev = x.device
        scale = torch.tensor(self._scale, device=dev).view(1, 1, 3, 1, 1)
        shift = torch.tensor(self._shift, device=dev).view(1, 1, 3, 1, 1)
        # the host reads the few per-clip numbers once (one small copy per batch)
        rows = p.tolist() if p is not None and self.train else []
        if any(r[0] != 1.0 or r[1] != 1.0 or r[2] != 1.0 for r in rows):
            q = p.to(dev, torch.float32)
            imgs = _colour_batched(x.to(torch.float32), q[:, 0], q[:, 1], q[:, 2])
            imgs = imgs.mul_(scale).add_(shift)
        else:
            # convert, then scale in place: 5x faster on CPU than the mixed-dtype
            # broadcast product ``x * scale`` (same float32 operations, same values)
            imgs = x.to(torch.float32).mul_(scale).add_(shift)
        for i, r in enumerate(rows):  # erasing: a rectangle per clip, on all its frames
            top, left, h, w = (int(v) for v in r[3:])
            if h > 0 and w > 0:
                imgs[i, :, :, top:top + h, left:left + w] = 0.0
        out["images"] = imgs
        return out

    def _map(
        self, name: str, value: np.ndarray | torch.Tensor, p: ClipParams,
        frame_size: tuple[int, int], num_frames: int,
    ) -> torch.Tensor:
        m = torch.as_tensor(value, dtype=torch.float32)
        if m.ndim != 4 or m.shape[0] != num_frames:
            raise ValueError(f"ClipTransform: map {name!r} must be (T={num_frames}, C, h, w), "
                             f"got {tuple(m.shape)}")
        is_flow = name in self.flow_keys
        if is_flow and m.shape[1] != 2:
            raise ValueError(f"ClipTransform: flow map {name!r} must have 2 channels (dx, dy), "
                             f"got {m.shape[1]}")
        h, w = m.shape[-2:]
        H0, W0 = frame_size
        oh = max(1, round(h * self.height / H0))
        ow = max(1, round(w * self.width / W0))
        if (oh, ow) != (h, w):
            m = F.interpolate(m, size=(oh, ow), mode="bilinear", align_corners=False,
                              antialias=oh < h or ow < w)
            if is_flow and self.scale_flow:
                m = m * torch.tensor([ow / w, oh / h]).view(1, 2, 1, 1)
        else:
            m = m.clone()
        if p.flip:
            m = torch.flip(m, dims=[-1])
            if is_flow:
                m[:, 0].neg_()
            rule = self.flip_rules.get(name)
            if rule is not None:
                perm, sign = rule
                if perm.numel() != m.shape[1]:
                    raise ValueError(f"ClipTransform: flip rule for {name!r} covers "
                                     f"{perm.numel()} channels, the map has {m.shape[1]}")
                m = m[:, perm] * sign.view(1, -1, 1, 1)
        if p.tx or p.ty:
            sx, sy = p.tx * ow / self.width, p.ty * oh / self.height
            if float(sx).is_integer() and float(sy).is_integer():
                m = torch.from_numpy(_shift(m.numpy(), int(sx), int(sy), axis_y=2, axis_x=3))
            else:
                theta = torch.tensor([[1.0, 0.0, 2.0 * sx / ow], [0.0, 1.0, 2.0 * sy / oh]])
                grid = F.affine_grid(theta.expand(m.shape[0], 2, 3), list(m.shape),
                                     align_corners=False)
                m = F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros",
                                  align_corners=False)
        return m.contiguous()


def _shift_slices(
    tx: int, ty: int, H: int, W: int
) -> tuple[tuple[slice, slice] | None, tuple[slice, slice] | None]:
    """(y, x) source and destination slices of ``out[y, x] = in[y + ty, x + tx]``, or Nones
    when the shift moves everything out."""
    if abs(tx) >= W or abs(ty) >= H:
        return None, None
    src = (slice(max(ty, 0), H + min(ty, 0)), slice(max(tx, 0), W + min(tx, 0)))
    dst = (slice(max(-ty, 0), H + min(-ty, 0)), slice(max(-tx, 0), W + min(-tx, 0)))
    return src, dst


def _shift(a: np.ndarray, tx: int, ty: int, axis_y: int, axis_x: int) -> np.ndarray:
    """``out[..y.., ..x..] = a[..y+ty.., ..x+tx..]``, zero where that falls outside."""
    out = np.zeros_like(a)
    H, W = a.shape[axis_y], a.shape[axis_x]
    src = [slice(None)] * a.ndim
    dst = [slice(None)] * a.ndim
    for axis, t, n in ((axis_y, ty, H), (axis_x, tx, W)):
        if abs(t) >= n:
            return out
        src[axis] = slice(max(t, 0), n + min(t, 0))
        dst[axis] = slice(max(-t, 0), n + min(-t, 0))
    out[tuple(dst)] = a[tuple(src)]
    return out


def _grey_batched(x: torch.Tensor) -> torch.Tensor:
    """OpenCV's ``RGB2GRAY`` of ``(..., 3, H, W)`` float images of integers: fixed-point
    weights ``(4899, 9617, 1868) / 2**14``, rounded; ``(..., 1, H, W)``. Exact in float32."""
    r, g, b = x.unbind(-3)
    return torch.floor((r * 4899 + g * 9617 + b * 1868 + 8192) / 16384).unsqueeze(-3)


def _colour_batched(x: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                    s: torch.Tensor) -> torch.Tensor:
    """:func:`_colour` on ``(B, T, 3, H, W)`` float images of integers 0..255, per-clip factors
    ``(B,)``; rounding (half to even, as OpenCV's ``cvRound``) and saturation after each step."""
    def sat(v: torch.Tensor) -> torch.Tensor:
        return v.round_().clamp_(0, 255)

    view = (-1, 1, 1, 1, 1)
    b, c, s = b.view(view), c.view(view), s.view(view)
    x = sat(x * b)
    mean = _grey_batched(x).mean(dim=(-3, -2, -1), keepdim=True)  # per frame, as _colour
    x = torch.where(c != 1.0, sat(x * c + (1.0 - c) * mean), x)
    grey = _grey_batched(x)
    x = torch.where(s != 1.0, sat(x * s + grey * (1.0 - s)), x)
    return x


def _colour(img: np.ndarray, b: float, c: float, s: float) -> np.ndarray:
    """Brightness, contrast, saturation of one ``(H, W, 3)`` uint8 RGB image, in that order.

    Same maths as torchvision / PIL ``ImageEnhance``: blend with black, with the mean grey
    level, with the grey image; results saturate to [0, 255].
    """
    if b != 1.0:
        img = cv2.convertScaleAbs(img, alpha=b)
    if c != 1.0:
        mean = float(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).mean())
        img = cv2.addWeighted(img, c, img, 0.0, (1.0 - c) * mean)
    if s != 1.0:
        grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        img = cv2.addWeighted(img, s, grey, 1.0 - s, 0.0)
    return img
