"""Which frames of a tracklet make a clip: training samplers and test-time clip plans.

Every sampler and plan works on frame *indices* (0-based, into ``Tracklet.frames``) and
returns, per clip, ``indices: int64 (T,)`` and ``mask: bool (T,)``. ``mask[t]`` is True for a
real frame and False for padding.

Padding. A tracklet with fewer frames than a clip needs is repeat-padded *cyclically*:
``[0, 1, 2] -> [0, 1, 2, 0, 1, 2, 0]`` with mask ``[1, 1, 1, 0, 0, 0, 0]`` (Gao & Nevatia's
reference loader pads the same way). Cycling rather than repeating the last frame keeps every
real frame equally weighted for models that ignore the mask; mask-aware pooling ignores the
padding altogether. Only the real (masked-in) part of a clip is guaranteed to be sorted.

Randomness. Training samplers take a ``numpy.random.Generator`` per call; the clip dataset
derives it from ``(seed, epoch, index)`` so a clip does not depend on worker count or order.
Samplers with per-epoch state (``RandomInterval``) derive it from ``(seed, epoch)`` in
``set_epoch``.

Training samplers (``build_sampler(name, ...)``):

- ``consecutive`` (:class:`Consecutive`): T consecutive frames from a uniform random start.
- ``evenly`` (:class:`Evenly`): deterministic, frame ``floor(k * n / T)`` for k = 0..T-1 (the
  first frame of each of T equal segments, torchreid's "evenly").
- ``random_subset`` (:class:`RandomSubset`): T distinct frames uniformly at random, sorted.
- ``restricted_random`` (:class:`RestrictedRandom`): STAN (Li et al. CVPR 2018, Sec. 3.1):
  the tracklet is cut into N chunks of equal duration, chunk k = frames
  ``[floor(k n / N), floor((k+1) n / N))``, and one frame is drawn uniformly from each.
- ``random_interval`` (:class:`RandomInterval`): CMMANet's Random Interval Sampling (Hu et al.,
  Sec. III-A). The paper: "at the beginning of each epoch, the proposed method randomly
  generates an integer g as the interval between two consecutive frames", then a start
  ``s in [1, T - g N]`` and frames ``s+g, s+2g, ..., s+Ng`` (1-based). Choices made here,
  where the paper is silent:

  * *How g is drawn*: uniformly from ``{1, ..., max_interval}`` (default 4), once per epoch
    from ``(seed, epoch)``, shared by every tracklet of that epoch as the paper says ("at the
    beginning of each epoch"). The paper gives no range; 4 with N = 6 spans 21 frames, which
    fits about 68 % of MARS training tracklets (median length 36).
  * *Start*: by default the first frame is uniform over every position that fits, 0-based
    ``[0, n - 1 - g (N - 1)]``. The paper's literal formula starts at ``s + g >= g + 1``, so it
    can never pick any of the first g frames; nothing in the text motivates that, so it is
    read as an artefact of the notation. ``paper_start=True`` reproduces the literal range
    ``[g, n - 1 - g (N - 1)]`` (0-based).
  * *Too short for g*: the interval is reduced for that tracklet only, to the largest
    ``g' < g`` that fits (``g' = (n - 1) // (N - 1)``, or ``(n - 1) // N`` with
    ``paper_start``). If even g' = 1 does not fit (fewer than N frames, or N + 1 with
    ``paper_start``), all frames are taken and repeat-padded with a mask.

Training tracklet splitting: :func:`split_into_chunks` cuts each training tracklet into
chunks of 15 frames overlapping by 5 (AlignNet, Rambhatla & Jones BMVC 2019, Sec. 4.1).

Test plans (``build_plan(name, ...)``), each returning every clip of a tracklet:

- ``all_consecutive`` (:class:`AllConsecutive`): non-overlapping consecutive clips of T
  covering every frame once; the last clip is padded (Gao & Nevatia's dense test).
- ``chunks`` (:class:`Chunks`): the same with AlignNet's name and default n = 15.
- ``dense`` (:class:`Dense`): clips of T with a stride (default T // 2, RGSA/RGTR); the last
  clip is aligned to the end of the tracklet so every frame is covered and only tracklets
  shorter than T are padded.
- ``first_of_segments`` (:class:`FirstOfSegments`): one clip, the first frame of each of N
  equal segments (STAN's test sample).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from videoreid.data.tracklet import Tracklet

Clip = tuple[np.ndarray, np.ndarray]

__all__ = [
    "Clip",
    "TrainSampler",
    "Consecutive",
    "Evenly",
    "RandomSubset",
    "RestrictedRandom",
    "RandomInterval",
    "TestPlan",
    "AllConsecutive",
    "Chunks",
    "Dense",
    "FirstOfSegments",
    "SAMPLERS",
    "PLANS",
    "build_sampler",
    "build_plan",
    "pad_clip",
    "split_into_chunks",
    "num_chunks",
]


def pad_clip(indices: np.ndarray | Sequence[int], length: int) -> Clip:
    """Cyclically repeat-pad ``indices`` to ``length`` and build the mask.

    Args:
        indices: real frame indices, ``(n,)`` with ``1 <= n``.
        length: clip length T.

    Returns:
        ``(indices (T,) int64, mask (T,) bool)``; mask is True on the first ``min(n, T)``
        positions. Longer input is truncated to T.
    """
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size == 0:
        raise ValueError("cannot pad an empty clip (a tracklet has at least one frame)")
    out = np.resize(idx, length).astype(np.int64)  # np.resize repeats cyclically
    mask = np.arange(length) < idx.size
    return out, mask


def _check(num_frames: int) -> int:
    n = int(num_frames)
    if n < 1:
        raise ValueError(f"a tracklet must have at least one frame, got num_frames={num_frames}")
    return n


def _segment_starts(num_frames: int, segments: int) -> np.ndarray:
    """Start of each of ``segments`` equal segments: ``floor(k n / N)``, k = 0..N-1."""
    return (np.arange(segments, dtype=np.int64) * num_frames) // segments


class TrainSampler:
    """Base class: ``sampler(num_frames, rng) -> (indices (T,), mask (T,))``.

    Attributes:
        length: clip length T (number of frames per clip).
    """

    length: int

    def __init__(self, length: int) -> None:
        if int(length) < 1:
            raise ValueError(f"{type(self).__name__}: clip length must be >= 1, got {length}")
        self.length = int(length)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; samplers with per-epoch state re-derive it from ``(seed, epoch)``."""
        self.epoch = int(epoch)

    def __call__(self, num_frames: int, rng: np.random.Generator) -> Clip:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(length={self.length})"


class Consecutive(TrainSampler):
    """T consecutive frames from a uniformly random start in ``[0, n - T]``."""

    def __call__(self, num_frames: int, rng: np.random.Generator) -> Clip:
        n = _check(num_frames)
        if n < self.length:
            return pad_clip(np.arange(n), self.length)
        start = int(rng.integers(0, n - self.length + 1))
        return pad_clip(np.arange(start, start + self.length), self.length)


class Evenly(TrainSampler):
    """Deterministic: the first frame of each of T equal segments (``floor(k n / T)``)."""

    def __call__(self, num_frames: int, rng: np.random.Generator | None = None) -> Clip:
        n = _check(num_frames)
        if n < self.length:
            return pad_clip(np.arange(n), self.length)
        return pad_clip(_segment_starts(n, self.length), self.length)


class RandomSubset(TrainSampler):
    """T distinct frames drawn uniformly without replacement, in temporal order."""

    def __call__(self, num_frames: int, rng: np.random.Generator) -> Clip:
        n = _check(num_frames)
        if n < self.length:
            return pad_clip(np.arange(n), self.length)
        return pad_clip(np.sort(rng.choice(n, size=self.length, replace=False)), self.length)


class RestrictedRandom(TrainSampler):
    """STAN's restricted random sampling: N equal chunks, one uniform frame from each.

    Chunk k covers frames ``[floor(k n / N), floor((k + 1) n / N))``; with ``n >= N`` no chunk
    is empty. Fewer than N frames: all frames, padded.
    """

    def __call__(self, num_frames: int, rng: np.random.Generator) -> Clip:
        n = _check(num_frames)
        if n < self.length:
            return pad_clip(np.arange(n), self.length)
        bounds = (np.arange(self.length + 1, dtype=np.int64) * n) // self.length
        picks = rng.integers(bounds[:-1], bounds[1:])
        return pad_clip(picks, self.length)


class RandomInterval(TrainSampler):
    """CMMANet's Random Interval Sampling: N frames spaced g apart, g drawn per epoch.

    See the module docstring for how g is drawn, the start range and short tracklets.

    Args:
        length: N, frames per clip.
        max_interval: g is uniform on ``{1, ..., max_interval}``.
        seed: seeds the per-epoch draw of g (with the epoch).
        paper_start: use the paper's literal start range (never the first g frames).

    Attributes:
        interval: g of the current epoch.
    """

    def __init__(
        self, length: int, max_interval: int = 4, seed: int = 0, paper_start: bool = False
    ) -> None:
        super().__init__(length)
        if int(max_interval) < 1:
            raise ValueError(f"RandomInterval: max_interval must be >= 1, got {max_interval}")
        self.max_interval = int(max_interval)
        self.seed = int(seed)
        self.paper_start = bool(paper_start)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        rng = np.random.default_rng([self.seed, self.epoch, 0x715])
        self.interval = int(rng.integers(1, self.max_interval + 1))

    def interval_for(self, num_frames: int) -> int:
        """The interval actually used for a tracklet of ``num_frames`` frames (0 = padded)."""
        n, N, g = _check(num_frames), self.length, self.interval
        if N == 1:
            return g
        # largest g that fits: last frame a + g (N - 1) <= n - 1 with a >= (g if paper_start)
        fit = (n - 1) // N if self.paper_start else (n - 1) // (N - 1)
        return min(g, fit)

    def __call__(self, num_frames: int, rng: np.random.Generator) -> Clip:
        n, N = _check(num_frames), self.length
        g = self.interval_for(n)
        if g < 1:
            return pad_clip(np.arange(n), N)
        low = g if self.paper_start else 0
        high = n - 1 - g * (N - 1)  # inclusive
        if low > high:  # N == 1 with paper_start and n <= g: any frame
            low = 0
        start = int(rng.integers(low, high + 1))
        return pad_clip(start + g * np.arange(N, dtype=np.int64), N)

    def __repr__(self) -> str:
        return (f"RandomInterval(length={self.length}, max_interval={self.max_interval}, "
                f"seed={self.seed}, paper_start={self.paper_start})")


class TestPlan:
    """Base class: ``plan(num_frames) -> list[(indices (T,), mask (T,))]`` covering a tracklet.

    Attributes:
        length: clip length T of every clip the plan returns.
    """

    __test__ = False  # not a pytest test class despite the name
    length: int

    def __init__(self, length: int) -> None:
        if int(length) < 1:
            raise ValueError(f"{type(self).__name__}: clip length must be >= 1, got {length}")
        self.length = int(length)

    def __call__(self, num_frames: int) -> list[Clip]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(length={self.length})"


class AllConsecutive(TestPlan):
    """Non-overlapping consecutive clips of T covering every frame once; last one padded."""

    def __call__(self, num_frames: int) -> list[Clip]:
        n, T = _check(num_frames), self.length
        return [pad_clip(np.arange(s, min(s + T, n)), T) for s in range(0, n, T)]


class Chunks(AllConsecutive):
    """AlignNet's test chunks: non-overlapping chunks of ``length`` (15) frames, averaged."""

    def __init__(self, length: int = 15) -> None:
        super().__init__(length)


class Dense(TestPlan):
    """Clips of T every ``stride`` frames; the last clip ends on the last frame.

    Args:
        length: T.
        stride: step between clip starts; default ``max(T // 2, 1)`` (RGSA/RGTR).
    """

    def __init__(self, length: int, stride: int | None = None) -> None:
        super().__init__(length)
        self.stride = max(self.length // 2, 1) if stride is None else int(stride)
        if self.stride < 1:
            raise ValueError(f"Dense: stride must be >= 1, got {stride}")

    def __call__(self, num_frames: int) -> list[Clip]:
        n, T = _check(num_frames), self.length
        if n <= T:
            return [pad_clip(np.arange(n), T)]
        starts = list(range(0, n - T + 1, self.stride))
        if starts[-1] + T < n:
            starts.append(n - T)
        return [pad_clip(np.arange(s, s + T), T) for s in starts]

    def __repr__(self) -> str:
        return f"Dense(length={self.length}, stride={self.stride})"


class FirstOfSegments(TestPlan):
    """One clip: the first frame of each of N equal segments (STAN's test sample).

    Fewer than N frames: all frames, padded.
    """

    def __call__(self, num_frames: int) -> list[Clip]:
        n = _check(num_frames)
        if n < self.length:
            return [pad_clip(np.arange(n), self.length)]
        return [pad_clip(_segment_starts(n, self.length), self.length)]


SAMPLERS: dict[str, type[TrainSampler]] = {
    "consecutive": Consecutive,
    "evenly": Evenly,
    "random_subset": RandomSubset,
    "restricted_random": RestrictedRandom,
    "random_interval": RandomInterval,
}

PLANS: dict[str, type[TestPlan]] = {
    "all_consecutive": AllConsecutive,
    "chunks": Chunks,
    "dense": Dense,
    "first_of_segments": FirstOfSegments,
}

# The papers call the clip length T, N or n; configs may use any of them.
_LENGTH_ALIASES = ("T", "N", "n", "seq_len")


def _build(table: dict[str, Callable[..., Any]], kind: str, name: str, kw: dict[str, Any]) -> Any:
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; valid names: {', '.join(sorted(table))}")
    kw = dict(kw)
    for alias in _LENGTH_ALIASES:
        if alias in kw:
            if "length" in kw:
                raise ValueError(f"{kind} {name!r}: give the clip length once, as 'length'")
            kw["length"] = kw.pop(alias)
    try:
        return table[name](**kw)
    except TypeError as e:
        import inspect

        params = [p for p in inspect.signature(table[name].__init__).parameters if p != "self"]
        raise ValueError(
            f"bad arguments for {kind} {name!r}: {e}; valid arguments: {', '.join(params)}"
            f" (the length may also be spelt {', '.join(_LENGTH_ALIASES)})"
        ) from None


def build_sampler(name: str, **kw: Any) -> TrainSampler:
    """Build a training sampler by name (``consecutive``, ``evenly``, ``random_subset``,
    ``restricted_random``, ``random_interval``); ``length`` may be spelt T / N / n."""
    return _build(SAMPLERS, "temporal sampler", name, kw)


def build_plan(name: str, **kw: Any) -> TestPlan:
    """Build a test clip plan by name (``all_consecutive``, ``chunks``, ``dense``,
    ``first_of_segments``); ``length`` may be spelt T / N / n."""
    return _build(PLANS, "test clip plan", name, kw)


def split_into_chunks(
    tracklets: Sequence[Tracklet], length: int = 15, overlap: int = 5
) -> list[Tracklet]:
    """Cut each tracklet into chunks of ``length`` frames, consecutive chunks sharing
    ``overlap`` frames (AlignNet: 15 and 5).

    Chunk k starts at ``k * (length - overlap)``. A chunk is kept while it adds frames the
    previous one did not cover, so every frame is in some chunk and consecutive chunks overlap
    by exactly ``overlap``; the last chunk may therefore be shorter than ``length`` (more than
    ``overlap`` frames), and a tracklet shorter than ``length`` stays one chunk. Samplers pad
    short chunks with a mask.

    Returns:
        new tracklets with the same pid/camid; ``meta`` is copied and gets ``parent_tracklet_id``,
        ``chunk_index``, ``chunk_start`` and a unique ``tracklet_id`` ``"<parent>#<k>"``.
    """
    if not 0 <= overlap < length:
        raise ValueError(f"split_into_chunks: need 0 <= overlap < length, got {overlap}, {length}")
    step = length - overlap
    out: list[Tracklet] = []
    for i, t in enumerate(tracklets):
        n = len(t.frames)
        parent = t.meta.get("tracklet_id", str(i))
        starts = [0] + [s for s in range(step, n, step) if s + overlap < n]
        for k, s in enumerate(starts):
            meta = dict(t.meta, parent_tracklet_id=parent, chunk_index=k, chunk_start=s,
                        tracklet_id=f"{parent}#{k}")
            out.append(replace(t, frames=tuple(t.frames[s:s + length]), meta=meta))
    return out


def num_chunks(num_frames: int, length: int = 15, overlap: int = 5) -> int:
    """How many chunks :func:`split_into_chunks` makes of a tracklet (``>= 1``)."""
    n, step = _check(num_frames), length - overlap
    return 1 + max(0, math.ceil((n - overlap) / step) - 1)
