"""MARS loader (official layout and metadata).

Reference:
    L. Zheng, Z. Bie, Y. Sun, J. Wang, C. Su, S. Wang, Q. Tian. "MARS: A Video Benchmark for
    Large-Scale Person Re-identification". ECCV 2016.

Statistics (official release):
    1,261 identities, 6 cameras, 20,478 tracklets, 1,191,003 frames.
    train: 8,298 tracklets / 625 ids / 509,914 frames.
    test: 12,180 tracklets / 681,089 frames; query 1,980 tracklets from 626 ids; the 10,200
    non-query rows hold 870 junk rows (pid -1) and 3,248 distractor rows (pid 0).
    Tracklet length 2..920 frames.

Layout (``root`` may be the parent folder or ``mars/`` itself)::

    mars/
      bbox_train/<pid4>/<frame files>
      bbox_test/<pid4>/<frame files>        # test also has "0000" (distractors) and "00-1" (junk)
      info/train_name.txt                   # one file name per line (CRLF or LF)
      info/test_name.txt
      info/tracks_train_info.mat            # key 'track_train_info', (8298, 4)
      info/tracks_test_info.mat             # key 'track_test_info', (12180, 4)
      info/query_IDX.mat                    # key 'query_IDX', (1, 1980), 1-based rows

A file name ``0001C1T0001F001.jpg`` holds pid (chars 0:4, ``00-1`` junk, ``0000``
distractor), camera (char 5, 1..6), tracklet number (7:11) and frame number (12:15). Each
row of a tracks matrix is ``[start, end, pid, camid]`` with 1-based inclusive line numbers
into the matching name list.

Splits produced (one split):
    - ``train``: train rows, pid -1 dropped (counted, logged), pids relabelled 0..N-1.
    - ``query``: test rows at ``query_IDX - 1`` in ``query_IDX`` order.
    - ``gallery``: every other test row in row order, junk (pid -1) and distractors (pid 0,
      ``meta["distractor"] = True``) included. Protocol code decides what to drop.
    - ``MARS.test_tracklets``: all 12,180 test rows in row order (the official MATLAB
      gallery); ``MARS.query_rows`` the 0-based query rows.

Decisions:
    - The name lists are the source of truth for frame files; frames are not listed from
      disk. Construction checks that every identity folder referenced by the lists exists
      and, by default, that the first and last frames of a sample of tracklets exist
      (``check_frames="sample"``); ``"full"`` lists every identity folder and checks every
      name, ``"none"`` touches no image folder.
    - Every name is checked against its row (pid and camera must match) and frames of a row
      are ordered by their frame number (the official lists are already in that order).
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from videoreid.data.datasets.common import (
    FramePaths,
    ReIDDataset,
    relabel_train,
    require_file,
    resolve_dataset_dir,
)
from videoreid.data.tracklet import ReIDSplit, Tracklet

logger = logging.getLogger(__name__)

LAYOUT = """\
<root>/mars/  (or <root> itself)
  bbox_train/<pid4>/0001C1T0001F001.jpg ...
  bbox_test/<pid4>/...             (also 0000/ distractors and 00-1/ junk)
  info/train_name.txt              one frame file name per line
  info/test_name.txt
  info/tracks_train_info.mat       key 'track_train_info', (N, 4) rows [start, end, pid, camid]
  info/tracks_test_info.mat        key 'track_test_info',  (M, 4)
  info/query_IDX.mat               key 'query_IDX', (1, Q), 1-based rows of tracks_test_info"""

_INFO_FILES = {
    "train_names": "train_name.txt",
    "test_names": "test_name.txt",
    "track_train": "tracks_train_info.mat",
    "track_test": "tracks_test_info.mat",
    "query_idx": "query_IDX.mat",
}
_MAT_KEYS = {"track_train": "track_train_info", "track_test": "track_test_info", "query_idx": "query_IDX"}
_CHECK_MODES = ("none", "sample", "full")
_NAME_RX = re.compile(r"(?P<pid>\d{4}|00-1)C(?P<cam>\d)T\d{4}F(?P<frame>\d+)\.\w+")
_SAMPLE_ROWS = 32


def read_name_list(path: Path) -> list[str]:
    """One file name per line; CRLF or LF line ends; blank lines ignored."""
    try:
        text = path.read_bytes().decode("ascii")
    except UnicodeDecodeError as e:
        raise ValueError(f"MARS: {path} is not an ASCII list of frame file names ({e})") from None
    # names never contain whitespace, so split() handles CRLF, LF and trailing blanks at once
    return text.split()


def load_mat_array(path: Path, key: str) -> np.ndarray:
    """The array stored under ``key`` in a MATLAB (v5/v7) file, with clear errors."""
    import scipy.io
    import scipy.io.matlab

    try:
        mat = scipy.io.loadmat(str(path))
    except (scipy.io.matlab.MatReadError, ValueError, TypeError, OSError, NotImplementedError) as e:
        raise ValueError(f"MARS: cannot read {path} as a MATLAB .mat file ({e}). Expected layout:\n{LAYOUT}") from None
    if key not in mat:
        found = [k for k in mat if not k.startswith("__")]
        raise ValueError(f"MARS: {path} has no key {key!r} (found {found}). Expected layout:\n{LAYOUT}")
    return np.asarray(mat[key])


def _check_tracks(arr: np.ndarray, num_names: int, path: str) -> np.ndarray:
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"MARS: {path} must hold an (N, 4) array [start, end, pid, camid]; got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or not np.all(arr == np.round(arr)):
        raise ValueError(f"MARS: {path} must hold integers; got dtype {arr.dtype}")
    a = arr.astype(np.int64)
    bad = np.flatnonzero((a[:, 0] < 1) | (a[:, 1] < a[:, 0]) | (a[:, 1] > num_names) | (a[:, 2] < -1) | (a[:, 3] < 1))
    if bad.size:
        r = int(bad[0])
        raise ValueError(
            f"MARS: {path} row {r} (0-based) = {a[r].tolist()} is invalid: need 1 <= start <= end <= "
            f"{num_names} (lines in the name list), pid >= -1, camid >= 1 ({bad.size} bad rows)"
        )
    return a


def _check_query(arr: np.ndarray, num_rows: int, path: str) -> np.ndarray:
    if arr.ndim != 2 or 1 not in arr.shape:
        raise ValueError(f"MARS: {path} must hold a (1, Q) vector of 1-based test rows; got shape {arr.shape}")
    q = arr.astype(np.int64).ravel()
    if q.size and (q.min() < 1 or q.max() > num_rows):
        raise ValueError(
            f"MARS: {path} holds row indices {q.min()}..{q.max()}; they must be 1-based rows of the "
            f"test tracks matrix (1..{num_rows})"
        )
    if np.unique(q).size != q.size:
        raise ValueError(f"MARS: {path} repeats query rows")
    return q - 1


def _parse_names(names: Sequence[str], source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised parse of MARS names → (pid, camera 1-based, frame number), each (N,) int64."""
    n = len(names)
    if n == 0:
        z = np.zeros(0, np.int64)
        return z, z, z
    lengths = np.fromiter(map(len, names), np.int64, n)
    if np.all(lengths == lengths[0]) and lengths[0] >= 16:
        try:
            buf = np.frombuffer("".join(names).encode("ascii"), np.uint8).reshape(n, int(lengths[0]))
        except UnicodeEncodeError:
            buf = None
        if buf is not None:
            # int16 keeps the digit matrix small (1.2M names on full MARS); 9999 still fits
            d = buf[:, :15].astype(np.int16) - ord("0")
            digits = (d >= 0) & (d <= 9)
            junk = (buf[:, 0] == ord("0")) & (buf[:, 1] == ord("0")) & (buf[:, 2] == ord("-")) & (buf[:, 3] == ord("1"))
            ok = (
                (digits[:, 0:4].all(1) | junk)
                & (buf[:, 4] == ord("C")) & digits[:, 5]
                & (buf[:, 6] == ord("T")) & digits[:, 7:11].all(1)
                & (buf[:, 11] == ord("F")) & digits[:, 12:15].all(1)
                & (buf[:, 15] == ord("."))
            )
            if ok.all():
                pid = np.where(junk, -1, d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3])
                frame = d[:, 12] * 100 + d[:, 13] * 10 + d[:, 14]
                return pid.astype(np.int64), d[:, 5].astype(np.int64), frame.astype(np.int64)
    # names of different lengths or with a longer frame field: parse one by one, same rules
    pid = np.empty(n, np.int64)
    cam = np.empty(n, np.int64)
    frame = np.empty(n, np.int64)
    for i, s in enumerate(names):
        m = _NAME_RX.fullmatch(s)
        if m is None:
            raise ValueError(
                f"MARS: {source} line {i + 1}: {s!r} is not a MARS frame name like "
                f"'0001C1T0001F001.jpg' (pid4 or 00-1, C camera, T tracklet4, F frame)"
            )
        pid[i] = -1 if m["pid"] == "00-1" else int(m["pid"])
        cam[i] = int(m["cam"])
        frame[i] = int(m["frame"])
    return pid, cam, frame


def _pid_folder(pid: int) -> str:
    return "00-1" if pid == -1 else f"{pid:04d}"


def _dedupe_ids(tracklets: list[Tracklet]) -> None:
    """Make ``meta["tracklet_id"]`` unique: the name prefix ``0001C1T0001`` is unique in the
    official release (frame names are unique per folder); rows sharing one get ``@<subset><row>``."""
    counts = Counter(t.meta["tracklet_id"] for t in tracklets)
    dup = {k for k, v in counts.items() if v > 1}
    if dup:
        logger.warning("MARS: %d tracklet name prefixes are shared by several rows (e.g. %s); "
                       "their tracklet_id gets the row appended", len(dup), sorted(dup)[0])
        for t in tracklets:
            if t.meta["tracklet_id"] in dup:
                t.meta["tracklet_id"] += f"@{t.meta['subset']}{t.meta['row']}"


class MARS(ReIDDataset):
    """MARS in its official layout.

    Args:
        root: parent folder holding ``mars/`` or the ``mars`` folder itself.
        check_frames: ``"sample"`` (default: identity folders + first/last frame of a sample
            of tracklets), ``"full"`` (every frame name checked against folder listings) or
            ``"none"`` (no image folder touched).

    Attributes:
        test_tracklets: all test rows in row order (original pids; ``meta["subset"]`` is
            ``"query"`` for query rows, else ``"gallery"``).
        query_rows: 0-based test rows of the queries, ``(Q,)`` int64, in ``query_IDX`` order.

    Raises:
        FileNotFoundError: missing folder, info file, identity folder or sampled frame.
        ValueError: malformed info file (wrong key, shape, name format, row/name mismatch).
    """

    name = "mars"
    protocol = "market"

    def __init__(self, root: str | os.PathLike[str], *, check_frames: str = "sample") -> None:
        super().__init__()
        if check_frames not in _CHECK_MODES:
            raise ValueError(f"MARS: check_frames must be one of {_CHECK_MODES}, got {check_frames!r}")
        self.root = resolve_dataset_dir(root, ("mars",), ("info", "bbox_train", "bbox_test"), LAYOUT, "MARS")
        info = self.root / "info"
        paths = {k: require_file(info / f, "MARS", LAYOUT) for k, f in _INFO_FILES.items()}
        self._build(
            train_names=read_name_list(paths["train_names"]),
            test_names=read_name_list(paths["test_names"]),
            track_train=load_mat_array(paths["track_train"], _MAT_KEYS["track_train"]),
            track_test=load_mat_array(paths["track_test"], _MAT_KEYS["track_test"]),
            query_idx=load_mat_array(paths["query_idx"], _MAT_KEYS["query_idx"]),
            sources={k: str(p) for k, p in paths.items()},
        )
        if check_frames != "none":
            self._check_frames(full=check_frames == "full")

    @classmethod
    def from_metadata(
        cls,
        root: str | os.PathLike[str],
        *,
        train_names: Sequence[str],
        test_names: Sequence[str],
        track_train: np.ndarray,
        track_test: np.ndarray,
        query_idx: np.ndarray,
    ) -> MARS:
        """Build from in-memory metadata without touching the filesystem.

        Args:
            root: the ``mars`` folder the frame paths are built under (``bbox_train``/``bbox_test``).
            train_names, test_names: the name lists (``info/*_name.txt`` lines).
            track_train, track_test: ``(N, 4)`` arrays ``[start, end, pid, camid]`` (1-based).
            query_idx: ``(1, Q)`` 1-based test rows.
        """
        self = cls.__new__(cls)
        ReIDDataset.__init__(self)
        self.root = Path(root).expanduser()
        self._build(
            train_names=list(train_names),
            test_names=list(test_names),
            track_train=np.asarray(track_train),
            track_test=np.asarray(track_test),
            query_idx=np.asarray(query_idx),
            sources={k: f"<{k}>" for k in _INFO_FILES},
        )
        return self

    def _build(
        self,
        *,
        train_names: list[str],
        test_names: list[str],
        track_train: np.ndarray,
        track_test: np.ndarray,
        query_idx: np.ndarray,
        sources: dict[str, str],
    ) -> None:
        tr = _check_tracks(track_train, len(train_names), sources["track_train"])
        te = _check_tracks(track_test, len(test_names), sources["track_test"])
        q = _check_query(query_idx, len(te), sources["query_idx"])
        train = self._rows_to_tracklets(tr, train_names, "bbox_train", "train", sources, "train_names", "track_train")
        test = self._rows_to_tracklets(te, test_names, "bbox_test", "test", sources, "test_names", "track_test")
        _dedupe_ids(train + test)
        is_query = np.zeros(len(test), bool)
        is_query[q] = True
        self.test_tracklets = [
            Tracklet(t.frames, t.pid, t.camid, {**t.meta, "subset": "query" if is_query[i] else "gallery"})
            for i, t in enumerate(test)
        ]
        self.query_rows = q
        query = [self.test_tracklets[r] for r in q]
        gallery = [t for i, t in enumerate(self.test_tracklets) if not is_query[i]]
        self._splits = [ReIDSplit(relabel_train(train, "MARS"), query, gallery, self.name, self.protocol, 0)]

    def _rows_to_tracklets(
        self,
        rows: np.ndarray,
        names: list[str],
        folder: str,
        part: str,
        sources: dict[str, str],
        names_key: str,
        rows_key: str,
    ) -> list[Tracklet]:
        pid, cam, frame = _parse_names(names, sources[names_key])
        if len(rows) == 0:
            return []
        starts = rows[:, 0] - 1
        ends = rows[:, 1]
        lengths = ends - starts
        # row index of every name covered by a row, then compare names with their rows at once
        owner = np.repeat(np.arange(len(rows)), lengths)
        idx = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(starts, lengths)
        mismatch = (pid[idx] != rows[owner, 2]) | (cam[idx] != rows[owner, 3])
        if mismatch.any():
            k = int(np.flatnonzero(mismatch)[0])
            r = int(owner[k])
            raise ValueError(
                f"MARS: row {r} (0-based) of {sources[rows_key]} says pid {rows[r, 2]}, camera {rows[r, 3]} but "
                f"line {idx[k] + 1} of {sources[names_key]} is {names[idx[k]]!r}"
            )
        # rows whose frames are not strictly increasing in frame number need sorting
        unsorted = np.zeros(len(rows), bool)
        dec = np.flatnonzero(np.diff(frame[idx]) <= 0)
        if dec.size:
            same_row = owner[dec] == owner[dec + 1]
            unsorted[owner[dec[same_row]]] = True
        base = os.fspath(self.root / folder)
        out = []
        for r in range(len(rows)):
            s, e, p, c = (int(v) for v in rows[r])
            row_names = names[s - 1 : e]
            if unsorted[r]:
                order = np.argsort(frame[s - 1 : e], kind="stable")
                row_names = [row_names[i] for i in order]
            meta = {
                "tracklet_id": row_names[0][:11],
                "orig_pid": p,
                "distractor": part == "test" and p == 0,
                "subset": part,
                "row": r,
            }
            out.append(Tracklet(FramePaths(f"{base}/{_pid_folder(p)}", row_names), p, c - 1, meta))
        return out

    def _all_tracklets(self) -> list[Tracklet]:
        return self._splits[0].train + self.test_tracklets

    def _check_frames(self, full: bool) -> None:
        tracklets = self._all_tracklets()
        folders = sorted({t.frames.directory for t in tracklets if len(t)})
        for d in folders:
            if not d.is_dir():
                raise FileNotFoundError(
                    f"MARS: identity folder {d} is referenced by the info name lists but does not exist. "
                    f"Expected layout:\n{LAYOUT}"
                )
        if full:
            listing = {d: set(os.listdir(d)) for d in folders}
            missing = [t.frames.directory / n for t in tracklets for n in t.frames.names if n not in listing[t.frames.directory]]
            if missing:
                raise FileNotFoundError(
                    f"MARS: {len(missing)} frame file(s) listed in info/*_name.txt are missing, e.g. {missing[0]}"
                )
            return
        for part in (self._splits[0].train, self.test_tracklets):
            if not part:
                continue
            for i in np.unique(np.linspace(0, len(part) - 1, min(_SAMPLE_ROWS, len(part))).astype(int)):
                t = part[int(i)]
                for f in (t.frames[0], t.frames[-1]):
                    if not f.is_file():
                        raise FileNotFoundError(
                            f"MARS: frame {f} listed in info/*_name.txt is missing (checked a sample of "
                            f"tracklets; the info files do not match the images). Expected layout:\n{LAYOUT}"
                        )
