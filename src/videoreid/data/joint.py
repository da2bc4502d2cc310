"""Joint training on several datasets: one training set, per-dataset evaluation.

``data.dataset: [mars, ilidsvid, prid2011]`` (STAN's table 1 trains jointly on the three
video datasets; image sets such as ``market1501`` serve pre-training). :func:`join_splits`
turns one :class:`~videoreid.data.tracklet.ReIDSplit` per dataset into a :class:`JointSplit`:

* identities never collide: dataset ``d``'s training pids ``0..n_d−1`` become
  ``o_d..o_d+n_d−1`` with ``o_d`` the number of training identities of the datasets before it
  in the list (so the classifier/OIM table has ``Σ n_d`` rows); the dataset's own pid stays
  in ``meta["dataset_pid"]``;
* cameras stay per dataset: ``camid`` is unchanged and ``meta["dataset"]`` names where a
  tracklet comes from (camera 0 of MARS and camera 0 of PRID2011 are different cameras, but
  no training loss compares cameras);
* the P×K sampler draws identities from the union, so a batch mixes datasets in proportion
  to their identity counts;
* evaluation runs on each dataset's own query/gallery under its own protocol
  (``JointSplit.parts``), metrics named ``<dataset>/split<k>/<protocol>/...``.

Splits. A multi-split dataset (iLIDS-VID, PRID2011) contributes the training identities of
the chosen split (``data.split=k``) and is tested on that split's test identities; with
``data.split=all`` the run is repeated for every split index, each multi-split dataset using
its split of that index (their split counts must agree) and single-split datasets (MARS) taking
part whole in every run. No test identity of any dataset is ever in the joint training set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from videoreid.data.tracklet import ReIDSplit, Tracklet

__all__ = ["JointSplit", "join_splits", "eval_parts"]


@dataclass
class JointSplit(ReIDSplit):
    """A joint training set; ``parts`` are the datasets' own splits (evaluated separately).

    ``query``/``gallery`` are empty: evaluation goes through :func:`eval_parts`.
    """

    parts: list[ReIDSplit] = field(default_factory=list)
    pid_offsets: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        return " + ".join(p.describe() for p in self.parts)


def join_splits(parts: Sequence[ReIDSplit]) -> JointSplit:
    """One training set from several datasets' splits (see module docstring).

    Args:
        parts: one split per dataset, names distinct, training pids ``0..n−1`` each.
    Raises:
        ValueError: repeated dataset names, or training pids not relabelled ``0..n−1``.
    """
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise ValueError(f"join_splits: dataset names repeat: {names}")
    train: list[Tracklet] = []
    offsets: dict[str, int] = {}
    offset = 0
    for part in parts:
        pids = sorted({t.pid for t in part.train})
        if pids != list(range(len(pids))):
            raise ValueError(f"join_splits: {part.name} training pids are not 0..{len(pids) - 1}")
        offsets[part.name] = offset
        for t in part.train:
            meta = {**t.meta, "dataset": part.name, "dataset_pid": t.pid}
            train.append(replace(t, pid=t.pid + offset, meta=meta))
        offset += len(pids)
    index = {p.split_index for p in parts if p.split_index} or {0}
    return JointSplit(train=train, query=[], gallery=[], name="+".join(names),
                      protocol="per_dataset", split_index=max(index), parts=list(parts),
                      pid_offsets=offsets)


def eval_parts(split: ReIDSplit) -> list[ReIDSplit]:
    """The splits to evaluate: a joint split's datasets, else the split itself."""
    return list(split.parts) if isinstance(split, JointSplit) else [split]
