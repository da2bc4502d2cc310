"""``Predictor``: embed unlabelled tracklets with a model package.

The predictor applies exactly the package's preprocessing (input size, mean/std, test clip
plan, normalisation) through the same extraction path as training-time evaluation
(:func:`videoreid.engine.extract.extract_features`): clips of many tracklets are batched
together, each clip is decoded only when its batch is formed, and clip features are summed
per tracklet, so memory is bounded by one batch whatever the tracklet lengths.

A tracklet is any of:

- a folder of crops (``.jpg/.jpeg/.png/.bmp``), ordered by the last number in the file name;
- a list of image paths, in temporal order;
- a list of ``H×W×3`` uint8 RGB frames, or an ``(T, H, W, 3)`` uint8 array. In-memory frames
  are written losslessly (PNG) to a temporary folder first, so that the one extraction path
  serves every input (the folder is removed afterwards);
- a :class:`~videoreid.data.tracklet.Tracklet`.

Models that consume optical flow besides images (``man``, ``gated_attention``) get it
estimated on the fly from the crops (``FlowLoader(on_missing="compute")``) with the estimator
recorded in the package (``preprocessing.modality_args.flow``, default DIS). Models fed
pose maps from a keypoint cache (AlignNet with ``pose_source="keypoints"``) are refused with
a message; AlignNet with ``pose_source="openpose"`` runs its pose network inside the model.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videoreid.data.tracklet import Tracklet

log = logging.getLogger(__name__)

__all__ = ["Predictor", "as_tracklet", "folder_frames", "resolve_device"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: the first CUDA device if there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _frame_key(path: Path) -> tuple[int, int, str]:
    from videoreid.data.datasets.folder import parse_frame_number

    try:
        return (0, parse_frame_number(path.name)[0], path.name)
    except ValueError:
        return (1, 0, path.name)


def folder_frames(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files of a crop folder, ordered by the last number in their names."""
    folder = Path(folder)
    frames = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                    key=_frame_key)
    if not frames:
        raise ValueError(f"tracklet folder {folder} holds no image files "
                         f"({'/'.join(IMAGE_SUFFIXES)})")
    return frames


def _write_frames(frames: Any, folder: Path) -> list[Path]:
    import cv2

    paths = []
    for i, f in enumerate(frames):
        a = np.asarray(f)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise ValueError(f"in-memory frame {i} has shape {a.shape} dtype {a.dtype}; "
                             "expected H×W×3 uint8 RGB")
        p = folder / f"{i:06d}.png"
        if not cv2.imwrite(str(p), cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write temporary frame {p}")
        paths.append(p)
    if not paths:
        raise ValueError("an in-memory tracklet has no frames")
    return paths


def as_tracklet(item: Any, index: int = 0, scratch: Path | None = None) -> Tracklet:
    """Turn one accepted tracklet form (module docstring) into a :class:`Tracklet`.

    Args:
        item: the tracklet.
        index: its position (names in-memory tracklets, and errors).
        scratch: folder for in-memory frames (required for them).
    """
    if isinstance(item, Tracklet):
        return item
    if isinstance(item, (str, os.PathLike)):
        p = Path(item)
        if not p.is_dir():
            raise ValueError(f"tracklet {index}: {p} is not a folder of crops")
        return Tracklet(folder_frames(p), pid=-1, camid=0, meta={"tracklet_id": str(p)})
    in_memory = (isinstance(item, np.ndarray) and item.ndim == 4) or (
        isinstance(item, Sequence) and len(item) > 0 and isinstance(item[0], np.ndarray))
    if in_memory:
        if scratch is None:
            raise ValueError("in-memory frames need a scratch folder")
        folder = scratch / f"t{index:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        return Tracklet(_write_frames(item, folder), pid=-1, camid=0,
                        meta={"tracklet_id": f"memory_{index}"})
    if isinstance(item, Sequence) and len(item) > 0 and isinstance(item[0], (str, os.PathLike)):
        paths = [Path(p) for p in item]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ValueError(f"tracklet {index}: {len(missing)} image paths do not exist, "
                             f"e.g. {missing[0]}")
        return Tracklet(paths, pid=-1, camid=0, meta={"tracklet_id": str(paths[0])})
    raise ValueError(f"tracklet {index}: expected a crop folder, a list of image paths, a list "
                     f"of H×W×3 uint8 frames or a Tracklet; got {type(item).__name__}")


class Predictor:
    """Embed tracklets with a model package.

    Args:
        model_dir: a model package (``videoreid package``).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda:0"``, ...
        batch_size: clips per forward pass (bounds memory).
        workers: DataLoader workers decoding clips.
        precision: ``"auto"`` (bf16 where the device computes it natively, else fp32),
            ``"fp32"``, ``"bf16"``, ``"fp16"`` (see :mod:`videoreid.engine.inference`).

    Attributes:
        model: the rebuilt model (eval mode). package: its :class:`ModelPackage`.
        plan: the package's test clip plan; transform: its test ``ClipTransform``.
    """

    def __init__(self, model_dir: str | os.PathLike[str], device: str | torch.device = "auto",
                 batch_size: int = 32, workers: int = 0, precision: str = "auto") -> None:
        from videoreid.data.temporal import build_plan
        from videoreid.data.transforms import ClipTransform
        from videoreid.inference.package import load_model

        self.device = resolve_device(device)
        self.model = load_model(model_dir, device=self.device)
        self.package = self.model.package
        pre = self.package.preprocessing
        self.plan = build_plan(pre["test_plan"]["name"], **pre["test_plan"].get("args", {}))
        self.transform = ClipTransform(int(pre["height"]), int(pre["width"]), train=False,
                                       mean=pre["mean"], std=pre["std"])
        self.normalize = str(self.package.retrieval.get("normalize", "none"))
        self.metric = str(self.package.retrieval.get("metric", "euclidean"))
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.workers = int(workers)
        self.precision = precision
        extra = [m for m in self.package.modalities if m != "images"]
        unsupported = [m for m in extra if m != "flow"]
        if unsupported:
            raise NotImplementedError(
                f"model {self.package.name!r} consumes {unsupported} maps read from a cache "
                "besides the images; the predictor computes only optical flow on the fly "
                "(for AlignNet, train with pose_source='openpose' to run the pose network "
                "inside the model)")
        self.extra_modalities = extra

    @property
    def embedding_dim(self) -> int:
        return self.package.embedding_dim

    def _modalities(self, scratch: Path) -> dict[str, Any]:
        if "flow" not in self.extra_modalities:
            return {}
        from videoreid.modalities.flow import FlowLoader

        args = dict(self.package.preprocessing.get("modality_args", {}).get("flow", {}))
        # new footage has no flow cache: estimate per clip with the training estimator
        return {"flow": FlowLoader(root=scratch, on_missing="compute",
                                   estimator=args.get("estimator", "dis"),
                                   estimator_args=args.get("estimator_args"),
                                   scale=float(args.get("scale", 1.0)))}

    def embed(self, tracklets: Sequence[Any], progress: bool = False) -> np.ndarray:
        """One embedding per tracklet, under the package's preprocessing and clip plan.

        Args:
            tracklets: the tracklets (forms in the module docstring).
            progress: show a progress bar.

        Returns:
            ``(N, D)`` float32, row i for ``tracklets[i]`` (normalised as the package says).
        """
        from videoreid.engine.extract import extract_features

        items = list(tracklets)
        if not items:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        with tempfile.TemporaryDirectory(prefix="videoreid_embed_") as tmp:
            scratch = Path(tmp)
            tracks = [as_tracklet(t, i, scratch) for i, t in enumerate(items)]
            return extract_features(
                self.model, tracks, self.plan, self.transform, batch_size=self.batch_size,
                device=self.device, normalize=self.normalize, workers=self.workers,
                modalities=self._modalities(scratch) or None, precision=self.precision,
                progress=progress, desc="embed")
