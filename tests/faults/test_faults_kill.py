"""SIGKILL at chosen and at random points; the resumed run must equal the undisturbed one."""

from __future__ import annotations

import random
import signal
import time

import pytest
from faultlib import assert_same_run, run_cli

from videoreid.cli.main import main
from videoreid.engine.checkpoint import MANIFEST, read_manifest


def _resume(cfg, out) -> None:
    assert main(["train", str(cfg), f"output_dir={out}", "train.resume=true"]) == 0


@pytest.mark.parametrize("fault,n,survivor", [
    ("in-write", 2, "epoch_0001.pt"),         # half of epoch 2's bytes in a temporary
    pytest.param("before-rename", 3, "epoch_0002.pt",  # complete temporary, 2nd save of ep. 2
                 marks=pytest.mark.slow),
    ("before-manifest", 2, None),             # epoch 2 in place, its hash not yet recorded
    ("in-eval", 1, "epoch_0002.pt"),          # inside epoch 2's evaluation
])
def test_kill_at_a_named_point_then_resume_is_bit_identical(tiny_cfg, reference, tmp_path,
                                                            fault, n, survivor):
    out = tmp_path / "run"
    proc = run_cli("train", str(tiny_cfg), f"output_dir={out}", fault=fault, n=n)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    ck = out / "checkpoints"
    written = sorted(p.name for p in ck.iterdir())
    if fault in ("in-write", "before-rename"):
        assert any(p.endswith(".tmp") for p in written), written  # the killed write's leftover
    if survivor is not None:
        assert survivor in read_manifest(ck), written  # what was written before is intact
    before = {p.name: p.read_bytes() for p in ck.glob("epoch_*.pt")}
    _resume(tiny_cfg, out)
    assert not [p for p in ck.iterdir() if p.name.endswith(".tmp")]  # stale temporaries removed
    assert_same_run(out, reference)
    for name in before:  # nothing written before the kill was lost
        assert (ck / name).is_file(), name
    assert (ck / "epoch_0001.pt").read_bytes() == before["epoch_0001.pt"]  # nor rewritten
    assert set(read_manifest(ck)) == {p.name for p in ck.glob("epoch_*.pt")}


def test_checkpoint_written_before_a_failing_evaluation(tiny_cfg, reference, tmp_path,
                                                        monkeypatch):
    """An evaluation that raises loses no epoch: resume re-runs it and ends identical."""
    import videoreid.engine.builders as builders

    real = builders.evaluate_model

    def broken(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("evaluation exploded")

    out = tmp_path / "run"
    monkeypatch.setattr(builders, "evaluate_model", broken)
    with pytest.raises(RuntimeError, match="evaluation exploded"):
        main(["train", str(tiny_cfg), f"output_dir={out}"])
    assert (out / "checkpoints" / "epoch_0002.pt").is_file()
    assert not (out / "checkpoints" / "epoch_0003.pt").exists()
    from videoreid.engine.checkpoint import load_checkpoint

    assert "pending_epoch_log" in load_checkpoint(out / "checkpoints" / "epoch_0002.pt")
    monkeypatch.setattr(builders, "evaluate_model", real)
    _resume(tiny_cfg, out)
    assert_same_run(out, reference)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_a_random_time_then_resume_is_bit_identical(tiny_cfg, reference, tmp_path,
                                                               seed):
    """A kill at a seeded random moment (start-up, training, checkpoint, evaluation, end)."""
    out = tmp_path / "run"
    delay = random.Random(seed).uniform(1.0, 5.0)
    proc = run_cli("train", str(tiny_cfg), f"output_dir={out}", wait=False)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=300)
    if not out.exists():  # killed before any start-up check passed: nothing to resume
        assert main(["train", str(tiny_cfg), f"output_dir={out}"]) == 0
    else:
        _resume(tiny_cfg, out)
    assert_same_run(out, reference)
    ck = out / "checkpoints"
    assert not [p for p in ck.iterdir() if p.name.endswith(".tmp")]
    assert (ck / MANIFEST).is_file()
