"""Temporal samplers, test clip plans and training chunking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from videoreid.data.temporal import (
    PLANS,
    SAMPLERS,
    AllConsecutive,
    Chunks,
    Consecutive,
    Dense,
    Evenly,
    FirstOfSegments,
    RandomInterval,
    RandomSubset,
    RestrictedRandom,
    build_plan,
    build_sampler,
    num_chunks,
    pad_clip,
    split_into_chunks,
)
from videoreid.data.tracklet import Tracklet

LENGTHS = list(range(1, 41)) + [97, 920]


def _check_clip(idx: np.ndarray, mask: np.ndarray, n: int, T: int, real: int | None = None) -> None:
    assert idx.shape == (T,) and idx.dtype == np.int64
    assert mask.shape == (T,) and mask.dtype == bool
    assert idx.min() >= 0 and idx.max() < n
    real = min(n, T) if real is None else real
    # real frames first, then padding
    assert mask.tolist() == [True] * real + [False] * (T - real)
    # padding repeats the real part cyclically
    np.testing.assert_array_equal(idx, np.resize(idx[:real], T))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("T", [1, 4, 6])
def test_sampler_range_count_mask_sorted(name: str, T: int) -> None:
    sampler = build_sampler(name, length=T)
    assert sampler.length == T
    rng = np.random.default_rng(0)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for n in LENGTHS:
            idx, mask = sampler(n, rng)
            _check_clip(idx, mask, n, T)
            real = idx[mask]
            # real frames are distinct and in temporal order for every training sampler
            assert np.all(np.diff(real) > 0), (name, n, idx)
            if n < T:  # short tracklet: every frame, then cyclic repeats
                np.testing.assert_array_equal(real, np.arange(n))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_deterministic_given_rng(name: str) -> None:
    a, b = build_sampler(name, length=5), build_sampler(name, length=5)
    for n in (3, 17, 120):
        x = a(n, np.random.default_rng([1, 2, 3]))
        y = b(n, np.random.default_rng([1, 2, 3]))
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[1], y[1])


def test_short_tracklet_repeat_pad_exact() -> None:
    idx, mask = Consecutive(7)(3, np.random.default_rng(0))
    assert idx.tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert mask.tolist() == [True, True, True, False, False, False, False]
    idx, mask = pad_clip([4, 9], 5)
    assert idx.tolist() == [4, 9, 4, 9, 4] and mask.sum() == 2
    with pytest.raises(ValueError):
        Consecutive(4)(0, np.random.default_rng(0))


def test_consecutive_is_consecutive_and_starts_vary() -> None:
    s, rng = Consecutive(8), np.random.default_rng(0)
    starts = set()
    for _ in range(300):
        idx, _ = s(20, rng)
        assert np.all(np.diff(idx) == 1)
        starts.add(int(idx[0]))
    assert starts == set(range(0, 13))  # every start in [0, n - T] occurs


def test_evenly_hand_values() -> None:
    assert Evenly(4)(10)[0].tolist() == [0, 2, 5, 7]
    assert Evenly(3)(3)[0].tolist() == [0, 1, 2]
    assert Evenly(2)(7)[0].tolist() == [0, 3]


def test_random_subset_distinct() -> None:
    s, rng = RandomSubset(6), np.random.default_rng(3)
    seen = set()
    for _ in range(200):
        idx, mask = s(9, rng)
        assert len(set(idx.tolist())) == 6 and mask.all()
        seen.update(idx.tolist())
    assert seen == set(range(9))


def test_restricted_random_one_frame_per_chunk() -> None:
    s, rng = RestrictedRandom(4), np.random.default_rng(0)
    # n = 10, N = 4: chunks [0,2) [2,5) [5,7) [7,10)
    bounds = [(0, 2), (2, 5), (5, 7), (7, 10)]
    hits = [set() for _ in bounds]
    for _ in range(400):
        idx, mask = s(10, rng)
        assert mask.all()
        for k, (lo, hi) in enumerate(bounds):
            assert lo <= idx[k] < hi
            hits[k].add(int(idx[k]))
    assert hits == [set(range(lo, hi)) for lo, hi in bounds]  # uniform within the chunk
    for n in range(6, 200, 7):
        idx, _ = RestrictedRandom(6)(n, rng)
        for k, f in enumerate(idx):  # chunk k = [floor(k n / N), floor((k + 1) n / N))
            assert (k * n) // 6 <= f < ((k + 1) * n) // 6


def test_random_interval_evenly_spaced_in_range() -> None:
    s = RandomInterval(6, max_interval=4, seed=0)
    rng = np.random.default_rng(0)
    for epoch in range(10):
        s.set_epoch(epoch)
        g = s.interval
        assert 1 <= g <= 4
        for n in [1, 3, 6, 7, 12, 20, 21, 25, 60, 300]:
            idx, mask = s(n, rng)
            _check_clip(idx, mask, n, 6)
            ge = s.interval_for(n)
            if n >= 6:
                assert mask.all()
                assert np.all(np.diff(idx) == ge) and 1 <= ge <= g
                if n >= 1 + g * 5:  # fits: the epoch's interval is used unchanged
                    assert ge == g
                else:  # too short: the largest interval that fits
                    assert ge == (n - 1) // 5 and idx[-1] <= n - 1
            else:
                assert ge < 1 and mask.sum() == n


def test_random_interval_changes_across_epochs_and_is_seeded() -> None:
    s = RandomInterval(6, max_interval=5, seed=3)
    per_epoch = []
    for e in range(30):
        s.set_epoch(e)
        per_epoch.append(s.interval)
    assert set(per_epoch) == {1, 2, 3, 4, 5}
    again = RandomInterval(6, max_interval=5, seed=3)
    again.set_epoch(7)
    assert again.interval == per_epoch[7]
    s.set_epoch(7)  # same epoch -> same interval, whatever happened before
    assert s.interval == per_epoch[7]


def test_random_interval_start_range() -> None:
    rng = np.random.default_rng(0)
    s = RandomInterval(3, max_interval=2, seed=0)
    epoch = 0
    while s.interval != 2:  # find an epoch whose interval is 2
        epoch += 1
        s.set_epoch(epoch)
    starts = {int(s(10, rng)[0][0]) for _ in range(300)}
    assert starts == set(range(0, 10 - 2 * 2))  # first frame anywhere in [0, n-1-g(N-1)]
    paper = RandomInterval(3, max_interval=2, seed=0, paper_start=True)
    paper.set_epoch(epoch)
    starts = {int(paper(10, rng)[0][0]) for _ in range(300)}
    # paper: s in [1, n - gN], frames s+g..s+gN (1-based) -> first 0-based index in [g, n-1-g(N-1)]
    assert starts == set(range(2, 10 - 2 * 2))
    assert paper.interval_for(6) == 1  # 1 + g N = 7 > 6 -> g shrinks to (n-1)//N


def test_all_consecutive_and_chunks_cover_every_frame_once() -> None:
    for plan in (AllConsecutive(4), Chunks(15), Chunks()):
        assert isinstance(plan.length, int)
        for n in LENGTHS:
            clips = plan(n)
            real = np.concatenate([i[m] for i, m in clips])
            np.testing.assert_array_equal(real, np.arange(n))  # each frame once, in order
            assert len(clips) == -(-n // plan.length)
            for k, (i, m) in enumerate(clips):
                _check_clip(i, m, n, plan.length, real=min(plan.length, n - k * plan.length))
    assert [c[0].tolist() for c in AllConsecutive(4)(6)] == [[0, 1, 2, 3], [4, 5, 4, 5]]


def test_dense_covers_all_frames_with_stride() -> None:
    for T, stride in [(4, 2), (8, 4), (8, 3), (5, 5)]:
        plan = Dense(T, stride)
        for n in LENGTHS:
            clips = plan(n)
            real = np.concatenate([i[m] for i, m in clips])
            assert set(real.tolist()) == set(range(n))
            for i, m in clips:
                _check_clip(i, m, n, T)
                if n >= T:
                    assert m.all() and np.all(np.diff(i) == 1)
            if n > T:
                starts = [int(i[0]) for i, _ in clips]
                assert starts[:-1] == list(range(0, stride * (len(starts) - 1), stride))
                assert clips[-1][0][-1] == n - 1
    assert Dense(8).stride == 4
    assert [c[0][0] for c in Dense(4, 2)(9)] == [0, 2, 4, 5]


def test_first_of_segments_picks_first_frame_of_each_segment() -> None:
    (idx, mask), = FirstOfSegments(4)(10)  # segments [0,2) [2,5) [5,7) [7,10)
    assert idx.tolist() == [0, 2, 5, 7] and mask.all()
    for n in [6, 13, 100, 920]:
        (idx, _), = FirstOfSegments(6)(n)
        assert idx.tolist() == [(k * n) // 6 for k in range(6)]
    (idx, mask), = FirstOfSegments(6)(4)
    assert idx.tolist() == [0, 1, 2, 3, 0, 1] and mask.sum() == 4


def _tracklet(n: int, tid: str = "t") -> Tracklet:
    return Tracklet(tuple(Path(f"f{j:04d}.jpg") for j in range(n)), pid=3, camid=1,
                    meta={"tracklet_id": tid})


def test_split_into_chunks_15_5_exact() -> None:
    chunks = split_into_chunks([_tracklet(40, "a"), _tracklet(35, "b"), _tracklet(7, "c")])
    by = {}
    for c in chunks:
        by.setdefault(c.meta["parent_tracklet_id"], []).append(c)
    frame_no = [[int(f.stem[1:]) for f in c.frames] for c in by["a"]]
    assert frame_no == [list(range(0, 15)), list(range(10, 25)), list(range(20, 35)),
                        list(range(30, 40))]
    assert [len(c) for c in by["b"]] == [15, 15, 15]
    assert [len(c) for c in by["c"]] == [7]
    for parent, cs in by.items():
        assert [c.meta["chunk_index"] for c in cs] == list(range(len(cs)))
        assert all(c.pid == 3 and c.camid == 1 for c in cs)
        assert [c.meta["tracklet_id"] for c in cs] == [f"{parent}#{k}" for k in range(len(cs))]
    for n in range(1, 80):
        cs = split_into_chunks([_tracklet(n)])
        assert len(cs) == num_chunks(n)
        sets = [set(c.frames) for c in cs]
        assert set().union(*sets) == set(_tracklet(n).frames)  # every frame kept
        for a, b in zip(sets, sets[1:], strict=False):
            assert len(a & b) == 5  # consecutive chunks overlap by exactly 5
        assert all(len(c) <= 15 for c in cs)
    cs = split_into_chunks([_tracklet(30)], length=8, overlap=2)
    assert [c.meta["chunk_start"] for c in cs] == [0, 6, 12, 18, 24]
    with pytest.raises(ValueError):
        split_into_chunks([_tracklet(30)], length=5, overlap=5)


def test_builders_and_errors() -> None:
    assert isinstance(build_sampler("restricted_random", N=6), RestrictedRandom)
    assert build_sampler("consecutive", T=8).length == 8
    ri = build_sampler("random_interval", N=6, max_interval=3, seed=2)
    assert isinstance(ri, RandomInterval) and ri.max_interval == 3
    assert build_plan("chunks").length == 15
    assert build_plan("dense", T=8, stride=2).stride == 2
    assert isinstance(build_plan("first_of_segments", N=6), FirstOfSegments)
    with pytest.raises(ValueError) as e:
        build_sampler("restricted", length=4)
    for name in SAMPLERS:
        assert name in str(e.value)
    with pytest.raises(ValueError) as e:
        build_plan("densest", length=4)
    for name in PLANS:
        assert name in str(e.value)
    with pytest.raises(ValueError, match="max_interval"):
        build_sampler("random_interval", length=4, bogus=1)
    with pytest.raises(ValueError):
        build_sampler("consecutive", length=0)
