"""Test-time feature extraction: clip plans → clip features → one feature per tracklet.

Memory is bounded whatever the tracklet lengths: clips are streamed through a
``TestClipDataset`` + ``DataLoader`` (one clip decoded per item, ``batch_size`` clips per
forward pass, clips of many tracklets mixed in a batch), and each clip feature is added in
place into a per-tracklet running sum (float64, on the CPU) with a clip count. Nothing ever
holds all clips of a tracklet, let alone of the gallery; the largest buffers are one batch
and the ``(N, D)`` sums.

Aggregation is the mean over a tracklet's clips weighted by each clip's number of real
(unpadded) frames, ``frame_mask.sum()``, with optional L2 normalisation as each paper specifies
(``normalize``). Why weighted: the last clip of ``all_consecutive(T)`` (or the only clip of a
short tracklet) is repeat-padded; with a plain mean a clip of 1 real frame + 3 copies would
count as much as a clip of 4 real frames, so that frame would weigh 4× the others. With the
weights every real frame counts once per clip it appears in, and a model that averages frame
features over the mask (temporal average pooling) gives exactly the mean over all real frames
(CMMANet eq. 5). Batches without ``frame_mask`` weigh every clip 1.

- ``"none"``: weighted mean of clip embeddings (Gao & Nevatia's dense test, euclidean).
- ``"before"``: L2-normalise every clip feature, then take the weighted mean.
- ``"after"``: average, then L2-normalise the tracklet feature.
- ``"both"``: both (RGSA/RGTR: "each L2-normalised, averaged, re-normalised", cosine).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from videoreid.data.tracklet import ReIDSplit, Tracklet
from videoreid.engine.inference import InferenceRunner
from videoreid.engine.trainer import move_to_device

log = logging.getLogger(__name__)

__all__ = ["NORMALIZE", "clip_weights", "extract_features", "extract_split"]

NORMALIZE = ("none", "before", "after", "both")


def clip_weights(batch: Mapping[str, Any]) -> torch.Tensor:
    """Aggregation weight of each clip of a batch: its number of real frames.

    Args:
        batch: a clip batch; ``frame_mask (B, T)`` bool when present, ``images (B, T, ...)``.

    Returns:
        ``(B,)`` float64 on the CPU: ``frame_mask.sum(1)``, or ones without a mask.
    """
    mask = batch.get("frame_mask")
    if mask is None:
        return torch.ones(batch["images"].shape[0], dtype=torch.float64)
    return mask.to("cpu").sum(1).to(torch.float64)


def extract_features(
    model: nn.Module,
    tracklets: Sequence[Tracklet],
    plan: Any,
    transform: Any,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    normalize: str = "none",
    *,
    workers: int = 0,
    modalities: Mapping[str, Callable[[Tracklet, np.ndarray], np.ndarray]] | None = None,
    amp: str = "none",
    progress: bool = True,
    desc: str = "extract",
    precision: str = "auto",
    channels_last: bool = True,
    compile: bool = False,
) -> np.ndarray:
    """One feature per tracklet: the (normalised) mean of its clip embeddings, each clip
    weighted by its number of real frames (``frame_mask.sum()``; 1 without a mask).

    Args:
        model: ``forward(batch) -> ReIDOutput``; run in eval mode (mode restored after).
        tracklets: the tracklets, in the order of the output rows.
        plan: test clip plan (``videoreid.data.temporal``), ``plan(num_frames) -> clips``.
        transform: test ``ClipTransform``.
        batch_size: clips per forward pass (bounds memory).
        device: where the model runs.
        normalize: ``"none"``, ``"before"`` (per clip), ``"after"`` (per tracklet), ``"both"``.
        workers: DataLoader workers decoding clips.
        modalities: aligned-map loaders the model needs (see ``videoreid.data.clips``).
        amp: kept for older callers: ``"bf16"``/``"fp16"`` force that precision.
        progress: tqdm bar (hidden off a terminal).
        precision: ``"auto"`` (bf16 autocast where the device computes it natively, else
            fp32), ``"fp32"``, ``"bf16"``, ``"fp16"`` (see ``videoreid.engine.inference``).
        channels_last: run convolutions in channels-last layout (restored afterwards).
        compile: ``torch.compile`` the model (first batch pays the compilation).

    Returns:
        ``(N, D)`` float32 features, row i for ``tracklets[i]``.
    """
    from videoreid.data.clips import TestClipDataset, collate_clips

    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    if amp and amp.lower() not in ("none", "off", "false", "fp32"):
        precision = amp
    finish = None
    if getattr(transform, "output", None) == "float" and hasattr(transform, "finish_batch"):
        # workers hand over uint8 clips (4x less data); normalised batched here, identically
        transform = copy.copy(transform)
        transform.output = "uint8"
        finish = transform.finish_batch
    dataset = TestClipDataset(list(tracklets), plan, transform, modalities=modalities)
    n = len(dataset.tracklets)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_clips,
        pin_memory=device.type == "cuda",
            )
    sums: torch.Tensor | None = None
    counts = torch.zeros(n, dtype=torch.float64)
    runner = InferenceRunner(model, device, precision, channels_last, compile)
    try:
        with torch.inference_mode():
            for batch in tqdm(loader, desc=desc, disable=None if progress else True,
                              dynamic_ncols=True, leave=False):
                index = batch["tracklet_index"].long()
                weight = clip_weights(batch)  # on the CPU batch, before any transfer
                batch = move_to_device(batch, device)
                out = runner(finish(batch) if finish is not None else batch)
                emb = out.embedding.float()
                if normalize in ("before", "both"):
                    emb = F.normalize(emb, dim=1)
                emb = emb.to("cpu", torch.float64)
                if sums is None:
                    sums = torch.zeros(n, emb.shape[1], dtype=torch.float64)
                sums.index_add_(0, index, emb * weight[:, None])
                counts.index_add_(0, index, weight)
    finally:
        runner.close()
    if sums is None:  # no tracklets
        return np.zeros((0, 0), dtype=np.float32)
    missing = int((counts == 0).sum())
    if missing:  # a plan always yields >= 1 clip; this would be a plan bug
        raise RuntimeError(f"{missing} tracklets got no clip from plan {plan!r}")
    feats = sums / counts[:, None]
    if normalize in ("after", "both"):
        feats = F.normalize(feats, dim=1)
    return feats.to(torch.float32).numpy()


def extract_split(
    model: nn.Module,
    split: ReIDSplit,
    plan: Any,
    transform: Any,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    normalize: str = "none",
    **kwargs: Any,
) -> Any:
    """Features of a split's query and gallery tracklets as a ``FeatureSet``.

    Rows are the query tracklets then the gallery tracklets, in split order, with
    ``subsets`` ``"query"``/``"gallery"`` (``FeatureSet.from_split``); ``meta`` records the
    plan and normalisation.
    Extra keyword arguments go to :func:`extract_features`.
    """
    from videoreid.evaluation.features import FeatureSet

    tracklets = list(split.query) + list(split.gallery)
    feats = extract_features(model, tracklets, plan, transform, batch_size, device, normalize,
                             desc=f"extract {split.describe()}", **kwargs)
    nq = len(split.query)
    return FeatureSet.from_split(split, feats[:nq], feats[nq:],
                                 meta={"plan": repr(plan), "normalize": normalize})
