"""DukeMTMC-VideoReID, iLIDS-VID, PRID2011, generic folder and Market-1501 loaders on layouts
written by hand in tmp_path, plus the factory and ``FramePaths``."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from videoreid.data.datasets import common
from videoreid.data.datasets.common import FramePaths
from videoreid.data.datasets.dukev import DukeMTMCVideoReID
from videoreid.data.datasets.factory import DATASETS, build_dataset
from videoreid.data.datasets.folder import FolderDataset
from videoreid.data.datasets.ilidsvid import ILIDSVID
from videoreid.data.datasets.market import Market1501
from videoreid.data.datasets.prid2011 import PRID2011, derive_splits


def _img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 8), (10, 20, 30)).save(path)


@pytest.fixture
def reverse_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make os.scandir return entries in reverse name order: loaders must not depend on it."""
    real = os.scandir

    class Reversed:
        def __init__(self, path: os.PathLike[str] | str) -> None:
            with real(path) as it:
                self.entries = sorted(it, key=lambda e: e.name, reverse=True)

        def __enter__(self):  # noqa: ANN204
            return iter(self.entries)

        def __exit__(self, *exc: object) -> bool:
            return False

    monkeypatch.setattr(common.os, "scandir", Reversed)


# ---------------------------------------------------------------------------------------------
# DukeMTMC-VideoReID


def _duke(root: Path, old_names: bool = False) -> Path:
    base = root / "dukemtmc-vidreid" / "DukeMTMC-VideoReID"

    def name(pid: int, cam: int, f: int, flag: str = "X") -> str:
        if old_names:
            return f"{pid:04d}C{cam}F{f:04d}{flag}{30000 + f}.jpg"
        return f"{pid:04d}_C{cam}_F{f:04d}_{flag}{30000 + f}.jpg"

    for f in (2, 3, 10, 4):  # tracklet starting at F0002
        _img(base / "train" / "0012" / "0001" / name(12, 6, f))
    for f in (1, 2):
        _img(base / "train" / "0012" / "0002" / name(12, 1, f))
    for f in (1, 2, 3):
        _img(base / "train" / "0005" / "0007" / name(5, 8, f))
    _img(base / "query" / "0030" / "0003" / name(30, 2, 1))
    for f in (1, 2):
        _img(base / "gallery" / "0030" / "0004" / name(30, 5, f))
        _img(base / "gallery" / "0700" / "0009" / name(700, 3, f, "D"))
    (base / "train" / "0012" / "0001" / "0012_C6_F0002_X30002_keypoints.json").write_text("{}")
    return root


@pytest.mark.parametrize("old_names", [False, True])
def test_duke_both_name_forms(tmp_path: Path, old_names: bool, reverse_listing: None) -> None:
    root = _duke(tmp_path, old_names)
    for r in (root, root / "dukemtmc-vidreid", root / "dukemtmc-vidreid" / "DukeMTMC-VideoReID"):
        ds = DukeMTMCVideoReID(r)
        s = ds.split()
        # train pids 5 → 0, 12 → 1; tracklets in sorted folder order
        assert [(t.pid, t.meta["orig_pid"], t.camid, len(t), t.meta["tracklet_id"]) for t in s.train] == [
            (0, 5, 7, 3, "train/0005/0007"),
            (1, 12, 5, 4, "train/0012/0001"),
            (1, 12, 0, 2, "train/0012/0002"),
        ]
        frames = [int(p.name.split("F")[1][:4]) for p in s.train[1].frames]
        assert frames == [2, 3, 4, 10]
        assert [(t.pid, t.camid, t.meta["subset"]) for t in s.query] == [(30, 1, "query")]
        assert [(t.pid, t.camid, t.meta["distractor"]) for t in s.gallery] == [(30, 4, False), (700, 2, True)]
        assert ds.num_splits == 1 and s.protocol == "market"


def test_duke_errors(tmp_path: Path) -> None:
    root = _duke(tmp_path)
    base = root / "dukemtmc-vidreid" / "DukeMTMC-VideoReID"
    (base / "gallery" / "0031").mkdir()
    with pytest.raises(ValueError, match=r"identity folder .*gallery/0031 holds no tracklet folders"):
        DukeMTMCVideoReID(root)
    (base / "gallery" / "0031" / "0001").mkdir()
    with pytest.raises(ValueError, match=r"tracklet folder .*gallery/0031/0001 holds no frames"):
        DukeMTMCVideoReID(root)
    _img(base / "gallery" / "0031" / "0001" / "0032_C1_F0001_X1.jpg")
    with pytest.raises(ValueError, match=r"gallery/0031/0001 name pid\(s\) \[32\], but the folder says 31"):
        DukeMTMCVideoReID(root)
    _img(base / "gallery" / "0031" / "0001" / "0031_C1_F0001_X1.jpg")
    (base / "gallery" / "0031" / "0001" / "0032_C1_F0001_X1.jpg").unlink()
    _img(base / "gallery" / "0031" / "0001" / "0031_C2_F0002_X2.jpg")
    with pytest.raises(ValueError, match=r"several cameras \[1, 2\]"):
        DukeMTMCVideoReID(root)
    (base / "gallery" / "0031" / "0001" / "0031_C2_F0002_X2.jpg").rename(base / "gallery" / "0031" / "0001" / "frame2.jpg")
    with pytest.raises(ValueError, match=r"cannot parse frame file .*frame2\.jpg: expected a name like '0001_C6_F0099_X30823\.jpg'"):
        DukeMTMCVideoReID(root)
    with pytest.raises(FileNotFoundError, match=r"no dataset found under(.|\n)*DukeMTMC-VideoReID"):
        DukeMTMCVideoReID(tmp_path / "dukemtmc-vidreid" / "DukeMTMC-VideoReID" / "train")


# ---------------------------------------------------------------------------------------------
# iLIDS-VID

_ILIDS_PERSONS = ["person200", "person005", "person001", "person013", "person002", "person010"]  # unsorted, gaps


def _ilids(root: Path, ls_set: np.ndarray, key: str = "ls_set") -> Path:
    base = root / "ilids-vid"
    for k, person in enumerate(_ILIDS_PERSONS):
        for cam in (1, 2):
            start = 100 * k + 7 * cam
            for f in (start + 9, start, start + 1):  # write order differs from frame order
                _img(base / "i-LIDS-VID" / "sequences" / f"cam{cam}" / person / f"cam{cam}_{person}_{f:05d}.png")
    split_dir = base / "train-test people splits"
    split_dir.mkdir(parents=True)
    scipy.io.savemat(str(split_dir / "train_test_splits_ilidsvid.mat"), {key: ls_set})
    return root


def test_ilidsvid_splits(tmp_path: Path, reverse_listing: None) -> None:
    # sorted cam1 folders: person001, person002, person005, person010, person013, person200
    ls = np.array([[2, 6, 1, 3, 4, 5], [5, 4, 3, 2, 1, 6], [1, 2, 3, 4, 5, 6]], dtype=np.float64)  # MATLAB doubles
    root = _ilids(tmp_path, ls)
    for r in (root, root / "ilids-vid"):
        ds = ILIDSVID(r)
        assert ds.num_splits == 3 and ds.name == "ilidsvid"
        s0 = ds.split(0)
        # test = first half of the columns: indices 2, 6, 1 → person002, person200, person001
        assert [t.pid for t in s0.query] == [1, 2, 200] and all(t.camid == 0 for t in s0.query)
        assert [t.pid for t in s0.gallery] == [1, 2, 200] and all(t.camid == 1 for t in s0.gallery)
        # train = indices 3, 4, 5 → person005, person010, person013 → labels 0, 1, 2, both cameras
        assert [(t.pid, t.meta["orig_pid"], t.camid) for t in s0.train] == [
            (0, 5, 0), (0, 5, 1), (1, 10, 0), (1, 10, 1), (2, 13, 0), (2, 13, 1)
        ]
        s1 = ds.split(1)
        assert [t.pid for t in s1.query] == [5, 10, 13]
        assert [t.meta["orig_pid"] for t in s1.train[::2]] == [1, 2, 200]
        assert ds.split(2).query[0].meta["tracklet_id"] == "cam1/person001"
        # frames ordered by number: start, start + 1, start + 9 (person013 is k=3 → cam2 start 314)
        t = next(t for t in s0.train if t.meta["orig_pid"] == 13 and t.camid == 1)
        assert [p.name for p in t.frames] == ["cam2_person013_00314.png", "cam2_person013_00315.png", "cam2_person013_00323.png"]
        assert s0.protocol == "cross_camera"
    with pytest.raises(IndexError, match=r"split 3 does not exist; valid splits are 0\.\.2"):
        ds.split(3)


def test_ilidsvid_errors(tmp_path: Path) -> None:
    root = _ilids(tmp_path / "a", np.ones((2, 6)), key="wrong")
    with pytest.raises(ValueError, match=r"train_test_splits_ilidsvid\.mat has no key 'ls_set' \(found \['wrong'\]\)"):
        ILIDSVID(root)
    root = _ilids(tmp_path / "b", np.array([[1, 2, 3, 4, 5, 7]]))
    with pytest.raises(ValueError, match=r"indices 1\.\.7, but they are 1-based indices into the 6 sorted cam1"):
        ILIDSVID(root)
    root = _ilids(tmp_path / "c", np.array([[1, 2, 3, 4, 5, 6]]))
    (root / "ilids-vid" / "train-test people splits" / "train_test_splits_ilidsvid.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing file .*train-test people splits/train_test_splits_ilidsvid\.mat"):
        ILIDSVID(root)
    root = _ilids(tmp_path / "d", np.array([[1, 2, 3, 4, 5, 6]]))
    seq = root / "ilids-vid" / "i-LIDS-VID" / "sequences"
    for f in (seq / "cam2" / "person010").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=r"tracklet folder .*cam2/person010 holds no frames"):
        ILIDSVID(root)
    (seq / "cam2" / "person010").rmdir()
    with pytest.raises(FileNotFoundError, match=r"person010 is named by .* but .*cam2/person010 does not exist"):
        ILIDSVID(root)


# ---------------------------------------------------------------------------------------------
# PRID2011


def _prid(root: Path, lengths: dict[str, tuple[int, int]], only_b: int = 3) -> Path:
    base = root / "prid2011" / "prid_2011" / "multi_shot"
    for person, (na, nb) in lengths.items():
        for cam, n in (("cam_a", na), ("cam_b", nb)):
            for f in range(n, 0, -1):
                _img(base / cam / person / f"{f:04d}.png")
    for k in range(only_b):  # persons seen only by cam_b never qualify
        _img(base / "cam_b" / f"person_{900 + k:04d}" / "0001.png")
    return root


_PRID_LENGTHS = {
    "person_0001": (3, 4), "person_0002": (2, 9), "person_0003": (5, 3), "person_0007": (3, 3),
    "person_0010": (12, 3), "person_0042": (3, 2), "person_0050": (4, 4),
}
_PRID_QUALIFIED = ["person_0001", "person_0003", "person_0007", "person_0010", "person_0050"]


def test_prid_derives_and_writes_splits(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _prid(tmp_path / "a", _PRID_LENGTHS)
    with caplog.at_level("WARNING"):
        ds = PRID2011(root, seed=3, min_frames=3)
    assert "derived 10 splits (seed 3) from the 5 persons numbered <= 200 in both cameras with >= 3 frames" in caplog.text
    split_file = root / "prid2011" / "splits_prid2011.json"
    written = json.loads(split_file.read_text())
    assert written == derive_splits(_PRID_QUALIFIED, 10, 3)
    assert not list(split_file.parent.glob(".*tmp"))  # atomic write left no temporary
    assert ds.num_splits == 10
    for k, d in enumerate(written):
        assert len(d["test"]) == 2 and len(d["train"]) == 3  # n // 2 test, rest train
        assert sorted(d["test"] + d["train"]) == _PRID_QUALIFIED
        s = ds.split(k)
        assert [t.pid for t in s.query] == [int(p[-4:]) for p in d["test"]]
        assert [t.camid for t in s.query + s.gallery] == [0, 0, 1, 1]
        assert [t.meta["orig_pid"] for t in s.train] == [int(p[-4:]) for p in d["train"] for _ in (0, 1)]
        assert [t.pid for t in s.train] == [0, 0, 1, 1, 2, 2]
    # deterministic: same seed elsewhere → same file; a different seed → different splits
    root_b = _prid(tmp_path / "b", _PRID_LENGTHS)
    PRID2011(root_b / "prid2011", seed=3, min_frames=3)
    assert json.loads((root_b / "prid2011" / "splits_prid2011.json").read_text()) == written
    assert derive_splits(_PRID_QUALIFIED, 10, 4) != written
    # frames in frame-number order
    t = next(t for t in ds.split(0).train + ds.split(0).query if t.meta["orig_pid"] == 10 and t.camid == 0)
    assert [p.name for p in t.frames] == [f"{f:04d}.png" for f in range(1, 13)]


def test_prid_reads_existing_split_file(tmp_path: Path) -> None:
    root = _prid(tmp_path, _PRID_LENGTHS)
    split_file = root / "prid2011" / "splits_prid2011.json"
    split_file.write_text(json.dumps([{"train": ["person_0042", "person_0002"], "test": ["person_0050"]}]))
    ds = PRID2011(root)  # file used as is, even with persons under 27 frames
    assert ds.num_splits == 1
    s = ds.split()
    assert [(t.pid, t.meta["orig_pid"], t.camid) for t in s.train] == [(0, 2, 0), (0, 2, 1), (1, 42, 0), (1, 42, 1)]
    assert [(t.pid, t.camid, len(t)) for t in s.query] == [(50, 0, 4)]
    assert [(t.pid, t.camid, len(t)) for t in s.gallery] == [(50, 1, 4)]
    split_file.write_text(json.dumps([{"train": ["person_0901"], "test": ["person_0050"]}]))
    with pytest.raises(FileNotFoundError, match=r"person folder .*cam_a/person_0901 does not exist"):
        PRID2011(root)
    split_file.write_text(json.dumps({"train": []}))
    with pytest.raises(ValueError, match=r"splits_prid2011\.json must be a non-empty JSON list"):
        PRID2011(root)


def test_prid_too_few_qualifying(tmp_path: Path) -> None:
    root = _prid(tmp_path, _PRID_LENGTHS)
    with pytest.raises(ValueError, match=r"only 0 of the 7 persons numbered <= 200 in both cameras have >= 27 frames"):
        PRID2011(root)
    assert not (root / "prid2011" / "splits_prid2011.json").exists()


def test_prid_equal_names_beyond_num_shared_are_not_pairs(tmp_path: Path) -> None:
    # as in PRID2011, where only person_0001..person_0200 are the same people in both cameras
    root = _prid(tmp_path / "a", _PRID_LENGTHS)
    ds = PRID2011(root, min_frames=3, num_shared=7, num_splits=2)
    qualified = ["person_0001", "person_0003", "person_0007"]
    assert json.loads((root / "prid2011" / "splits_prid2011.json").read_text()) == derive_splits(qualified, 2, 0)
    assert ds.num_splits == 2 and len(ds.split(1).query) == 1 and len(ds.split(1).train) == 4
    root = _prid(tmp_path / "b", _PRID_LENGTHS)  # None: every name in both cameras is a pair
    assert len(PRID2011(root, min_frames=3, num_shared=None).split().train) == 2 * 3


# ---------------------------------------------------------------------------------------------
# generic folder layout


def _folder(root: Path) -> Path:
    for f in (9, 10, 1):  # "frame_10" sorts before "frame_9" as text
        _img(root / "train" / "17" / "0_a" / f"frame_{f}.jpg")
        (root / "train" / "17" / "0_a" / f"frame_{f}_keypoints.json").write_text("{}")
    _img(root / "train" / "17" / "2_b" / "0001.png")
    _img(root / "train" / "3" / "1_x" / "0001.png")
    _img(root / "train" / "-1" / "0_junk" / "0001.png")
    _img(root / "query" / "230" / "1_q" / "7.jpg")
    _img(root / "gallery" / "230" / "0_g" / "7.jpg")
    _img(root / "gallery" / "0" / "4_g" / "3.jpg")
    (root / "gallery" / "0" / "4_g" / "notes.txt").write_text("not a frame")
    return root


def test_folder_layout(tmp_path: Path, reverse_listing: None, caplog: pytest.LogCaptureFixture) -> None:
    root = _folder(tmp_path)
    with caplog.at_level("WARNING"):
        s = FolderDataset(root).split()
    assert "dropped 1 junk (pid -1) tracklet(s) from train" in caplog.text
    assert "ignored 1 non-image file(s)" in caplog.text and "notes.txt" in caplog.text
    assert "keypoints" not in caplog.text
    assert [(t.pid, t.meta["orig_pid"], t.camid) for t in s.train] == [(0, 3, 1), (1, 17, 0), (1, 17, 2)]
    assert [p.name for p in s.train[1].frames] == ["frame_1.jpg", "frame_9.jpg", "frame_10.jpg"]
    assert [(t.pid, t.camid) for t in s.query] == [(230, 1)]
    assert [(t.pid, t.camid, t.meta["distractor"]) for t in s.gallery] == [(0, 4, False), (230, 0, False)]
    assert s.name == "folder"


def test_folder_errors(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    (root / "query" / "231").mkdir()
    with pytest.raises(ValueError, match=r"identity folder .*query/231 holds no <camid>_<tracklet> folders"):
        FolderDataset(root)
    (root / "query" / "231" / "1_empty").mkdir()
    with pytest.raises(ValueError, match=r"tracklet folder .*query/231/1_empty holds no frames"):
        FolderDataset(root)
    (root / "query" / "231" / "1_empty").rename(root / "query" / "231" / "cam1")
    with pytest.raises(ValueError, match=r"query/231/cam1 is not named <camid>_<tracklet>"):
        FolderDataset(root)
    (root / "query" / "231").rename(root / "query" / "bob")
    with pytest.raises(ValueError, match=r"identity folder .*query/bob is not an integer pid"):
        FolderDataset(root)
    shutil.rmtree(root / "query" / "bob")
    os.rename(root / "gallery", root / "gallery_old")
    with pytest.raises(FileNotFoundError, match=r"missing folder .*/gallery(.|\n)*Expected layout"):
        FolderDataset(root)


# ---------------------------------------------------------------------------------------------
# Market-1501 image layout


def _market(root: Path) -> Path:
    base = root / "market1501" / "Market-1501-v15.09.15"
    for n in ("0007_c2s1_000451_03.jpg", "0002_c1s1_000451_03.jpg", "0002_c6s2_000100_01.jpg"):
        _img(base / "bounding_box_train" / n)
    _img(base / "query" / "0009_c3s1_000100_00.jpg")
    for n in ("-1_c1s1_000401_03.jpg", "0000_c5s1_000200_02.jpg", "0009_c4s1_000200_02.jpg"):
        _img(base / "bounding_box_test" / n)
    return root


def test_market_layout(tmp_path: Path) -> None:
    root = _market(tmp_path)
    for r in (root, root / "market1501", root / "market1501" / "Market-1501-v15.09.15"):
        ds = Market1501(r)
        s = ds.split()
        assert all(len(t) == 1 for t in s.train + s.query + s.gallery)
        assert [(t.pid, t.meta["orig_pid"], t.camid, t.frames[0].name) for t in s.train] == [
            (0, 2, 0, "0002_c1s1_000451_03.jpg"), (0, 2, 5, "0002_c6s2_000100_01.jpg"), (1, 7, 1, "0007_c2s1_000451_03.jpg")
        ]
        assert [(t.pid, t.camid) for t in s.query] == [(9, 2)]
        assert [(t.pid, t.camid, t.meta["distractor"]) for t in s.gallery] == [(-1, 0, False), (0, 4, True), (9, 3, False)]
        assert s.name == "market1501" and s.protocol == "market"


def test_market_layout_other_datasets(tmp_path: Path) -> None:
    base = tmp_path / "DukeMTMC-reID"
    _img(base / "bounding_box_train" / "0005_c2_f0046985.jpg")
    _img(base / "query" / "0011_c8_f0000001.jpg")
    _img(base / "bounding_box_test" / "0011_c1_f0000009.jpg")
    s = Market1501(tmp_path, name="dukemtmc-reid").split()
    assert [(t.pid, t.meta["orig_pid"], t.camid) for t in s.train] == [(0, 5, 1)]
    assert [(t.pid, t.camid) for t in s.query + s.gallery] == [(11, 7), (11, 0)]
    assert s.name == "dukemtmc-reid"
    cuhk = tmp_path / "cuhk03"
    _img(cuhk / "bounding_box_train" / "0001_c1_1.png")
    _img(cuhk / "bounding_box_train" / "-1_c1_1.png")
    _img(cuhk / "query" / "0003_c2_2.png")
    _img(cuhk / "bounding_box_test" / "0003_c1_1.png")
    s = Market1501(cuhk, name="cuhk03").split()
    assert [(t.pid, t.camid) for t in s.train] == [(0, 0)]
    _img(cuhk / "query" / "img_1.png")
    with pytest.raises(ValueError, match=r"cannot parse .*query/img_1\.png: expected a name starting with <pid>_c<camera>"):
        Market1501(cuhk)


# ---------------------------------------------------------------------------------------------
# factory and FramePaths


def test_factory(tmp_path: Path) -> None:
    assert set(DATASETS) == {"mars", "dukev", "ilidsvid", "prid2011", "folder", "market1501",
                             "dukemtmc_reid", "cuhk03_np"}
    with pytest.raises(ValueError, match=r"unknown dataset 'marss'; valid names: cuhk03_np, dukemtmc_reid, dukev, folder, ilidsvid, market1501, mars, prid2011"):
        build_dataset("marss", tmp_path)
    with pytest.raises(ValueError, match=r"dataset 'prid2011' does not take option\(s\) \['sed'\]; valid options: \['seed'"):
        build_dataset("prid2011", tmp_path, sed=1)
    ds = build_dataset("folder", _folder(tmp_path / "f"))
    assert isinstance(ds, FolderDataset) and len(ds.split().train) == 3


def test_frame_paths_behaves_like_a_tuple_of_paths(tmp_path: Path) -> None:
    fp = FramePaths(tmp_path / "d", ["a.jpg", "b.jpg", "c.jpg"])
    expected = tuple(tmp_path / "d" / n for n in ("a.jpg", "b.jpg", "c.jpg"))
    assert len(fp) == 3 and fp[0] == expected[0] and fp[-1] == expected[-1]
    assert tuple(fp) == expected and fp == expected and list(fp) == list(expected)
    assert fp[1:] == expected[1:] and isinstance(fp[1:], FramePaths)
    assert fp[np.int64(1)] == expected[1]
    assert fp + expected[:1] == expected + expected[:1] and expected[:1] + fp == expected[:1] + expected
    assert fp != expected[:2] and fp != FramePaths(tmp_path / "d", ["a.jpg", "b.jpg"])
    assert hash(fp) == hash(FramePaths(str(tmp_path / "d") + "/", ["a.jpg", "b.jpg", "c.jpg"]))
    clone = pickle.loads(pickle.dumps(fp))
    assert clone == fp and clone.names == fp.names
    with pytest.raises(IndexError):
        fp[3]
