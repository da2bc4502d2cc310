"""P×K identity batch sampler."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from videoreid.data.samplers import PKSampler


def _pids(num_ids: int = 12, seed: int = 0) -> list[int]:
    """Dataset pids with 1..7 items per identity, shuffled (ids 100, 101, ...)."""
    rng = np.random.default_rng(seed)
    pids = [100 + i for i in range(num_ids) for _ in range(1 + i % 7)]
    return [int(p) for p in rng.permutation(pids)]


def test_batches_are_p_ids_times_k() -> None:
    pids = _pids()
    s = PKSampler(pids, P=3, K=4, seed=0)
    batches = list(s)
    assert len(batches) == len(s) == 12 // 3
    seen = []
    for b in batches:
        assert len(b) == 12 and all(0 <= i < len(pids) for i in b)
        counts = Counter(pids[i] for i in b)
        assert len(counts) == 3 and set(counts.values()) == {4}
        # grouped by identity, K consecutive entries each
        assert [pids[i] for i in b] == [pids[b[k]] for k in range(0, 12, 4) for _ in range(4)]
        for pid in counts:  # no repeats when the identity has >= K items
            mine = [i for i in b if pids[i] == pid]
            if pids.count(pid) >= 4:
                assert len(set(mine)) == 4
            else:  # every item of a small identity is used
                assert set(mine) == {i for i, p in enumerate(pids) if p == pid}
        seen.extend(counts)
    assert sorted(seen) == sorted(set(pids))  # every identity once per epoch


def test_drops_incomplete_last_batch() -> None:
    s = PKSampler(_pids(num_ids=11), P=3, K=2)
    assert len(s) == 3 and len(list(s)) == 3
    assert len({i for b in s for i in b}) > 0
    with pytest.raises(ValueError, match="fewer than P"):
        PKSampler(_pids(num_ids=5), P=3, K=2, world_size=2)


def test_disjoint_across_ranks_union_covers() -> None:
    pids = _pids(num_ids=12)
    for world in (2, 3, 4):
        samplers = [PKSampler(pids, P=3, K=2, seed=5, rank=r, world_size=world)
                    for r in range(world)]
        for epoch in (0, 1):
            per_rank = []
            for s in samplers:
                s.set_epoch(epoch)
                ids = {pids[i] for b in s for i in b}
                per_rank.append(ids)
                assert len(list(s)) == len(samplers[0])  # same step count on every rank
            for a in range(world):
                for b in range(a + 1, world):
                    assert not per_rank[a] & per_rank[b]
            if (12 // world) % 3 == 0:  # no identity left over: the union is everything
                assert set().union(*per_rank) == set(pids)


def test_deterministic_given_seed_and_epoch() -> None:
    pids = _pids()
    a, b = PKSampler(pids, 2, 3, seed=1), PKSampler(pids, 2, 3, seed=1)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating again gives the same epoch
    e5 = PKSampler(pids, 2, 3, seed=1)
    e5.set_epoch(5)
    assert list(e5) != list(a)
    assert list(PKSampler(pids, 2, 3, seed=2)) != list(PKSampler(pids, 2, 3, seed=1))
    # order of ids per epoch is a permutation of all ids
    assert sorted(a.rank_identities().tolist()) == sorted(set(pids))


def test_state_round_trip_mid_epoch_and_boundary() -> None:
    pids = _pids(num_ids=12)
    ref = PKSampler(pids, 2, 2, seed=3)
    ref.set_epoch(2)
    full = list(ref)
    run = PKSampler(pids, 2, 2, seed=3)
    run.set_epoch(2)
    it = iter(run)
    consumed = [next(it) for _ in range(2)]
    assert consumed == full[:2]
    state = run.state_dict()
    assert state["epoch"] == 2 and state["position"] == 2
    resumed = PKSampler(pids, 2, 2, seed=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # a trainer re-selecting the same epoch keeps the position
    assert list(resumed) == full[2:]
    # after the resumed epoch, the next epoch is the uninterrupted run's next epoch
    resumed.set_epoch(3)
    ref.set_epoch(3)
    assert list(resumed) == list(ref)
    # the trainer may report fewer consumed batches than were prefetched
    again = PKSampler(pids, 2, 2, seed=3)
    again.load_state_dict(run.state_dict(position=1))
    assert list(again) == full[1:]
    # epoch boundary
    done = PKSampler(pids, 2, 2, seed=3)
    done.load_state_dict({"epoch": 2, "position": len(done)})
    assert list(done) == []
    done.set_epoch(3)
    assert list(done) == list(ref)


def test_state_mismatch_is_an_error() -> None:
    pids = _pids()
    state = PKSampler(pids, 2, 2, seed=3).state_dict()
    with pytest.raises(ValueError, match="seed"):
        PKSampler(pids, 2, 2, seed=4).load_state_dict(state)
    with pytest.raises(ValueError, match="K"):
        PKSampler(pids, 2, 3, seed=3).load_state_dict(state)


def test_repeat_offset_encodes_repeats() -> None:
    pids = [0, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    s = PKSampler(pids, P=4, K=3, repeat_offset=True)
    (batch,) = list(s)
    n = len(pids)
    assert len(set(batch)) == len(batch)  # repeats are distinct virtual indices
    assert Counter(pids[i % n] for i in batch) == {0: 3, 1: 3, 2: 3, 3: 3}
    assert sorted(i for i in batch if pids[i % n] == 0) == [0, n, 2 * n]
    plain = list(PKSampler(pids, P=4, K=3))[0]
    assert [i % n for i in batch] == plain  # same draws, only the encoding differs
