"""Plateau schedule: hand-computed drops, the learning rate per epoch, exact resume."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from videoreid.config import ConfigError, load_config
from videoreid.engine.checkpoint import CheckpointManager
from videoreid.engine.hooks import CheckpointHook, HookBase
from videoreid.engine.plateau import PlateauLRHook, PlateauTracker
from videoreid.engine.trainer import Trainer
from videoreid.models.output import ReIDOutput

# epoch losses, and by hand with patience 2, threshold 0 (improve = strictly below best):
#   e0 5.0 best | e1 4.0 best | e2 4.5 bad1 | e3 4.2 bad2 -> DROP 1 | e4 4.1 bad1 |
#   e5 3.0 best | e6 3.5 bad1 | e7 3.4 bad2 -> DROP 2 | e8 3.4 bad1 | e9 2.9 best
LOSSES = [5.0, 4.0, 4.5, 4.2, 4.1, 3.0, 3.5, 3.4, 3.4, 2.9]
DROP_AFTER = {3, 7}


def test_tracker_hand_sequence():
    t = PlateauTracker(patience=2, threshold=0.0, gamma=0.1)
    drops = [e for e, v in enumerate(LOSSES) if t.step(v)]
    assert set(drops) == DROP_AFTER
    assert t.drops == 2 and t.best == 2.9 and t.bad_epochs == 0
    assert t.factor == pytest.approx(0.01)


def test_tracker_threshold_floor_and_patience_one():
    # relative threshold 10 %: 3.7 is not below 4 × 0.9 = 3.6, so it is a bad epoch
    t = PlateauTracker(patience=1, threshold=0.1, gamma=0.5, min_factor=0.3)
    assert [t.step(v) for v in (4.0, 3.7, 3.5, 3.5, 3.5)] == [False, True, False, True, False]
    # the 4th epoch drops to 0.25 -> floored at 0.3; at the floor no further drop is counted
    assert t.drops == 2 and t.factor == pytest.approx(0.3)
    with pytest.raises(ValueError, match="patience"):
        PlateauTracker(patience=0)


class Scripted(nn.Module):
    """Objective whose loss at call n is ``LOSSES[n]`` (+ 0 × the model output, for a graph).

    The call counter is a buffer, so a checkpoint restores it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, out: ReIDOutput, batch: dict) -> dict[str, torch.Tensor]:
        value = LOSSES[int(self.calls)]
        self.calls += 1
        return {"total": out.embedding.sum() * 0.0 + value}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, batch: dict) -> ReIDOutput:
        return ReIDOutput(embedding=self.fc(batch["images"].flatten(1)))


class Record(HookBase):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def after_epoch(self) -> None:
        self.lrs.append(self.trainer.epoch_log["lr"])


class Stop(Exception):
    pass


class StopAfter(HookBase):
    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def after_epoch(self) -> None:
        if self.trainer.epoch + 1 == self.epochs:
            raise Stop


def make_trainer(run_dir, extra=()) -> tuple[Trainer, Record]:
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD([{"params": model.parameters(), "lr": 0.5, "base_lr": 0.5}], lr=0.5)
    rec = Record()
    batches = [{"images": torch.ones(2, 3), "pids": torch.tensor([0, 1])}]
    hooks = [PlateauLRHook(patience=2, threshold=0.0, gamma=0.1), rec,
             CheckpointHook(CheckpointManager(run_dir / "ckpt", keep_last=20), every=1), *extra]
    trainer = Trainer(model, Scripted(), opt, batches, epochs=len(LOSSES), iters_per_epoch=1,
                      progress=False, hooks=hooks)
    return trainer, rec


def expected_lrs() -> list[float]:
    lrs, f = [], 1.0
    for e in range(len(LOSSES)):
        lrs.append(0.5 * f)
        if e in DROP_AFTER:
            f *= 0.1
    return lrs


def test_learning_rate_drops_after_plateau_and_resume_is_exact(tmp_path):
    full, rec = make_trainer(tmp_path / "a")
    full.train()
    assert rec.lrs == pytest.approx(expected_lrs())  # 0.5 ×4, 0.05 ×4, 0.005 ×2

    # interrupted after epoch 5 (inside the first plateau's aftermath, bad1 pending) ...
    part, _ = make_trainer(tmp_path / "b", extra=[StopAfter(5)])
    with pytest.raises(Stop):
        part.train()
    resumed, rec_b = make_trainer(tmp_path / "b")
    resumed.resume(tmp_path / "b" / "ckpt" / "epoch_0005.pt")
    assert resumed.hooks[0].tracker.state_dict() == {"best": 4.0, "bad_epochs": 1, "drops": 1}
    resumed.train()
    assert rec_b.lrs == pytest.approx(expected_lrs()[5:])
    assert resumed.hooks[0].tracker.state_dict() == full.hooks[0].tracker.state_dict()


def test_plateau_config_and_validation():
    cfg = load_config(None, ["schedule.name=plateau", "schedule.patience=3"], check=False)
    assert cfg.schedule.patience == 3 and cfg.schedule.monitor == "loss/total"
    with pytest.raises(ConfigError, match="patience"):
        load_config(None, ["schedule.name=plateau", "schedule.patience=0"], check=False)
    with pytest.raises(ConfigError, match="monitor"):
        load_config(None, ["schedule.name=plateau", "schedule.monitor=mars/mAP"], check=False)
