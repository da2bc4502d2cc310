"""Precompute pose data for a whole dataset (``videoreid pose``): maps or keypoints, cached.

:func:`compute_dataset_pose` visits every distinct frame of a dataset (all splits, chosen
subsets) once and writes a :class:`~videoreid.modalities.pose.cache.PoseCache`:

- ``mode="maps"``: the 57 maps per frame as float16 ``.npy`` — rendered from the keypoint
  files (``source="keypoints"``) or predicted by the OpenPose network from a local weight
  file (``source="openpose"``), frames fed at their stored size as AlignNet does.
- ``mode="keypoints"`` (``source="openpose"`` only): OpenPose JSON per frame from the
  network's heatmaps, parsed for the *one* person a re-id crop shows
  (:func:`single_person_keypoints`): each heatmap is upsampled to the frame (bicubic, as
  OpenPose resizes its outputs) and its maximum is the keypoint if it exceeds ``threshold``
  (OpenPose's ``thre1 = 0.1``), with that value as confidence. OpenPose's multi-person
  assembly (PAF scoring and greedy matching) is not implemented: a crop centred on one
  person does not need it.

The job is resumable: frames whose file exists are skipped unless ``overwrite``. Storage:
57 × 16 × 8 float16 maps are 15 KB per 128 × 64 frame (about 16 GB for MARS at 256 × 128;
rendering keypoints on the fly instead costs milliseconds per clip and needs no cache).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from videoreid.modalities.pose.cache import CACHE_DIRNAME, PoseCache
from videoreid.modalities.pose.keypoints import keypoints_json
from videoreid.modalities.pose.layout import NUM_KEYPOINTS
from videoreid.modalities.pose.loader import PoseLoader, frame_size
from videoreid.modalities.pose.render import map_size

log = logging.getLogger(__name__)

__all__ = ["MODES", "PoseReport", "compute_dataset_pose", "compute_pose_cache",
           "single_person_keypoints", "openpose_maps"]

MODES = ("maps", "keypoints")
OPENPOSE_STRIDE = 8


@dataclass
class PoseReport:
    """What a run did: frames written, skipped (already cached), and without any person."""

    written: int = 0
    skipped: int = 0
    empty: int = 0
    frames: int = 0

    def __str__(self) -> str:
        return (f"{self.frames} frames: {self.written} written, {self.skipped} already cached, "
                f"{self.empty} with no person")


def single_person_keypoints(heatmaps: torch.Tensor, frame_hw: Sequence[int],
                            threshold: float = 0.1) -> np.ndarray:
    """One person's keypoints from network heatmaps (see the module docstring).

    Args:
        heatmaps: ``(N, 19 or 18, h, w)`` heatmaps at stride ``H / h``.
        frame_hw: ``(H, W)`` of the frames.
        threshold: minimum peak value for a keypoint to count as found.
    Returns:
        ``(N, 18, 3)`` float32 ``(x, y, c)`` in frame pixels; ``0, 0, 0`` when not found.
    """
    H, W = int(frame_hw[0]), int(frame_hw[1])
    heat = heatmaps[:, :NUM_KEYPOINTS].float()
    up = F.interpolate(heat, size=(H, W), mode="bicubic", align_corners=False)
    val, arg = up.flatten(2).max(dim=2)  # (N, 18)
    y = (arg // W).float()
    x = (arg % W).float()
    out = torch.stack([x, y, val], dim=-1)
    out[val <= threshold] = 0.0
    return out.cpu().numpy().astype(np.float32)


@torch.no_grad()
def openpose_maps(net: torch.nn.Module, frames: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """57 maps of same-size RGB uint8 frames ``(H, W, 3)`` → ``(N, 57, H // 8, W // 8)``.

    Frames are padded right/bottom to a multiple of 8 with grey 128 (OpenPose's pad value)
    and the extra output cells cropped.
    """
    x = torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float()
    x = x.flip(1) / 256.0 - 0.5  # RGB -> BGR, OpenPose normalisation
    H, W = x.shape[-2:]
    ph, pw = (-H) % OPENPOSE_STRIDE, (-W) % OPENPOSE_STRIDE
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), value=128 / 256.0 - 0.5)
    h, w = map_size((H, W), OPENPOSE_STRIDE)
    return net(x)[..., :h, :w].float()


def compute_pose_cache(
    frames: Sequence[Path],
    cache: PoseCache,
    *,
    net: torch.nn.Module | None = None,
    loader: PoseLoader | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    threshold: float = 0.1,
    overwrite: bool = False,
    progress: bool | None = None,
    desc: str = "pose",
) -> PoseReport:
    """Fill ``cache`` for ``frames`` from the network ``net`` or the keypoint ``loader``.

    Exactly one of ``net`` (OpenPose, ``source="openpose"``) and ``loader`` (a keypoint
    :class:`PoseLoader`, ``source="keypoints"``, kind ``maps`` only) is given.
    """
    if (net is None) == (loader is None):
        raise ValueError("compute_pose_cache: pass exactly one of net and loader")
    if loader is not None and cache.kind != "maps":
        raise ValueError("keypoints are already on disk; nothing to compute for kind "
                         "'keypoints' from the keypoint source")
    from videoreid.data.decode import decode_image

    device = torch.device(device)
    cache.write_meta(overwrite=overwrite)
    report = PoseReport(frames=len(frames))
    todo = [f for f in frames if overwrite or not cache.path_for(f).is_file()]
    report.skipped = len(frames) - len(todo)
    if net is not None:
        net.eval().to(device)
    with tqdm(total=len(todo), unit="frame", desc=desc,
              disable=(None if progress is None else not progress)) as bar:
        for s in range(0, len(todo), batch_size):
            chunk = todo[s:s + batch_size]
            if loader is not None:
                maps = loader._render(chunk)
                for f, m in zip(chunk, maps, strict=True):
                    cache.write_maps(f, m)
                    report.empty += int(m[:NUM_KEYPOINTS].max() == 0)
            else:
                images = [decode_image(f) for f in chunk]
                by_size: dict[tuple[int, int], list[int]] = {}
                for i, im in enumerate(images):
                    by_size.setdefault(im.shape[:2], []).append(i)
                for size, idx in by_size.items():
                    maps = openpose_maps(net, [images[i] for i in idx], device)
                    if cache.kind == "maps":
                        for i, m in zip(idx, maps.cpu().numpy(), strict=True):
                            cache.write_maps(chunk[i], m)
                            report.empty += int(m[:NUM_KEYPOINTS].max() <= threshold)
                    else:
                        kps = single_person_keypoints(maps[:, :NUM_KEYPOINTS + 1], size, threshold)
                        for i, kp in zip(idx, kps, strict=True):
                            cache.write_keypoints_text(chunk[i], keypoints_json(kp[None]))
                            report.empty += int(not (kp[:, 2] > 0).any())
            report.written += len(chunk)
            bar.update(len(chunk))
    return report


def compute_dataset_pose(
    dataset: str,
    root: str | os.PathLike[str],
    *,
    mode: str = "maps",
    source: str = "keypoints",
    weights: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    stride: int = 8,
    sigma: float = 7.0,
    paf_threshold: float = 1.0,
    threshold: float = 0.1,
    subsets: Sequence[str] = ("train", "query", "gallery"),
    batch_size: int = 64,
    device: str = "cpu",
    on_missing: str = "error",
    overwrite: bool = False,
    progress: bool | None = None,
    dataset_args: dict[str, Any] | None = None,
) -> tuple[PoseCache, PoseReport]:
    """Pose maps or keypoints of every distinct frame of a dataset into a cache.

    Args:
        dataset: name in ``videoreid.data.datasets.factory.DATASETS``.
        root: dataset parent folder or the dataset folder itself.
        mode: ``"maps"`` or ``"keypoints"`` (the latter with ``source="openpose"``).
        source: ``"keypoints"`` (render the JSON files beside the frames) or ``"openpose"``
            (run the network with ``weights``).
        weights: local converted OpenPose weights (``body_pose_model.pth``).
        cache_dir: default ``<resolved dataset folder>/pose_cache``; anchor = dataset folder.
        stride, sigma, paf_threshold: rendering settings (``source="keypoints"``; the network
            has stride 8).
        threshold: keypoint peak threshold (``mode="keypoints"``).
        subsets: which of each split's lists to cover.
        batch_size, device: frames per network pass, torch device.
        on_missing: a missing keypoint file is an ``"error"`` or ``"empty"`` maps.
        overwrite, progress: recompute existing files; progress bar (None: on a terminal).
        dataset_args: extra loader options (e.g. PRID2011 ``seed``).
    """
    from videoreid.data.datasets.factory import build_dataset

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if source not in ("keypoints", "openpose"):
        raise ValueError(f"source must be 'keypoints' or 'openpose', got {source!r}")
    if mode == "keypoints" and source == "keypoints":
        raise ValueError("--mode keypoints needs --source openpose (the keypoint source reads "
                         "keypoint files that already exist)")
    bad = sorted(set(subsets) - {"train", "query", "gallery"})
    if bad:
        raise ValueError(f"unknown subsets {bad}; valid: train, query, gallery")
    ds = build_dataset(dataset, root, **(dataset_args or {}))
    frames = list(dict.fromkeys(
        Path(f) for split in ds.splits() for s in subsets for t in getattr(split, s)
        for f in t.frames))
    anchor = Path(ds.root)
    net = loader = None
    if source == "openpose":
        from videoreid.models.openpose import OpenPoseBody, load_openpose_weights

        if weights is None:
            raise ValueError("--source openpose needs --weights (a local body_pose_model.pth)")
        net = OpenPoseBody()
        load_openpose_weights(net, weights)
        stride = OPENPOSE_STRIDE
        spec = {"name": "openpose", "weights": os.path.basename(os.fspath(weights))}
    else:
        loader = PoseLoader(root=root, source="keypoints", stride=stride, sigma=sigma,
                            paf_threshold=paf_threshold, on_missing=on_missing)
        spec = {"name": "keypoints"}
    cache = PoseCache(cache_dir if cache_dir is not None else anchor / CACHE_DIRNAME, anchor,
                      kind=mode, source=spec, stride=stride, sigma=sigma,
                      paf_threshold=paf_threshold)
    if frames:
        log.info("%s: %d distinct frames of size %s", dataset, len(frames), frame_size(frames[0]))
    report = compute_pose_cache(frames, cache, net=net, loader=loader, batch_size=batch_size,
                                device=device, threshold=threshold, overwrite=overwrite,
                                progress=progress, desc=f"pose {dataset}")
    if loader is not None and loader.missing:
        log.warning("%d frame(s) had no keypoint file and got empty maps", loader.missing)
    return cache, report
