"""Damaged, truncated, empty, foreign checkpoints; a full filesystem."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import uuid

import pytest
import torch
from faultlib import assert_same_run, copy_run

from videoreid.cli.main import main
from videoreid.engine.checkpoint import (
    MANIFEST,
    CheckpointManager,
    load_checkpoint,
    read_manifest,
    save_checkpoint,
)
from videoreid.utils.errors import CheckpointError


class Foreign:  # a pickled class: weights_only loading must refuse it
    pass


def _truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _zero(p):
    p.write_bytes(bytes(p.stat().st_size))


def _empty(p):
    p.write_bytes(b"")


def _flip(p):
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))


def _text(p):
    p.write_text("model weights live elsewhere\n")


def _pickled_object(p):
    torch.save({"model": Foreign()}, p)


DAMAGE = {
    "truncated": (_truncate, "not a readable PyTorch file|SHA-256"),
    "zeroed": (_zero, "SHA-256|not a readable"),
    "empty": (_empty, "is empty"),
    "one byte flipped": (_flip, "SHA-256"),
    "text file": (_text, "SHA-256|not a readable"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_checkpoint_error_names_file_and_problem(tmp_path, kind):
    path = save_checkpoint(tmp_path / "epoch_0001.pt", {"model": {"w": torch.ones(64, 64)}})
    damage, pattern = DAMAGE[kind]
    damage(path)
    with pytest.raises(CheckpointError, match=pattern) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and "weights_only" not in str(e.value)
    # also without a manifest entry (a file from elsewhere): torch's own failure, reworded
    (tmp_path / MANIFEST).unlink()
    if kind != "one byte flipped":
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(path)
        assert str(path) in str(e.value) and "weights_only" not in str(e.value)


def test_foreign_checkpoints_are_refused_with_reason(tmp_path):
    objects = tmp_path / "objects.pt"
    _pickled_object(objects)
    with pytest.raises(CheckpointError, match="other than tensors") as e:
        load_checkpoint(objects)
    assert str(objects) in str(e.value) and "weights_only" not in str(e.value)
    plain = tmp_path / "plain.pt"
    torch.save(torch.zeros(3), plain)
    with pytest.raises(CheckpointError, match="holds a Tensor"):
        load_checkpoint(plain)
    raw = tmp_path / "raw.pt"
    with open(raw, "wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(CheckpointError, match=str(raw)):
        load_checkpoint(raw)


def test_manifest_is_sha256sum_compatible_and_rotation_forgets(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=2)
    for e in (1, 2, 3):
        mgr.save(e, {"model": {"w": torch.full((4,), float(e))}})
    names = sorted(p.name for p in tmp_path.glob("epoch_*.pt"))
    assert names == ["epoch_0002.pt", "epoch_0003.pt"]
    entries = read_manifest(tmp_path)
    assert sorted(entries) == names
    for n in names:
        assert entries[n] == hashlib.sha256((tmp_path / n).read_bytes()).hexdigest()
    if subprocess.run(["which", "sha256sum"], capture_output=True).returncode == 0:
        assert subprocess.run(["sha256sum", "-c", MANIFEST], cwd=tmp_path,
                              capture_output=True).returncode == 0
    umask = os.umask(0o022)
    os.umask(umask)
    for p in tmp_path.iterdir():
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p


def test_resume_skips_damaged_newest_and_ends_identical(tiny_cfg, reference, tmp_path, capsys):
    run = copy_run(reference, tmp_path / "run")
    ck = run / "checkpoints"
    _truncate(ck / "epoch_0003.pt")
    _flip(ck / "epoch_0002.pt")
    before_1 = (ck / "epoch_0001.pt").read_bytes()
    assert main(["train", str(tiny_cfg), f"output_dir={run}", "train.resume=true"]) == 0
    assert_same_run(run, reference)  # retrained epochs 2-3 from epoch 1: bit-identical
    assert (ck / "epoch_0001.pt").read_bytes() == before_1
    import json

    resumes = json.loads((run / "run_info.json").read_text())["resumes"]
    skipped = resumes[-1]["splits"][0]["skipped"]
    assert [s[0].rsplit("/", 1)[-1] for s in skipped] == ["epoch_0003.pt", "epoch_0002.pt"]
    assert "SHA-256" in skipped[1][1]
    note = open(run / "log.csv").read()
    assert "skipped damaged epoch_0003.pt, epoch_0002.pt" in note


def test_no_intact_checkpoint_and_damaged_evaluate_checkpoint_exit_2(tiny_cfg, reference,
                                                                      tmp_path, capsys):
    run = copy_run(reference, tmp_path / "run")
    for p in (run / "checkpoints").glob("epoch_*.pt"):
        _zero(p)
    assert main(["train", str(tiny_cfg), f"output_dir={run}", "train.resume=true"]) == 2
    err = capsys.readouterr().err
    assert "no intact checkpoint in" in err and "Traceback" not in err
    assert main(["evaluate", str(tiny_cfg), "--checkpoint",
                 str(run / "checkpoints" / "epoch_0003.pt")]) == 2
    err = capsys.readouterr().err
    assert "epoch_0003.pt is damaged" in err and "Traceback" not in err
    weights_only = tmp_path / "weights.pt"
    torch.save({"model": {}}, weights_only)
    assert main(["train", str(tiny_cfg), f"output_dir={tmp_path / 'other'}",
                 f"train.resume={weights_only}"]) == 2
    assert "not a videoreid training checkpoint" in capsys.readouterr().err


@pytest.fixture
def small_fs(tmp_path):
    """A 700 KiB tmpfs (root only); skipped where it cannot be mounted."""
    mnt = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full filesystem needs `mount -t tmpfs` (root); not root here")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_names_the_path_keeps_what_was_written_and_resumes(tiny_cfg, reference,
                                                                     small_fs, capsys):
    out = small_fs / "run"
    assert main(["train", str(tiny_cfg), f"output_dir={out}", "train.keep_last=5"]) == 2
    err = capsys.readouterr().err
    assert "no space left on device" in err and str(out) in err and "Traceback" not in err
    ck = out / "checkpoints"
    assert not [p for p in ck.iterdir() if p.name.endswith(".tmp")]
    intact = read_manifest(ck)
    assert "epoch_0001.pt" in intact
    for name in intact:
        load_checkpoint(ck / name)  # verifies the hash
    assert subprocess.run(["mount", "-o", "remount,size=16m", str(small_fs)]).returncode == 0
    assert main(["train", str(tiny_cfg), f"output_dir={out}", "train.resume=true"]) == 0
    assert_same_run(out, reference)
