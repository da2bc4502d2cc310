"""Two runs in one folder, occupied folders, start-up checks before any write, honest resume."""

from __future__ import annotations

import csv
import json
import os
import socket
import time

import pytest
import yaml
from faultlib import assert_same_run, copy_run, run_cli

from videoreid.cli.main import main
from videoreid.config import ConfigError, load_config
from videoreid.engine.run_dir import check_run_folder


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "tensorboard" not in p.parts}


@pytest.mark.slow
def test_second_run_into_a_busy_folder_is_refused_at_once(tiny_cfg, reference, tmp_path,
                                                          capsys):
    out, go = tmp_path / "run", tmp_path / "go"
    first = run_cli("train", str(tiny_cfg), f"output_dir={out}", fault="pause-epoch", n=1,
                    env={"FAULT_GO": str(go)}, wait=False)
    try:
        deadline = time.monotonic() + 600
        while not (tmp_path / "go.ready").exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for extra in ([], ["train.resume=true"]):
            assert main(["train", str(tiny_cfg), f"output_dir={out}", *extra]) == 2
            err = capsys.readouterr().err
            assert f"pid {first.pid} on host {socket.gethostname()}" in err, err
            assert "in use by another run" in err and "Traceback" not in err
    finally:
        go.write_text("go")
        _, err = first.communicate(timeout=900)
    assert first.returncode == 0, err[-2000:]
    assert_same_run(out, reference)  # the refused runs changed nothing


def test_new_run_refuses_a_folder_holding_a_run_and_changes_nothing(tiny_cfg, reference,
                                                                    tmp_path, capsys):
    run = copy_run(reference, tmp_path / "run")
    before = _snapshot(run)
    assert main(["train", str(tiny_cfg), f"output_dir={run}"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "train.resume=true" in err
    assert _snapshot(run) == before


@pytest.mark.parametrize("override,needle", [
    ("data.root=/nonexistent/videoreid-data", "/nonexistent/videoreid-data"),
    ("data.split=3", "data.split=3"),
    ("model.args.backbone=resnet_nope", "resnet_nope"),
])
def test_nothing_is_written_before_start_up_checks_pass(tiny_cfg, tmp_path, capsys, override,
                                                        needle):
    out = tmp_path / "never"
    overrides = [override] + (["data.synth=null"] if "data.root" in override else [])
    assert main(["train", str(tiny_cfg), f"output_dir={out}", *overrides]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_resume_refuses_config_changes_unless_named_and_applies_them(tiny_cfg, reference,
                                                                     tmp_path, capsys):
    run = copy_run(reference, tmp_path / "run")
    before = _snapshot(run)
    changed = ["train.resume=true", "train.epochs=4", "optim.lr=1e-3"]
    assert main(["train", str(tiny_cfg), f"output_dir={run}", *changed]) == 2
    err = capsys.readouterr().err
    assert "optim.lr: 0.003 (run) -> 0.001 (now)" in err and "train.epochs: 3 (run) -> 4" in err
    assert _snapshot(run) == before  # refused before writing anything
    assert main(["train", str(tiny_cfg), f"output_dir={run}", *changed,
                 "train.resume_overrides=[optim.lr]"]) == 2
    err = capsys.readouterr().err
    assert "train.epochs" in err and "optim.lr:" not in err.split("differs")[1].split("resume with")[0]
    assert main(["train", str(tiny_cfg), f"output_dir={run}", *changed,
                 "train.resume_overrides=[optim.lr, train.epochs]"]) == 0
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [r["lr"] for r in rows] == ["0.003", "0.003", "0.003", "0.001"]  # really applied
    assert "optim.lr: 0.003 -> 0.001" in rows[3]["resumed"] and not rows[2]["resumed"]
    for a, b in zip(rows[:3], csv.DictReader(open(reference / "log.csv")), strict=False):
        assert a["loss/total"] == b["loss/total"]  # the earlier rows are kept as they were
    info = json.loads((run / "run_info.json").read_text())
    assert info["resumes"][-1]["changes"] == {"optim.lr": [0.003, 0.001], "train.epochs": [3, 4]}
    assert info["git_revision"]  # the original record is kept
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 0.003 and saved["train"]["epochs"] == 3  # never rewritten
    later = yaml.safe_load((run / "config.from_epoch_0004.yaml").read_text())
    assert later["optim"]["lr"] == 0.001 and later["train"]["epochs"] == 4
    # the changed config is now the run's own: resuming again with it needs no names
    cfg = load_config(tiny_cfg, [f"output_dir={run}", *changed])
    assert check_run_folder(cfg) == {}
    with pytest.raises(ConfigError, match="not config keys"):
        check_run_folder(load_config(tiny_cfg, [f"output_dir={run}", *changed,
                                                "train.resume_overrides=[optim.lrr]"]))


def test_stale_lock_file_of_a_dead_run_does_not_block(tiny_cfg, reference, tmp_path):
    run = copy_run(reference, tmp_path / "run")
    (run / ".run.lock").write_text(json.dumps({"pid": 999999, "host": "elsewhere"}))
    os.utime(run / ".run.lock")
    cfg = load_config(tiny_cfg, [f"output_dir={run}", "train.resume=true"])
    assert check_run_folder(cfg) == {}  # no live holder: flock is released with its process
