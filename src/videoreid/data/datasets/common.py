"""Pieces shared by the dataset loaders: the base class, folder resolution, frame listing,
train relabelling and a compact frame-path sequence.

Every loader follows the same rules (see ``docs/datasets.md``):

- ``root`` may be the parent folder holding one folder per dataset (``mars/``,
  ``dukemtmc-vidreid/``, ...) or the dataset folder itself.
- Frames are ordered by the frame number parsed from the file name, never by listing order.
- Only image files (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``) are frames. Keypoint files
  (``<frame stem>_keypoints.json``) beside the frames are ignored silently; any other
  non-image file is counted and reported once per dataset with ``logging.warning``.
- An identity or tracklet folder without frames is an error naming the folder (a silently
  shorter dataset would change the benchmark's statistics without anyone noticing).
- Training pids are relabelled ``0..N-1`` in sorted original-pid order (original in
  ``meta["orig_pid"]``); junk tracklets (pid ``-1``) are dropped from train, counted and logged.
- ``camid`` is 0-based.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from videoreid.data.tracklet import ReIDSplit, Tracklet

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")
KEYPOINT_SUFFIX = "_keypoints.json"


class FramePaths(Sequence[Path]):
    """An immutable sequence of frame paths that share one folder.

    Behaves like the ``tuple[Path, ...]`` of ``Tracklet.frames`` (``len``, indexing,
    iteration, slicing, equality with tuples of paths) but stores one folder string and the
    file names, creating ``Path`` objects only on access. The full MARS lists hold about 1.2
    million frames; building that many ``Path`` objects up front costs seconds, this costs
    nothing.

    Args:
        directory: folder holding the frames.
        names: file names in temporal order.
    """

    __slots__ = ("_dir", "_names")

    def __init__(self, directory: str | os.PathLike[str], names: Iterable[str]) -> None:
        self._dir = os.fspath(directory).rstrip("/") or "/"
        self._names = tuple(names)

    @property
    def directory(self) -> Path:
        return Path(self._dir)

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def __len__(self) -> int:
        return len(self._names)

    @overload
    def __getitem__(self, i: int) -> Path: ...

    @overload
    def __getitem__(self, i: slice) -> FramePaths: ...

    def __getitem__(self, i: int | slice) -> Path | FramePaths:
        if isinstance(i, slice):
            return FramePaths(self._dir, self._names[i])
        return Path(f"{self._dir}/{self._names[i]}")

    def __iter__(self) -> Iterator[Path]:
        d = self._dir
        return (Path(f"{d}/{n}") for n in self._names)

    def strings(self) -> list[str]:
        """Full paths as strings (cheaper than ``Path`` objects for bulk use)."""
        d = self._dir
        return [f"{d}/{n}" for n in self._names]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FramePaths):
            if self._dir == other._dir:
                return self._names == other._names
            return self.strings() == other.strings()
        if isinstance(other, (tuple, list)):
            return len(other) == len(self) and all(
                os.fspath(a) == b for a, b in zip(other, self.strings(), strict=True)
            )
        return NotImplemented

    def __add__(self, other: Sequence[Path]) -> tuple[Path, ...]:
        return tuple(self) + tuple(other)

    def __radd__(self, other: Sequence[Path]) -> tuple[Path, ...]:
        return tuple(other) + tuple(self)

    def __hash__(self) -> int:
        return hash(tuple(self.strings()))

    def __repr__(self) -> str:
        if len(self._names) <= 2:
            shown = ", ".join(self._names)
        else:
            shown = f"{self._names[0]}, ..., {self._names[-1]}"
        return f"FramePaths({self._dir!r}, [{shown}] ({len(self._names)} frames))"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FramePaths, (self._dir, self._names))


class ReIDDataset:
    """Base class of every loader: a list of evaluation splits built at construction.

    Subclasses set ``name`` and ``protocol`` and fill ``self._splits`` in ``__init__``.

    Attributes:
        name: dataset name (the key in ``factory.DATASETS``).
        protocol: default evaluation protocol of its splits.
        root: the resolved dataset folder.
    """

    name: str = ""
    protocol: str = "market"

    def __init__(self) -> None:
        self._splits: list[ReIDSplit] = []
        self.root: Path = Path()

    @property
    def num_splits(self) -> int:
        return len(self._splits)

    def splits(self) -> list[ReIDSplit]:
        """All evaluation splits (one for single-split datasets)."""
        return list(self._splits)

    def split(self, k: int = 0) -> ReIDSplit:
        """Split ``k`` (0-based)."""
        if not 0 <= k < len(self._splits):
            raise IndexError(
                f"{self.name}: split {k} does not exist; valid splits are 0..{len(self._splits) - 1}"
            )
        return self._splits[k]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, num_splits={self.num_splits})"


def resolve_dataset_dir(
    root: str | os.PathLike[str],
    subdirs: Sequence[str],
    markers: Sequence[str],
    layout: str,
    dataset: str,
) -> Path:
    """Find the dataset folder given the parent root or the dataset folder itself.

    Args:
        root: user-given folder.
        subdirs: relative paths tried under ``root`` in order (e.g. ``("mars",)``); ``root``
            itself is tried last.
        markers: entries whose presence (any of them) identifies the dataset folder.
        layout: the expected layout, quoted in the error message.
        dataset: dataset name for messages.

    Raises:
        FileNotFoundError: when no candidate holds any marker.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset}: root folder {root} does not exist. Expected layout:\n{layout}")
    candidates = [root / s for s in subdirs] + [root]
    for c in candidates:
        if any((c / m).exists() for m in markers):
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"{dataset}: no dataset found under {root}: none of [{tried}] contains any of "
        f"{list(markers)}. Expected layout:\n{layout}"
    )


def require_dir(path: Path, dataset: str, layout: str) -> Path:
    """Return ``path`` if it is a folder, else raise naming it and the expected layout."""
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset}: missing folder {path}. Expected layout:\n{layout}")
    return path


def require_file(path: Path, dataset: str, layout: str) -> Path:
    """Return ``path`` if it is a file, else raise naming it and the expected layout."""
    if not path.is_file():
        raise FileNotFoundError(f"{dataset}: missing file {path}. Expected layout:\n{layout}")
    return path


def list_subdirs(path: Path) -> list[str]:
    """Sorted names of the sub-folders of ``path`` (hidden folders skipped)."""
    with os.scandir(path) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


class FrameListing:
    """Lists tracklet folders into sorted frame names, counting ignored files.

    Args:
        parse: file name → tuple whose first element is the frame number (further elements
            are loader-specific fields such as pid or camera); raises ``ValueError`` on a name
            it does not accept, saying which pattern was expected.
        dataset: dataset name for messages.
    """

    def __init__(self, parse: Callable[[str], tuple[Any, ...]], dataset: str) -> None:
        self.parse = parse
        self.dataset = dataset
        self.ignored: list[Path] = []

    def __call__(self, folder: Path) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Frame file names of ``folder`` in temporal order, with their parsed fields.

        Raises:
            ValueError: empty folder, or a file name the parser rejects (names the file).
        """
        frames: list[str] = []
        with os.scandir(folder) as it:
            for e in it:
                n = e.name
                if n.lower().endswith(IMAGE_EXTENSIONS):
                    frames.append(n)
                elif not n.endswith(KEYPOINT_SUFFIX):
                    self.ignored.append(folder / n)
        if not frames:
            raise ValueError(
                f"{self.dataset}: tracklet folder {folder} holds no frames (no "
                f"{'/'.join(IMAGE_EXTENSIONS)} files). Remove the empty folder or restore its frames."
            )
        keyed = []
        for n in frames:
            try:
                keyed.append((self.parse(n), n))
            except ValueError as e:
                raise ValueError(f"{self.dataset}: cannot parse frame file {folder / n}: {e}") from None
        # frame number first, the name breaks ties so the order never depends on listing order
        keyed.sort(key=lambda x: (x[0][0], x[1]))
        return [n for _, n in keyed], [p for p, _ in keyed]

    def report(self) -> None:
        """Warn once about non-image files that were not used."""
        if self.ignored:
            shown = ", ".join(str(p) for p in self.ignored[:3])
            logger.warning(
                "%s: ignored %d non-image file(s) in tracklet folders (e.g. %s)",
                self.dataset, len(self.ignored), shown,
            )


def regex_frame_parser(pattern: str, expected: str) -> Callable[[str], tuple[int, ...]]:
    """A ``FrameListing`` parser from a regex: returns the integer groups, the frame number
    group (named ``frame``) first, then the other named groups in pattern order."""
    rx = re.compile(pattern)
    others = [g for g in rx.groupindex if g != "frame"]

    def parse(name: str) -> tuple[int, ...]:
        m = rx.fullmatch(name)
        if m is None:
            raise ValueError(f"expected a name like {expected}")
        return (int(m["frame"]), *(int(m[g]) for g in others))

    return parse


def relabel_train(tracklets: list[Tracklet], dataset: str) -> list[Tracklet]:
    """Drop junk (pid -1) tracklets and relabel pids ``0..N-1`` in sorted original order.

    The original pid is kept (or already present) in ``meta["orig_pid"]``; ``meta["subset"]``
    becomes ``"train"``.
    """
    junk = sum(1 for t in tracklets if t.pid == -1)
    if junk:
        logger.warning("%s: dropped %d junk (pid -1) tracklet(s) from train", dataset, junk)
    kept = [t for t in tracklets if t.pid != -1]
    label = {p: i for i, p in enumerate(sorted({t.pid for t in kept}))}
    out = []
    for t in kept:
        meta = dict(t.meta)
        meta["orig_pid"] = t.pid
        meta["subset"] = "train"
        out.append(Tracklet(t.frames, label[t.pid], t.camid, meta))
    return out


def with_subset(tracklets: Iterable[Tracklet], subset: str) -> list[Tracklet]:
    """Copies of ``tracklets`` with ``meta["subset"] = subset`` (pids unchanged)."""
    return [Tracklet(t.frames, t.pid, t.camid, {**t.meta, "subset": subset}) for t in tracklets]
