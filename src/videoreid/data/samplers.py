"""P×K identity batch sampler, deterministic, resumable and split across ranks.

Each batch holds P identities with K tracklets each (what batch-hard triplet and the other
metric losses need). One epoch visits every identity of this rank once, in a random order
(the sampler of Gao & Nevatia's reference code); identities left over after the last full
batch of P are skipped for that epoch only (a different random few each epoch).

Determinism. The identity order of an epoch is a permutation drawn from ``(seed, epoch)``,
the same on every rank; the K tracklets of an identity are drawn from
``(seed, epoch, identity)``. Nothing depends on global RNG state, worker count or rank
count beyond the split itself.

Several processes (DDP). The epoch's permutation is cut to a multiple of ``world_size`` and
rank r takes every ``world_size``-th identity from position r, so ranks see disjoint
identities and the same number of batches (DDP needs equal step counts). Per epoch at most
``world_size - 1`` identities (the cut) plus ``P - 1`` per rank (the last partial batch) are
left out, a different random few each epoch; otherwise the ranks' union is every identity.

Identities with fewer than K tracklets. All their tracklets are used, topped up by draws
with replacement. A repeated index yields the same clip in ``ClipDataset`` (its randomness
comes from ``(seed, epoch, index)``); with ``repeat_offset=True`` the r-th repeat of index
i is yielded as ``i + r * len(pids)``, which ``ClipDataset`` maps back to tracklet i with
its own random draw. Leave it False for datasets that do not accept such indices.

Resuming. ``state_dict()`` records the epoch and how many batches of it were used;
``load_state_dict`` makes the next ``__iter__`` continue with the next batch of that epoch,
exactly as an uninterrupted run would. A DataLoader pulls batches ahead of the training
step (``num_workers * prefetch_factor`` of them), so the trainer should pass the number of
batches it actually consumed: ``state_dict(position=steps_done_in_epoch)``.
Call ``set_epoch(e)`` before each epoch (as with ``DistributedSampler``); without it every
epoch repeats the same order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

log = logging.getLogger(__name__)

__all__ = ["PKSampler"]


class PKSampler(Sampler[list[int]]):
    """Batch sampler yielding lists of ``P * K`` dataset indices (P identities × K each).

    Args:
        pids: identity of each dataset item, ``(num_items,)``.
        P: identities per batch.
        K: items per identity.
        seed: base seed.
        rank: this process's rank, ``0 <= rank < world_size``.
        world_size: number of processes sharing the epoch.
        repeat_offset: encode repeats of an index within a batch as ``i + r * num_items``
            (see module docstring).

    Use as ``DataLoader(dataset, batch_sampler=PKSampler(...))``.
    """

    def __init__(
        self,
        pids: Sequence[int],
        P: int,
        K: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        repeat_offset: bool = False,
    ) -> None:
        if P < 1 or K < 1:
            raise ValueError(f"PKSampler: P and K must be >= 1, got P={P}, K={K}")
        if not 0 <= rank < world_size:
            raise ValueError(f"PKSampler: need 0 <= rank < world_size, got {rank}, {world_size}")
        pids_arr = np.asarray(pids, dtype=np.int64)
        self.num_items = int(pids_arr.size)
        self.identities = np.unique(pids_arr)  # sorted
        order = np.argsort(pids_arr, kind="stable")
        bounds = np.searchsorted(pids_arr[order], self.identities, side="left")
        self._members = np.split(order, bounds[1:])  # indices per identity, ascending
        self.P, self.K = int(P), int(K)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.repeat_offset = bool(repeat_offset)
        self.ids_per_rank = len(self.identities) // self.world_size
        if self.ids_per_rank < self.P:
            raise ValueError(
                f"PKSampler: {len(self.identities)} identities over {self.world_size} rank(s) "
                f"give {self.ids_per_rank} per rank, fewer than P={self.P}; lower P"
            )
        short = sum(len(m) < self.K for m in self._members)
        if short:
            log.warning("PKSampler: %d of %d identities have fewer than K=%d items; they are "
                        "topped up by sampling with replacement", short, len(self.identities),
                        self.K)
        self.epoch = 0
        self._position = 0  # batches handed out in the current epoch
        self._resume = 0  # batch to start from on the next __iter__

    def __len__(self) -> int:
        return self.ids_per_rank // self.P

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next ``__iter__`` yields."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self._position = self._resume = 0

    def rank_identities(self, epoch: int | None = None) -> np.ndarray:
        """Identity labels this rank visits in ``epoch`` (default: current), in order."""
        e = self.epoch if epoch is None else int(epoch)
        perm = np.random.default_rng([self.seed, e]).permutation(len(self.identities))
        perm = perm[: self.ids_per_rank * self.world_size][self.rank :: self.world_size]
        return self.identities[perm[: len(self) * self.P]]

    def _draw(self, identity_pos: int) -> list[int]:
        members = self._members[identity_pos]
        rng = np.random.default_rng([self.seed, self.epoch, int(identity_pos), 0x9B])
        if len(members) >= self.K:
            return [int(i) for i in members[rng.choice(len(members), self.K, replace=False)]]
        extra = members[rng.integers(0, len(members), self.K - len(members))]
        out, seen = [int(i) for i in members], {int(i): 1 for i in members}
        for i in extra:
            r = seen[int(i)]
            seen[int(i)] = r + 1
            out.append(int(i) + r * self.num_items if self.repeat_offset else int(i))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        ids = self.rank_identities()
        positions = np.searchsorted(self.identities, ids)
        start, self._resume = self._resume, 0
        for b in range(start, len(self)):
            batch: list[int] = []
            for pos in positions[b * self.P : (b + 1) * self.P]:
                batch.extend(self._draw(int(pos)))
            self._position = b + 1
            yield batch

    def state_dict(self, position: int | None = None) -> dict[str, Any]:
        """Resumable state.

        Args:
            position: batches of the current epoch actually consumed (default: how many
                this sampler has yielded, which runs ahead of training under prefetching).
        """
        pos = self._position if position is None else int(position)
        if not 0 <= pos <= len(self):
            raise ValueError(f"PKSampler.state_dict: position {pos} not in [0, {len(self)}]")
        return {"epoch": self.epoch, "position": pos, "seed": self.seed, "P": self.P,
                "K": self.K, "world_size": self.world_size, "num_items": self.num_items,
                "num_identities": len(self.identities)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state; the next ``__iter__`` continues after ``state["position"]``."""
        mine = self.state_dict(position=0)
        for key in ("seed", "P", "K", "world_size", "num_items", "num_identities"):
            if key in state and state[key] != mine[key]:
                raise ValueError(
                    f"PKSampler.load_state_dict: saved {key}={state[key]} but this sampler has "
                    f"{key}={mine[key]}; resuming would not reproduce the run"
                )
        pos = int(state.get("position", 0))
        if not 0 <= pos <= len(self):
            raise ValueError(f"PKSampler.load_state_dict: position {pos} not in [0, {len(self)}]")
        self.epoch = int(state["epoch"])
        self._position = self._resume = pos
