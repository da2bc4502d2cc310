"""Synthetic datasets in every official layout, read back three ways.

1. The project's loaders (``build_dataset``) must return exactly the manifest's tracklets,
   pids, cameras and frame order, split by split.
2. A minimal third-party-style parser per layout, transcribed from how torchreid reads these
   formats (``torchreid/data/datasets/video/{mars,ilidsvid,prid2011,dukemtmcvidreid}.py``,
   ``image/market1501.py``), must agree too: this is what "other tools read the output
   unchanged" means.
3. The index files themselves: ``.mat`` keys, dtypes and shapes as ``scipy.io.loadmat``
   returns them, CRLF name lists, split files.
"""

from __future__ import annotations

import glob
import json
import os
import os.path as osp
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.io import loadmat

from videoreid.data.datasets.factory import build_dataset
from videoreid.data.synthetic import SynthManifest, SynthTracklet, generate

LAYOUTS = ("mars", "dukev", "ilidsvid", "prid2011", "market1501")
# Small but complete: every layout gets junk/distractors/single-camera persons as it has them.
SETTINGS = {
    "mars": dict(ids=6, tracklet_len=(3, 6)),
    "dukev": dict(ids=8, tracklet_len=(3, 5)),
    "ilidsvid": dict(ids=6, tracklet_len=(3, 6)),
    # PRID's splits need >= 27 frames in both cameras; skip keypoint files to halve the I/O
    "prid2011": dict(ids=5, tracklet_len=(27, 28), keypoints=False),
    "market1501": dict(ids=6, tracklet_len=(1, 3)),
}

Record = tuple[tuple[str, ...], int, int]  # (frame paths, pid, camid)


@pytest.fixture(scope="module", params=LAYOUTS)
def synth(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[str, Path, SynthManifest]:
    layout = request.param
    out = tmp_path_factory.mktemp(f"synth_{layout}")
    kw = dict(SETTINGS[layout])
    manifest = generate(layout, out, seed=5, height=64, width=32, progress=False, **kw)
    return layout, out, manifest


def _paths(root: Path, t: SynthTracklet) -> tuple[str, ...]:
    return tuple(osp.normpath(osp.join(root, f)) for f in t.frames)


def _rec(root: Path, t: SynthTracklet) -> Record:
    return (_paths(root, t), t.pid, t.camid)


def _loaded(tracklets: list, train: bool = False) -> list[Record]:
    return [(tuple(osp.normpath(str(p)) for p in t.frames),
             t.meta["orig_pid"] if train else t.pid, t.camid) for t in tracklets]


# ============================================================================ project loaders
def test_project_loader_round_trip(synth: tuple[str, Path, SynthManifest]) -> None:
    layout, out, m = synth
    ds = build_dataset(layout, out)
    by_id = {t.tracklet_id: t for t in m.tracklets}
    if layout in ("ilidsvid", "prid2011"):
        assert ds.num_splits == len(m.splits) == 10
        person_cam = {(t.meta["person"], t.camid): t for t in m.tracklets}
        for k, split in enumerate(ds.splits()):
            names = m.splits[k]
            exp_train = sorted(_rec(out, person_cam[(p, c)]) for p in names["train"]
                               for c in (0, 1))
            exp_query = sorted(_rec(out, person_cam[(p, 0)]) for p in names["test"])
            exp_gallery = sorted(_rec(out, person_cam[(p, 1)]) for p in names["test"])
            assert sorted(_loaded(split.train, train=True)) == exp_train
            assert sorted(_loaded(split.query)) == exp_query
            assert sorted(_loaded(split.gallery)) == exp_gallery
            assert sorted(t.pid for t in split.train) == sorted(
                i for i in range(len(names["train"])) for _ in (0, 1))
    else:
        assert ds.num_splits == 1
        split = ds.split(0)
        exp = {s: [_rec(out, t) for t in m.subset(s)] for s in ("train", "query", "gallery")}
        got = {"train": _loaded(split.train, train=True), "query": _loaded(split.query),
               "gallery": _loaded(split.gallery)}
        if layout == "mars":  # row order (train, gallery) and query_IDX order are defined
            assert got == exp
        else:
            assert {s: sorted(v) for s, v in got.items()} == {s: sorted(v) for s, v in exp.items()}
        # training pids are relabelled 0..N-1 in sorted original-pid order
        orig = sorted({t.meta["orig_pid"] for t in split.train})
        assert all(t.pid == orig.index(t.meta["orig_pid"]) for t in split.train)
        # distractors flagged as such, junk kept in the gallery for the protocol to drop
        for t in split.gallery:
            mt = by_id[t.meta["tracklet_id"]]
            expected = mt.kind == "distractor" if layout == "dukev" else mt.pid == 0
            assert t.meta["distractor"] == expected
        if layout in ("mars", "market1501"):
            assert {-1, 0} <= {t.pid for t in split.gallery}
    # the loaders' tracklet ids are the manifest's
    for split in ds.splits()[:1]:
        for t in split.train + split.query + split.gallery:
            assert by_id[t.meta["tracklet_id"]].frames == [
                osp.relpath(str(p), out) for p in t.frames]


# ============================================================================ torchreid-style
def torchreid_mars(root: Path) -> tuple[list[Record], list[Record], list[Record]]:
    dataset_dir = osp.join(root, "mars")

    def get_names(fpath: str) -> list[str]:
        with open(fpath) as f:
            return [line.rstrip() for line in f]

    train_names = get_names(osp.join(dataset_dir, "info/train_name.txt"))
    test_names = get_names(osp.join(dataset_dir, "info/test_name.txt"))
    track_train = loadmat(osp.join(dataset_dir, "info/tracks_train_info.mat"))["track_train_info"]
    track_test = loadmat(osp.join(dataset_dir, "info/tracks_test_info.mat"))["track_test_info"]
    query_idx = loadmat(osp.join(dataset_dir, "info/query_IDX.mat"))["query_IDX"].squeeze()
    query_idx = np.atleast_1d(query_idx) - 1  # torchreid: `query_IDX -= 1` on the uint16 array
    track_query = track_test[query_idx, :]
    gallery_idx = [i for i in range(track_test.shape[0]) if i not in query_idx]
    track_gallery = track_test[gallery_idx, :]

    def process_data(names: list[str], meta: np.ndarray, home_dir: str) -> list[Record]:
        tracklets = []
        for start, end, pid, camid in meta.tolist():
            if pid == -1:
                continue  # junk images are just ignored
            assert 1 <= camid <= 6
            img_names = names[start - 1:end]
            assert len({n[:4] for n in img_names}) == 1
            assert len({n[5] for n in img_names}) == 1
            paths = tuple(osp.join(dataset_dir, home_dir, n[:4], n) for n in img_names)
            tracklets.append((paths, pid, camid - 1))
        return tracklets

    return (process_data(train_names, track_train, "bbox_train"),
            process_data(test_names, track_query, "bbox_test"),
            process_data(test_names, track_gallery, "bbox_test"))


def torchreid_two_camera_splits(mat_or_json: list[dict[str, list[str]]], cam_dirs: tuple[str, str]
                                ) -> list[tuple[list[Record], list[Record], list[Record]]]:
    """iLIDS-VID / PRID2011 ``process_data``. torchreid lists frames with an unsorted glob; the
    transcription sorts them (zero-padded frame numbers make name order temporal order)."""
    out = []
    for split in mat_or_json:
        def process(dirnames: list[str], cam1: bool, cam2: bool) -> list[Record]:
            tracklets = []
            pid_of = {d: i for i, d in enumerate(dirnames)}
            for d in dirnames:
                for use, cam_dir, camid in ((cam1, cam_dirs[0], 0), (cam2, cam_dirs[1], 1)):
                    if use:
                        names = tuple(sorted(glob.glob(osp.join(cam_dir, d, "*.png"))))
                        assert len(names) > 0
                        tracklets.append((names, pid_of[d], camid))
            return tracklets
        out.append((process(split["train"], True, True), process(split["test"], True, False),
                    process(split["test"], False, True)))
    return out


def torchreid_ilids(root: Path) -> tuple[list[dict[str, list[str]]], list]:
    dataset_dir = osp.join(root, "ilids-vid")
    mat = loadmat(osp.join(dataset_dir, "train-test people splits",
                           "train_test_splits_ilidsvid.mat"))["ls_set"]
    cam1 = osp.join(dataset_dir, "i-LIDS-VID/sequences/cam1")
    cam2 = osp.join(dataset_dir, "i-LIDS-VID/sequences/cam2")
    num_splits, num_total_ids = mat.shape
    num_ids_each = num_total_ids // 2
    cam1_dirs = [osp.basename(p) for p in sorted(glob.glob(osp.join(cam1, "*")))]
    cam2_dirs = [osp.basename(p) for p in sorted(glob.glob(osp.join(cam2, "*")))]
    assert set(cam1_dirs) == set(cam2_dirs)
    splits = []
    for i in range(num_splits):
        train_idxs = [int(k) - 1 for k in sorted(list(mat[i, num_ids_each:]))]
        test_idxs = [int(k) - 1 for k in sorted(list(mat[i, :num_ids_each]))]
        splits.append({"train": [cam1_dirs[k] for k in train_idxs],
                       "test": [cam1_dirs[k] for k in test_idxs]})
    return splits, torchreid_two_camera_splits(splits, (cam1, cam2))


def torchreid_prid(root: Path) -> tuple[list[dict[str, list[str]]], list]:
    dataset_dir = osp.join(root, "prid2011")
    with open(osp.join(dataset_dir, "splits_prid2011.json")) as f:
        splits = json.load(f)
    cams = (osp.join(dataset_dir, "prid_2011", "multi_shot", "cam_a"),
            osp.join(dataset_dir, "prid_2011", "multi_shot", "cam_b"))
    return splits, torchreid_two_camera_splits(splits, cams)


def torchreid_duke(root: Path) -> dict[str, list[Record]]:
    dataset_dir = osp.join(root, "dukemtmc-vidreid")
    out = {}
    for subset in ("train", "query", "gallery"):
        tracklets = []
        for pdir in glob.glob(osp.join(dataset_dir, "DukeMTMC-VideoReID", subset, "*")):
            pid = int(osp.basename(pdir))
            for tdir in glob.glob(osp.join(pdir, "*")):
                num_imgs = len(glob.glob(osp.join(tdir, "*.jpg")))
                img_paths = []
                for img_idx in range(num_imgs):
                    # some tracklets start from 0002 instead of 0001
                    res = glob.glob(osp.join(tdir, "*F" + str(img_idx + 1).zfill(4) + "*.jpg"))
                    if len(res) == 0:
                        continue
                    img_paths.append(res[0])
                img_name = osp.basename(img_paths[0])
                camid = int(img_name[5] if img_name.find("_") == -1 else img_name[6]) - 1
                tracklets.append((tuple(img_paths), pid, camid))
        out[subset] = tracklets
    return out


def torchreid_market(root: Path) -> dict[str, list[Record]]:
    data_dir = osp.join(root, "market1501")
    if osp.isdir(osp.join(data_dir, "Market-1501-v15.09.15")):
        data_dir = osp.join(data_dir, "Market-1501-v15.09.15")
    pattern = re.compile(r"([-\d]+)_c(\d)")
    out = {}
    for subset, folder in (("train", "bounding_box_train"), ("query", "query"),
                           ("gallery", "bounding_box_test")):
        data = []
        for img_path in glob.glob(osp.join(data_dir, folder, "*.jpg")):
            pid, camid = map(int, pattern.search(img_path).groups())
            if pid == -1:
                continue  # junk images are just ignored
            assert 0 <= pid <= 1501 and 1 <= camid <= 6
            data.append(((img_path,), pid, camid - 1))
        out[subset] = data
    return out


def test_third_party_style_parser_agrees(synth: tuple[str, Path, SynthManifest]) -> None:
    layout, out, m = synth
    norm = lambda recs: sorted((tuple(osp.normpath(p) for p in f), pid, c)  # noqa: E731
                               for f, pid, c in recs)
    if layout == "mars":
        train, query, gallery = torchreid_mars(out)
        assert train == [_rec(out, t) for t in m.subset("train")]
        assert query == [_rec(out, t) for t in m.subset("query")]
        assert gallery == [_rec(out, t) for t in m.subset("gallery") if t.pid != -1]
    elif layout in ("ilidsvid", "prid2011"):
        splits, parsed = torchreid_ilids(out) if layout == "ilidsvid" else torchreid_prid(out)
        assert [{k: sorted(v) for k, v in s.items()} for s in splits] == m.splits
        frames = {(t.meta["person"], t.camid): _paths(out, t) for t in m.tracklets}
        for names, (train, query, gallery) in zip(splits, parsed, strict=True):
            pid_train = {d: i for i, d in enumerate(names["train"])}
            pid_test = {d: i for i, d in enumerate(names["test"])}
            assert norm(train) == sorted((frames[(d, c)], pid_train[d], c)
                                         for d in names["train"] for c in (0, 1))
            assert norm(query) == sorted((frames[(d, 0)], pid_test[d], 0) for d in names["test"])
            assert norm(gallery) == sorted((frames[(d, 1)], pid_test[d], 1)
                                           for d in names["test"])
    elif layout == "dukev":
        parsed = torchreid_duke(out)
        late = 0
        for subset in ("train", "query", "gallery"):
            exp = []
            for t in m.subset(subset):
                paths = _paths(out, t)
                # torchreid looks up F0001..F{n}: a tracklet starting at F0002 loses its last
                # frame there (our loader sorts the parsed indices instead)
                if t.meta["first_index"] == 2:
                    paths, late = paths[:-1], late + 1
                exp.append((paths, t.pid, t.camid))
            assert norm(parsed[subset]) == sorted(exp)
        assert late >= 1  # the layout really contains F0002-start tracklets (seeded)
    else:
        parsed = torchreid_market(out)
        for subset in ("train", "query", "gallery"):
            exp = sorted(_rec(out, t) for t in m.subset(subset) if t.pid != -1)
            assert norm(parsed[subset]) == exp


# ============================================================================ index files
def test_index_files_exact_format(synth: tuple[str, Path, SynthManifest]) -> None:
    layout, out, m = synth
    if layout == "mars":
        info = out / "mars" / "info"
        tr = loadmat(info / "tracks_train_info.mat")
        te = loadmat(info / "tracks_test_info.mat")
        q = loadmat(info / "query_IDX.mat")
        assert [k for k in tr if not k.startswith("__")] == ["track_train_info"]
        assert [k for k in te if not k.startswith("__")] == ["track_test_info"]
        assert [k for k in q if not k.startswith("__")] == ["query_IDX"]
        tr, te, q = tr["track_train_info"], te["track_test_info"], q["query_IDX"]
        assert tr.dtype == np.int32 and te.dtype == np.int32 and q.dtype == np.uint16
        n_train, n_test = len(m.subset("train")), len(m.tracklets) - len(m.subset("train"))
        assert tr.shape == (n_train, 4) and te.shape == (n_test, 4)
        assert q.shape == (1, len(m.subset("query")))
        assert (np.diff(q[0].astype(int)) > 0).all() and q.min() >= 1 and q.max() <= n_test
        for name, mat in (("train_name.txt", tr), ("test_name.txt", te)):
            raw = (info / name).read_bytes()
            assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n")
            names = raw.decode().split("\r\n")[:-1]
            assert mat[0, 0] == 1 and mat[-1, 1] == len(names)
            assert (mat[1:, 0] == mat[:-1, 1] + 1).all()  # rows tile the name list
            assert names == sorted(names)
            for start, end, pid, cam in mat.tolist():
                prefix = {n[:11] for n in names[start - 1:end]}
                (p,) = prefix
                assert p[:4] == ("00-1" if pid == -1 else f"{pid:04d}") and p[5] == str(cam)
                frames = [int(n[12:15]) for n in names[start - 1:end]]
                assert frames == list(range(1, end - start + 2))
        assert {-1, 0} <= set(te[:, 2].tolist())
        assert (out / "mars/bbox_test/00-1").is_dir() and (out / "mars/bbox_test/0000").is_dir()
        assert all(p.name.startswith("00-1") for p in (out / "mars/bbox_test/00-1").glob("*.jpg"))
        # each query identity has gallery tracklets in another camera
        for row in (q[0].astype(int) - 1).tolist():
            pid, cam = te[row, 2], te[row, 3]
            others = [r for r in range(n_test) if r + 1 not in q[0] and te[r, 2] == pid]
            assert any(te[r, 3] != cam for r in others)
    elif layout == "ilidsvid":
        mat = loadmat(out / "ilids-vid/train-test people splits/train_test_splits_ilidsvid.mat")
        ls = mat["ls_set"]
        n = SETTINGS["ilidsvid"]["ids"]
        assert ls.dtype == np.float64 and ls.shape == (10, n)
        assert all(sorted(row) == list(range(1, n + 1)) for row in ls.astype(int).tolist())
        persons = sorted(os.listdir(out / "ilids-vid/i-LIDS-VID/sequences/cam1"))
        assert persons == sorted(os.listdir(out / "ilids-vid/i-LIDS-VID/sequences/cam2"))
        numbers = [int(p[6:]) for p in persons]
        assert numbers != list(range(1, n + 1)) or n < 3  # non-contiguous like the original
        rx = re.compile(r"cam([12])_(person\d{3})_(\d{5})\.png")
        for t in m.tracklets:
            parsed = [rx.fullmatch(Path(f).name) for f in t.frames]
            assert all(p and p[1] == str(t.camid + 1) and p[2] == t.meta["person"] for p in parsed)
            nums = [int(p[3]) for p in parsed]
            assert nums == list(range(nums[0], nums[0] + len(nums)))
    elif layout == "prid2011":
        splits = json.loads((out / "prid2011/splits_prid2011.json").read_text())
        assert len(splits) == 10 and all(set(s) == {"train", "test"} for s in splits)
        base = out / "prid2011/prid_2011/multi_shot"
        a, b = sorted(os.listdir(base / "cam_a")), sorted(os.listdir(base / "cam_b"))
        assert len(b) > len(a) and set(a) - set(b) == set()  # some persons only in cam_b
        long_both = sorted(p for p in set(a) & set(b)
                           if int(p[7:]) <= SETTINGS["prid2011"]["ids"]
                           and min(len(os.listdir(base / c / p)) for c in ("cam_a", "cam_b")) >= 27)
        for s in splits:
            assert sorted(s["train"] + s["test"]) == long_both
            assert len(s["test"]) == len(long_both) // 2
        assert len(long_both) < SETTINGS["prid2011"]["ids"]  # a short shared person is excluded
        for c in ("cam_a", "cam_b"):
            for p in os.listdir(base / c):
                names = sorted(os.listdir(base / c / p))
                assert names == [f"{k:04d}.png" for k in range(1, len(names) + 1)]
    elif layout == "dukev":
        rx = re.compile(r"(\d{4})_C(\d)_F(\d{4})_([XD])(\d{5})\.jpg")
        for t in m.tracklets:
            parsed = [rx.fullmatch(Path(f).name) for f in t.frames]
            assert all(p and int(p[1]) == t.pid and int(p[2]) == t.camid + 1 for p in parsed)
            idx = [int(p[3]) for p in parsed]
            assert idx == list(range(t.meta["first_index"], t.meta["first_index"] + len(idx)))
            assert {p[4] for p in parsed} == {"D" if t.kind == "distractor" else "X"}
            assert Path(t.frames[0]).parent.parent.name == f"{t.pid:04d}"
        query = m.subset("query")
        assert len({t.pid for t in query}) == len(query)  # one query tracklet per test id
        for q in query:
            assert any(g.pid == q.pid and g.camid != q.camid for g in m.subset("gallery"))
    else:
        root = out / "market1501" / "Market-1501-v15.09.15"
        names = {f: sorted(os.listdir(root / f)) for f in
                 ("bounding_box_train", "query", "bounding_box_test")}
        jpgs = {f: [n for n in v if n.endswith(".jpg")] for f, v in names.items()}
        rx = re.compile(r"(-1|\d{4})_c(\d)s(\d)_(\d{6})_01\.jpg")
        assert all(rx.fullmatch(n) for v in jpgs.values() for n in v)
        assert any(n.startswith("-1_c") for n in jpgs["bounding_box_test"])
        assert any(n.startswith("0000_c") for n in jpgs["bounding_box_test"])
        qkeys = [(n[:4], n[6]) for n in jpgs["query"]]
        assert len(qkeys) == len(set(qkeys))  # one query per identity and camera
        assert sum(len(v) for v in jpgs.values()) == len(m.tracklets)
