"""``videoreid data stats`` on a hand-built folder dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from videoreid.cli.data import length_histogram
from videoreid.cli.main import main


def _img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 8)).save(path)


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    # train: pid 5 (cam 0, 10 frames; cam 1, 2 frames), pid 9 (cam 2, 1 frame), junk (dropped)
    for f in range(10):
        _img(tmp_path / "train" / "5" / "0_a" / f"{f}.jpg")
    for f in range(2):
        _img(tmp_path / "train" / "5" / "1_a" / f"{f}.jpg")
    _img(tmp_path / "train" / "9" / "2_a" / "0.jpg")
    _img(tmp_path / "train" / "-1" / "0_a" / "0.jpg")
    # query: pid 5 cam 1 (20 frames); gallery: pid 5 cam 0 (3 frames), junk cam 1 (1 frame)
    for f in range(20):
        _img(tmp_path / "query" / "5" / "1_q" / f"{f}.jpg")
    for f in range(3):
        _img(tmp_path / "gallery" / "5" / "0_g" / f"{f}.jpg")
    _img(tmp_path / "gallery" / "-1" / "1_g" / "0.jpg")
    return tmp_path


def test_stats_output(folder_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", "--dataset", "folder", "--root", str(folder_root)]) == 0
    out = capsys.readouterr().out
    assert f"dataset folder (root {folder_root}), split 0 of 1, default protocol market" in out
    # first table: tracklets ids cameras frames junk distractors
    lines = [line.split() for line in out.splitlines()]
    counts = [line for line in lines if line and line[0] in ("train", "query", "gallery")]
    assert counts[0] == ["train", "3", "2", "3", "13", "0", "0"]
    assert counts[1] == ["query", "1", "1", "1", "20", "0", "0"]
    assert counts[2] == ["gallery", "2", "1", "2", "4", "1", "0"]
    # second table: min median mean max
    assert counts[3] == ["train", "1", "2.0", "4.3", "10"]
    assert counts[4] == ["query", "20", "20.0", "20.0", "20"]
    assert counts[5] == ["gallery", "1", "2.0", "2.0", "3"]
    hist = {line[0]: line[1:4] for line in lines if line and line[0] in ("1-7", "8-15", "16-31", ">=512")}
    assert hist == {"1-7": ["2", "0", "2"], "8-15": ["1", "0", "0"], "16-31": ["0", "1", "0"], ">=512": ["0", "0", "0"]}


def test_stats_errors(folder_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", "--dataset", "folder", "--root", str(folder_root), "--split", "1"]) == 2
    assert "folder has splits 0..0, not 1" in capsys.readouterr().err
    assert main(["data", "stats", "--dataset", "mars", "--root", str(folder_root)]) == 1
    assert "no dataset found under" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "stats", "--dataset", "nope", "--root", str(folder_root)])


def test_length_histogram() -> None:
    h = dict(length_histogram([1, 7, 8, 15, 16, 600, 512, 511]))
    assert h == {"1-7": 2, "8-15": 2, "16-31": 1, "32-63": 0, "64-127": 0, "128-255": 0, "256-511": 1, ">=512": 2}
