"""Dataset layouts that used to load silently wrong, and file permissions of what we write."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.io
from PIL import Image

from videoreid.data.datasets.dukev import DukeMTMCVideoReID
from videoreid.data.datasets.ilidsvid import ILIDSVID

PERSONS = ["person001", "person002", "person005", "person010"]


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 8), (10, 20, 30)).save(path)


def _ilids(root, persons_cam1, persons_cam2, n_ids):
    base = root / "ilids-vid"
    for cam, persons in ((1, persons_cam1), (2, persons_cam2)):
        for p in persons:
            for f in (1, 2):
                _img(base / "i-LIDS-VID" / "sequences" / f"cam{cam}" / p / f"cam{cam}_{p}_{f:05d}.png")
    (base / "train-test people splits").mkdir(parents=True)
    ls = np.stack([np.roll(np.arange(1, n_ids + 1), s) for s in range(2)]).astype(np.float64)
    scipy.io.savemat(str(base / "train-test people splits" / "train_test_splits_ilidsvid.mat"),
                     {"ls_set": ls})
    return root


def test_ilidsvid_folder_not_covered_by_splits_is_an_error(tmp_path):
    ok = _ilids(tmp_path / "ok", PERSONS, PERSONS, 4)
    assert ILIDSVID(ok).num_splits == 2
    # an extra cam1 folder sorts first and would shift every index by one
    extra = _ilids(tmp_path / "extra", ["person000", *PERSONS], ["person000", *PERSONS], 4)
    with pytest.raises(ValueError, match=r"not covered by any split \(person010\)"):
        ILIDSVID(extra)
    cam2 = _ilids(tmp_path / "cam2", PERSONS, [*PERSONS, "person300"], 4)
    with pytest.raises(ValueError, match="person300"):
        ILIDSVID(cam2)


def test_ilidsvid_error_reaches_the_cli_as_one_line(tmp_path, capsys):
    from videoreid.cli.main import main

    root = _ilids(tmp_path / "extra", ["person000", *PERSONS], ["person000", *PERSONS], 4)
    assert main(["train", "baseline/ilidsvid", f"data.root={root}",
                 f"output_dir={tmp_path / 'run'}", "train.device=cpu"]) == 2
    err = capsys.readouterr().err
    assert "not covered by any split" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_duke_duplicate_frame_index_in_a_tracklet_is_an_error(tmp_path):
    base = tmp_path / "dukemtmc-vidreid" / "DukeMTMC-VideoReID"
    for sub, pid in (("train", 1), ("query", 2), ("gallery", 2)):
        for f in (1, 2):
            _img(base / sub / f"{pid:04d}" / "0001" / f"{pid:04d}_C1_F{f:04d}_X{100 + f}.jpg")
    DukeMTMCVideoReID(tmp_path)
    _img(base / "train" / "0001" / "0001" / "0001_C1_F0002_X999.jpg")  # same F, other video frame
    with pytest.raises(ValueError, match="same frame index F0002"):
        DukeMTMCVideoReID(tmp_path)


def test_generated_and_written_files_are_readable_by_others(tmp_path, reference):
    from videoreid.data.synthetic import generate

    umask = os.umask(0o022)
    os.umask(umask)
    want = 0o666 & ~umask
    generate("ilidsvid", tmp_path / "gen", ids=4, progress=False)
    files = [p for p in (tmp_path / "gen").rglob("*") if p.is_file()]
    files += [p for p in reference.rglob("*") if p.is_file() and p.name != ".run.lock"]
    assert len(files) > 20
    bad = [(str(p), oct(p.stat().st_mode & 0o777)) for p in files
           if p.stat().st_mode & 0o777 != want]
    assert not bad, bad[:5]
