"""MARS loader: real frames (shared mars-mini), official metadata at full scale, hand-built
layouts for ordering and error cases."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from videoreid.data.datasets.mars import MARS


def _frame_number(p: Path) -> int:
    return int(p.name[12:15])


# ---------------------------------------------------------------------------------------------
# mars-mini: real files


@pytest.fixture(scope="module")
def mini(shared_dir: Path) -> MARS:
    return MARS(shared_dir / "data" / "mars-mini", check_frames="full")


def test_mini_counts_and_pids(mini: MARS) -> None:
    assert mini.name == "mars" and mini.num_splits == 1
    s = mini.split(0)
    assert (len(s.train), len(s.query), len(s.gallery)) == (24, 4, 4)
    # train: 12 ids relabelled 0..11 in sorted original order (values from tracks_train_info.mat)
    orig = [3, 5, 7, 9, 15, 19, 25, 27, 33, 37, 41, 43]
    assert sorted({t.pid for t in s.train}) == list(range(12))
    assert {t.pid: t.meta["orig_pid"] for t in s.train} == dict(enumerate(orig))
    assert all(t.meta["subset"] == "train" for t in s.train)
    # query = rows query_IDX - 1 = [0, 2, 4, 6]; gallery = the other rows, in row order
    assert [t.meta["row"] for t in s.query] == [0, 2, 4, 6]
    assert [(t.pid, t.camid, len(t)) for t in s.query] == [(13, 4, 24), (21, 0, 31), (23, 2, 17), (35, 2, 126)]
    assert [t.meta["row"] for t in s.gallery] == [1, 3, 5, 7]
    assert [(t.pid, t.camid, len(t)) for t in s.gallery] == [(13, 5, 30), (21, 2, 20), (23, 3, 175), (35, 3, 73)]
    assert list(mini.query_rows) == [0, 2, 4, 6]
    assert [t.meta["row"] for t in mini.test_tracklets] == list(range(8))
    assert [t.meta["subset"] for t in mini.test_tracklets] == ["query", "gallery"] * 4
    assert sum(len(t) for t in s.train) == 1223  # every line of train_name.txt, once
    assert not any(t.meta["distractor"] for t in mini.test_tracklets)
    assert s.query[0].meta["tracklet_id"] == "0013C5T0001" and s.gallery[0].meta["tracklet_id"] == "0013C6T0002"


def test_mini_frames_ordered_and_consistent(mini: MARS) -> None:
    s = mini.split(0)
    for t in s.train + s.query + s.gallery:
        frames = list(t.frames)
        nums = [_frame_number(f) for f in frames]
        assert nums == sorted(nums) and len(set(nums)) == len(nums)
        for f in frames:
            assert f.parent.name == f"{t.meta['orig_pid']:04d}"
            assert f.name[:4] == f"{t.meta['orig_pid']:04d}"
            assert int(f.name[5]) - 1 == t.camid  # camid 0-based
        assert frames[0].is_file() and frames[-1].is_file()
    train_dirs = {t.frames[0].parent.parent.name for t in s.train}
    test_dirs = {t.frames[0].parent.parent.name for t in s.query + s.gallery}
    assert train_dirs == {"bbox_train"} and test_dirs == {"bbox_test"}


def test_mini_root_forms_agree(shared_dir: Path, mini: MARS) -> None:
    other = MARS(shared_dir / "data" / "mars-mini" / "mars")
    assert other.root == mini.root
    assert other.split().train == mini.split().train
    assert other.split().gallery == mini.split().gallery


# ---------------------------------------------------------------------------------------------
# official metadata (no images): names synthesised from the rows


def _names_for_rows(rows: np.ndarray) -> list[str]:
    counter: Counter = Counter()
    names: list[str] = []
    for start, end, pid, cam in rows.tolist():
        counter[(pid, cam)] += 1
        p = "00-1" if pid == -1 else f"{pid:04d}"
        names += [f"{p}C{cam}T{counter[(pid, cam)]:04d}F{f:03d}.jpg" for f in range(1, end - start + 2)]
    return names


@pytest.fixture(scope="module")
def official(shared_dir: Path) -> dict:
    d = shared_dir / "data" / "mars-official-info"
    tr = scipy.io.loadmat(str(d / "tracks_train_info.mat"))["track_train_info"]
    te = scipy.io.loadmat(str(d / "tracks_test_info.mat"))["track_test_info"]
    q = scipy.io.loadmat(str(d / "query_IDX.mat"))["query_IDX"]
    # the rows tile the name lists in order, so synthesised names line up with them
    assert tr[0, 0] == 1 and np.all(tr[1:, 0] == tr[:-1, 1] + 1)
    assert te[0, 0] == 1 and np.all(te[1:, 0] == te[:-1, 1] + 1)
    return {"dir": d, "tr": tr, "te": te, "q": q, "train_names": _names_for_rows(tr), "test_names": _names_for_rows(te)}


def _check_official(ds: MARS, official: dict) -> None:
    s = ds.split(0)
    te = official["te"]
    assert len(s.train) == 8298 and s.num_train_pids == 625
    assert sorted({t.pid for t in s.train}) == list(range(625))
    assert len(s.query) == 1980 and len({t.pid for t in s.query}) == 626
    assert len(s.gallery) == 10200
    assert sum(t.pid == -1 for t in s.gallery) == 870
    assert sum(t.pid == 0 for t in s.gallery) == 3248
    assert all(t.meta["distractor"] == (t.pid == 0) for t in ds.test_tracklets)
    assert len(ds.test_tracklets) == 12180
    q = official["q"].ravel().astype(int) - 1
    assert [t.meta["row"] for t in s.query] == q.tolist()
    rows = [t.meta["row"] for t in s.gallery]
    assert rows == sorted(set(range(12180)) - set(q.tolist()))
    for t in s.query[:50] + s.gallery[::97]:
        r = t.meta["row"]
        assert (t.pid, t.camid + 1, len(t)) == (te[r, 2], te[r, 3], te[r, 1] - te[r, 0] + 1)
        assert t.frames[0].name == official["test_names"][te[r, 0] - 1]
    assert sum(len(t) for t in s.train) == len(official["train_names"]) == 509914
    assert sum(len(t) for t in ds.test_tracklets) == len(official["test_names"]) == 681089
    ids = [t.meta["tracklet_id"] for t in s.train + ds.test_tracklets]
    assert len(set(ids)) == len(ids) == 8298 + 12180
    junk = next(t for t in s.gallery if t.pid == -1)
    assert junk.frames[0].parent.name == "00-1"


def test_official_metadata_from_arrays(official: dict) -> None:
    ds = MARS.from_metadata(
        "/nonexistent/mars",
        train_names=official["train_names"],
        test_names=official["test_names"],
        track_train=official["tr"],
        track_test=official["te"],
        query_idx=official["q"],
    )
    _check_official(ds, official)
    assert str(ds.split().train[0].frames[0]).startswith("/nonexistent/mars/bbox_train/0001/")


def test_official_metadata_from_info_files(official: dict, tmp_path: Path) -> None:
    info = tmp_path / "mars" / "info"
    info.mkdir(parents=True)
    for f in ("tracks_train_info.mat", "tracks_test_info.mat", "query_IDX.mat"):
        shutil.copy(official["dir"] / f, info / f)
    # CRLF line ends as in the original release
    (info / "train_name.txt").write_bytes("\r\n".join(official["train_names"]).encode() + b"\r\n")
    (info / "test_name.txt").write_bytes("\r\n".join(official["test_names"]).encode() + b"\r\n")
    ds = MARS(tmp_path, check_frames="none")
    _check_official(ds, official)
    # with frame checks on, the first identity folder that does not exist is named
    with pytest.raises(FileNotFoundError, match=r"identity folder .*bbox_(train|test)/(0000|00-1|0001)"):
        MARS(tmp_path)


# ---------------------------------------------------------------------------------------------
# hand-built tiny layouts


def _write_mars(root: Path, train: list[tuple[int, int, list[int]]], test: list[tuple[int, int, list[int]]],
                query: list[int], shuffle_names: bool = False) -> Path:
    """Write a MARS layout; each tracklet is (pid, camera 1-based, frame numbers in name-list order)."""
    mars = root / "mars"
    info = mars / "info"
    info.mkdir(parents=True)
    for part, tracks, key in (("train", train, "track_train_info"), ("test", test, "track_test_info")):
        names, rows, counter = [], [], Counter()
        for pid, cam, frames in tracks:
            counter[(pid, cam)] += 1
            p = "00-1" if pid == -1 else f"{pid:04d}"
            tn = [f"{p}C{cam}T{counter[(pid, cam)]:04d}F{f:03d}.jpg" for f in frames]
            rows.append([len(names) + 1, len(names) + len(tn), pid, cam])
            names += tn
            d = mars / f"bbox_{part}" / p
            d.mkdir(parents=True, exist_ok=True)
            for n in tn:
                Image.new("RGB", (4, 8), (pid % 256, cam * 30, 0)).save(d / n)
        (info / f"{part}_name.txt").write_text("\n".join(names) + "\n")
        scipy.io.savemat(str(info / f"tracks_{part}_info.mat"), {key: np.array(rows, dtype=np.int32).reshape(-1, 4)})
    scipy.io.savemat(str(info / "query_IDX.mat"), {"query_IDX": np.array([query], dtype=np.uint16)})
    return mars


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return _write_mars(
        tmp_path,
        train=[(7, 2, [1, 2, 3]), (-1, 1, [1, 2]), (2, 1, [5, 6]), (7, 3, [1, 2, 3, 4])],
        test=[(4, 1, [1, 2]), (0, 2, [1, 2, 3]), (4, 3, [1, 2, 3]), (-1, 4, [1]), (9, 5, [1, 2])],
        query=[3, 1],
    )


def test_tiny_layout_semantics(tiny: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        s = MARS(tiny.parent, check_frames="full").split()
    assert "dropped 1 junk" in caplog.text
    # pid -1 dropped from train; 2 → 0, 7 → 1
    assert [(t.pid, t.meta["orig_pid"], t.camid, len(t)) for t in s.train] == [(1, 7, 1, 3), (0, 2, 0, 2), (1, 7, 2, 4)]
    assert [(t.pid, t.camid, t.meta["row"]) for t in s.query] == [(4, 2, 2), (4, 0, 0)]
    assert [(t.pid, t.camid, t.meta["row"], t.meta["distractor"]) for t in s.gallery] == [
        (0, 1, 1, True), (-1, 3, 3, False), (9, 4, 4, False)
    ]
    assert s.gallery[0].frames[0].parent.name == "0000"
    assert s.gallery[1].frames[0].parent.name == "00-1"


def test_frames_sorted_by_frame_number_not_list_order(tmp_path: Path) -> None:
    mars = _write_mars(tmp_path, train=[(1, 1, [3, 1, 10, 2])], test=[(2, 1, [2, 1]), (2, 2, [1])], query=[1])
    ds = MARS(mars)
    t = ds.split().train[0]
    assert [_frame_number(f) for f in t.frames] == [1, 2, 3, 10]
    assert [_frame_number(f) for f in ds.split().query[0].frames] == [1, 2]


def test_shared_name_prefixes_get_unique_ids() -> None:
    names = ["0001C1T0001F001.jpg", "0001C1T0001F002.jpg", "0002C1T0001F001.jpg"]
    ds = MARS.from_metadata(
        "/x/mars", train_names=names[:2], test_names=names[2:],
        track_train=np.array([[1, 1, 1, 1], [2, 2, 1, 1]]), track_test=np.array([[1, 1, 2, 1]]),
        query_idx=np.array([[1]]),
    )
    assert [t.meta["tracklet_id"] for t in ds.split().train] == ["0001C1T0001@train0", "0001C1T0001@train1"]
    assert ds.split().query[0].meta["tracklet_id"] == "0002C1T0001"
    assert ds.split().gallery == []


def test_longer_frame_field_parsed_one_by_one() -> None:
    # not in the official lists, but names of unequal length take the per-name path
    names = ["0001C1T0001F1000.jpg", "0001C1T0001F999.jpg", "0002C2T0001F001.jpg"]
    ds = MARS.from_metadata(
        "/x/mars", train_names=names[:2], test_names=names[2:],
        track_train=np.array([[1, 2, 1, 1]]), track_test=np.array([[1, 1, 2, 2]]), query_idx=np.array([[1]]),
    )
    assert [p.name for p in ds.split().train[0].frames] == ["0001C1T0001F999.jpg", "0001C1T0001F1000.jpg"]
    with pytest.raises(ValueError, match=r"<train_names> line 2: '0001C1T0001X999\.jpg' is not a MARS frame name"):
        MARS.from_metadata(
            "/x/mars", train_names=[names[0], "0001C1T0001X999.jpg"], test_names=names[2:],
            track_train=np.array([[1, 2, 1, 1]]), track_test=np.array([[1, 1, 2, 2]]), query_idx=np.array([[1]]),
        )


# ---------------------------------------------------------------------------------------------
# bad input: each error names the file and what was expected


def test_missing_info_file(tiny: Path) -> None:
    (tiny / "info" / "test_name.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing file .*info/test_name\.txt(.|\n)*Expected layout"):
        MARS(tiny)


def test_malformed_mat_key(tiny: Path) -> None:
    scipy.io.savemat(str(tiny / "info" / "query_IDX.mat"), {"query_idx_wrong": np.array([[1]], np.uint16)})
    with pytest.raises(ValueError, match=r"query_IDX\.mat has no key 'query_IDX' \(found \['query_idx_wrong'\]\)"):
        MARS(tiny)


def test_malformed_mat_shape_and_rows(tiny: Path) -> None:
    scipy.io.savemat(str(tiny / "info" / "tracks_test_info.mat"), {"track_test_info": np.ones((3, 3), np.int32)})
    with pytest.raises(ValueError, match=r"tracks_test_info\.mat must hold an \(N, 4\) array"):
        MARS(tiny)
    scipy.io.savemat(str(tiny / "info" / "tracks_test_info.mat"), {"track_test_info": np.array([[1, 99, 4, 1]], np.int32)})
    with pytest.raises(ValueError, match=r"tracks_test_info\.mat row 0 .*start <= end <= 11"):
        MARS(tiny)


def test_not_a_mat_file(tiny: Path) -> None:
    (tiny / "info" / "tracks_train_info.mat").write_text("not a mat file")
    with pytest.raises(ValueError, match=r"cannot read .*tracks_train_info\.mat as a MATLAB"):
        MARS(tiny)


def test_query_index_out_of_range(tiny: Path) -> None:
    scipy.io.savemat(str(tiny / "info" / "query_IDX.mat"), {"query_IDX": np.array([[0, 2]], np.uint16)})
    with pytest.raises(ValueError, match=r"query_IDX\.mat holds row indices 0\.\.2; they must be 1-based"):
        MARS(tiny)


def test_row_name_mismatch(tiny: Path) -> None:
    rows = np.array([[1, 3, 7, 2], [4, 5, -1, 1], [6, 7, 2, 1], [8, 11, 8, 3]], np.int32)  # last pid wrong
    scipy.io.savemat(str(tiny / "info" / "tracks_train_info.mat"), {"track_train_info": rows})
    with pytest.raises(ValueError, match=r"row 3 .* says pid 8, camera 3 but line 8 .*train_name\.txt is '0007C3T0001F001\.jpg'"):
        MARS(tiny)


def test_bad_name_format(tiny: Path) -> None:
    p = tiny / "info" / "train_name.txt"
    lines = p.read_text().split()
    lines[1] = "0007-2T0001F002.jpg"
    p.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"train_name\.txt line 2: '0007-2T0001F002\.jpg' is not a MARS frame name"):
        MARS(tiny)


def test_missing_identity_folder(tiny: Path) -> None:
    shutil.rmtree(tiny / "bbox_test" / "0009")
    with pytest.raises(FileNotFoundError, match=r"identity folder .*bbox_test/0009 is referenced"):
        MARS(tiny)
    # without frame checks construction does not touch image folders
    assert len(MARS(tiny, check_frames="none").split().gallery) == 3


def test_missing_frame_found_by_checks(tiny: Path) -> None:
    (tiny / "bbox_train" / "0007" / "0007C3T0001F004.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"0007C3T0001F004\.jpg"):
        MARS(tiny)  # last frame of a sampled tracklet
    (tiny / "bbox_train" / "0007" / "0007C3T0001F004.jpg").touch()
    (tiny / "bbox_train" / "0007" / "0007C3T0001F002.jpg").unlink()
    MARS(tiny)  # the sample checks first/last frames only
    with pytest.raises(FileNotFoundError, match=r"1 frame file\(s\) .* missing, e\.g\. .*0007C3T0001F002\.jpg"):
        MARS(tiny, check_frames="full")


def test_no_dataset_at_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no dataset found under .*Expected layout"):
        MARS(tmp_path)
    with pytest.raises(ValueError, match="check_frames must be one of"):
        MARS(tmp_path, check_frames="some")
