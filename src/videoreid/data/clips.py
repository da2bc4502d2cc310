"""Torch datasets turning tracklets into clips, and their collate function.

An item is a dict (docs/architecture.md, "Data contracts", batch dict):

- ``images``: ``(T, 3, H, W)`` float32, normalised; with a ``ClipTransform(output="uint8")``
  ``(T, 3, H, W)`` uint8 plus ``photometric (7,)``, finished on the training device by
  ``transform.finish_batch(batch)`` (batched normalisation, colour jitter and erasing)
- ``pids``, ``camids``: int; ``frame_mask``: ``(T,)`` bool (False on padding)
- ``index``: the tracklet's position in the dataset's list
- one ``(T, C, h, w)`` float32 tensor per modality (e.g. ``flow``, ``pose``)
- test items add ``tracklet_index`` and ``clip_index`` (``index`` is the clip's position)

:func:`collate_clips` stacks items into ``images (B, T, 3, H, W)``, ``pids (B,)`` int64,
``camids (B,)`` int64, ``frame_mask (B, T)`` bool, modalities ``(B, T, C, h, w)``.

Modalities are plain callables ``fn(tracklet, frame_indices (T,)) -> (T, C, h, w) float32``
(e.g. read cached flow), so this module never imports ``modalities`` or ``models``. Maps go
through the same geometric augmentation as the frames (see ``transforms``).

Randomness. Each training item draws from ``numpy.random.default_rng([seed, epoch, index])``:
the clip's frames and its augmentation depend only on the seed, the epoch and the index, not
on the number of DataLoader workers, which worker serves it or in what order, so a run is
reproducible on any machine and a resumed run sees the same clips. The epoch lives in a
shared-memory tensor, so ``ClipDataset.set_epoch`` reaches workers that already exist
(``persistent_workers=True``) as well as new ones.

Decoding. Frames are decoded with :func:`videoreid.data.decode.decode_image` (fastest
measured backend, errors name the file). When the output is at most half the stored size the
JPEG is decoded directly at a reduced scale (DCT scaling), then resized. Each distinct frame
of a clip is decoded once even when padding repeats it.

Memory. ``TestClipDataset`` enumerates clips (tracklet, clip number) up front but decodes one
clip per item, so even a 900-frame MARS tracklet never sits in memory whole; the feature
extractor averages clip features per ``tracklet_index``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from videoreid.data.decode import ImageDecodeError, decode_image, decode_image_with_size
from videoreid.data.temporal import TestPlan, TrainSampler
from videoreid.data.tracklet import Tracklet
from videoreid.data.transforms import ClipTransform

__all__ = [
    "ImageDecodeError",
    "Modality",
    "decode_image",
    "load_clip",
    "ClipDataset",
    "TestClipDataset",
    "collate_clips",
]

Modality = Callable[[Tracklet, np.ndarray], np.ndarray]


def load_clip(
    tracklet: Tracklet,
    indices: np.ndarray,
    mask: np.ndarray,
    transform: ClipTransform,
    rng: np.random.Generator | None,
    modalities: Mapping[str, Modality] | None = None,
    reduced_decode: bool = True,
) -> dict[str, Any]:
    """Decode, transform and package one clip of ``tracklet``.

    Args:
        tracklet: the tracklet.
        indices: ``(T,)`` frame indices; mask: ``(T,)`` bool.
        transform: clip transform (output size H, W).
        rng: generator for the augmentation.
        modalities: name -> callable returning ``(T, C, h, w)`` maps for ``indices``.
        reduced_decode: allow JPEG DCT-scaled decoding when the output is <= half size.

    Returns:
        item dict without ``index`` (see module docstring).
    """
    indices = np.asarray(indices, dtype=np.int64)
    uniq, inverse = np.unique(indices, return_inverse=True)
    min_size = (transform.height, transform.width) if reduced_decode else None
    decoded, stored = [], None
    for j in uniq:
        img, size = decode_image_with_size(tracklet.frames[int(j)], min_size)
        decoded.append(img)
        stored = stored or size
    frames = [decoded[k] for k in inverse.reshape(-1)]
    maps = {}
    for name, fn in (modalities or {}).items():
        value = fn(tracklet, indices)
        if value.shape[0] != len(indices):
            raise ValueError(f"modality {name!r} returned {value.shape[0]} maps for "
                             f"{len(indices)} frames of tracklet "
                             f"{tracklet.meta.get('tracklet_id', tracklet.frames[0])}")
        maps[name] = value
    params = transform.sample_params(rng)  # what transform(...) does, params kept
    images, maps_out = transform.apply(frames, maps, params, frame_size=stored)
    item: dict[str, Any] = {
        "images": images,
        "pids": int(tracklet.pid),
        "camids": int(tracklet.camid),
        "frame_mask": torch.from_numpy(np.asarray(mask, dtype=bool).copy()),
    }
    if getattr(transform, "output", "float") == "uint8":  # finished on the device
        item["photometric"] = transform.photometric_vector(params)
    item.update(maps_out)
    return item


class ClipDataset(Dataset):
    """Training clips: item i = one clip sampled from tracklet i.

    Args:
        tracklets: training tracklets.
        sampler: temporal sampler (``videoreid.data.temporal``).
        transform: clip transform (usually ``train=True``).
        seed: base seed of the per-item generator ``default_rng([seed, epoch, index])``.
        modalities: name -> ``fn(tracklet, indices) -> (T, C, h, w)`` float32.
        reduced_decode: allow reduced-scale JPEG decoding (see module docstring).

    Indices ``i >= len(self)`` are accepted and mean tracklet ``i % len(self)`` with its own
    random draw (``PKSampler(repeat_offset=True)`` uses this for repeated tracklets).
    """

    def __init__(
        self,
        tracklets: Sequence[Tracklet],
        sampler: TrainSampler,
        transform: ClipTransform,
        seed: int = 0,
        modalities: Mapping[str, Modality] | None = None,
        reduced_decode: bool = True,
    ) -> None:
        self.tracklets = list(tracklets)
        if not self.tracklets:
            raise ValueError("ClipDataset: no tracklets")
        self.sampler = sampler
        self.transform = transform
        self.seed = int(seed)
        self.modalities = dict(modalities or {})
        self.reduced_decode = bool(reduced_decode)
        # shared memory: set_epoch in the main process reaches persistent workers
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def pids(self) -> list[int]:
        """pid of each item (for ``PKSampler``)."""
        return [t.pid for t in self.tracklets]

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch that seeds every item (and the sampler's per-epoch state)."""
        self._epoch.fill_(int(epoch))
        self.sampler.set_epoch(int(epoch))

    def __len__(self) -> int:
        return len(self.tracklets)

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        if i < 0:
            raise IndexError(f"ClipDataset index {i} < 0")
        k = i % len(self.tracklets)
        epoch = int(self._epoch)
        if getattr(self.sampler, "epoch", epoch) != epoch:  # a worker's copy lags behind
            self.sampler.set_epoch(epoch)
        rng = np.random.default_rng([self.seed, epoch, i])
        t = self.tracklets[k]
        indices, mask = self.sampler(len(t), rng)
        item = load_clip(t, indices, mask, self.transform, rng, self.modalities,
                         self.reduced_decode)
        item["index"] = k
        return item


class TestClipDataset(Dataset):
    """Test clips: every clip of every tracklet under a clip plan, one clip per item.

    Args:
        tracklets: query or gallery tracklets.
        plan: test clip plan (``videoreid.data.temporal``).
        transform: clip transform (usually ``train=False``; if training-mode, item k draws
            from ``default_rng([seed, k])``).
        modalities: as for :class:`ClipDataset`.
        seed: only used by a training-mode transform.

    Attributes:
        clips_per_tracklet: ``(num_tracklets,)`` int64.
        tracklet_of_clip: ``(num_clips,)`` int64, tracklet index of each item.
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(
        self,
        tracklets: Sequence[Tracklet],
        plan: TestPlan,
        transform: ClipTransform,
        modalities: Mapping[str, Modality] | None = None,
        seed: int = 0,
        reduced_decode: bool = True,
    ) -> None:
        self.tracklets = list(tracklets)
        self.plan = plan
        self.transform = transform
        self.modalities = dict(modalities or {})
        self.seed = int(seed)
        self.reduced_decode = bool(reduced_decode)
        self.clips_per_tracklet = np.array([len(plan(len(t))) for t in self.tracklets],
                                           dtype=np.int64)
        self.tracklet_of_clip = np.repeat(np.arange(len(self.tracklets)), self.clips_per_tracklet)
        self._first_clip = np.concatenate([[0], np.cumsum(self.clips_per_tracklet)[:-1]]).astype(
            np.int64) if len(self.tracklets) else np.zeros(0, np.int64)
        # the clips of the tracklet last served: loaders visit a tracklet's clips in a row,
        # and re-planning a 900-frame tracklet for each of its clips would be quadratic
        self._cached: tuple[int, list] = (-1, [])

    def __len__(self) -> int:
        return int(self.tracklet_of_clip.size)

    def __getitem__(self, k: int) -> dict[str, Any]:
        k = int(k)
        if not 0 <= k < len(self):
            raise IndexError(f"TestClipDataset index {k} not in [0, {len(self)})")
        ti = int(self.tracklet_of_clip[k])
        j = k - int(self._first_clip[ti])
        t = self.tracklets[ti]
        if self._cached[0] != ti:
            self._cached = (ti, self.plan(len(t)))
        indices, mask = self._cached[1][j]
        rng = np.random.default_rng([self.seed, k]) if self.transform.train else None
        item = load_clip(t, indices, mask, self.transform, rng, self.modalities,
                         self.reduced_decode)
        item.update(index=k, tracklet_index=ti, clip_index=j)
        return item


def collate_clips(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack item dicts into a batch dict.

    Tensors are stacked along a new batch dimension (``images (B, T, 3, H, W)``,
    ``frame_mask (B, T)``, modalities ``(B, T, C, h, w)``); ints become ``(B,)`` int64 and
    floats ``(B,)`` float32 tensors; anything else is kept as a list.

    Raises:
        ValueError: naming the key when items have different keys or tensor shapes.
    """
    if not items:
        raise ValueError("collate_clips: empty batch")
    keys = list(items[0])
    for it in items[1:]:
        if list(it) != keys and set(it) != set(keys):
            raise ValueError(f"collate_clips: items have different keys: {sorted(keys)} vs "
                             f"{sorted(it)}")
    batch: dict[str, Any] = {}
    for key in keys:
        values = [it[key] for it in items]
        first = values[0]
        if isinstance(first, torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(f"collate_clips: {key!r} has different shapes in one batch: "
                                 f"{sorted(shapes)} (clips must share T and size)")
            # default_collate stacks straight into shared memory inside a worker, saving
            # a copy of the whole batch on its way to the main process
            batch[key] = default_collate(values)
        elif isinstance(first, (bool, np.bool_)):
            batch[key] = torch.tensor(values, dtype=torch.bool)
        elif isinstance(first, (int, np.integer)):
            batch[key] = torch.tensor([int(v) for v in values], dtype=torch.int64)
        elif isinstance(first, (float, np.floating)):
            batch[key] = torch.tensor([float(v) for v in values], dtype=torch.float32)
        elif isinstance(first, np.ndarray):
            batch[key] = torch.from_numpy(np.stack(values))
        else:
            batch[key] = list(values)
    return batch
