"""Param groups with ``frozen`` / ``freeze_epochs``: weights AND BatchNorm statistics stay fixed.

A frozen backbone whose BatchNorm layers stay in train mode keeps moving its running
statistics (and so its features) although no weight changes: the frozen stage of STAN's
recipe would then not be "the CNN fixed". These tests train a tiny model for a few steps
and compare the backbone's whole state dict (weights, running mean/var, batch counters).
"""

from __future__ import annotations

import torch

from videoreid.engine.builders import build_optimizer
from videoreid.engine.hooks import HookBase, ParamFreezeHook
from videoreid.engine.trainer import Trainer
from videoreid.losses.objective import build_objective
from videoreid.models.factory import build_model

NUM_IDS = 3


def _batches(n: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"images": torch.randn(4, 2, 3, 32, 16, generator=g),
             "pids": torch.tensor([0, 0, 1, 2]), "camids": torch.zeros(4, dtype=torch.long)}
            for _ in range(n)]


def _setup(groups):
    torch.manual_seed(0)
    model = build_model("baseline", NUM_IDS, backbone="resnet_tiny", pretrained="none",
                        bnneck=False)
    objective = build_objective([{"name": "ce"}], num_classes=NUM_IDS, feat_dim=64)
    opt, specs = build_optimizer(model, objective, name="sgd", lr=0.1, param_groups=groups)
    return model, objective, opt, specs


class _TrainModeEveryStep(HookBase):
    """What an evaluation hook does: switch the model to eval and back to train mid-epoch."""

    def after_step(self) -> None:
        self.trainer.module.eval()
        self.trainer.module.train()


class _Snapshot(HookBase):
    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []
        self.bn_training: list[bool] = []

    def before_step(self) -> None:
        bn = self.trainer.module.backbone.bn1
        self.bn_training.append(bn.training)

    def after_epoch(self) -> None:
        self.states.append({k: v.clone() for k, v in self.trainer.module.backbone.state_dict().items()})


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_frozen_group_keeps_weights_and_running_stats_bit_identical():
    model, objective, opt, specs = _setup([{"match": "backbone.", "frozen": True}])
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.classifier.weight.detach().clone()
    snap = _Snapshot()
    Trainer(model, objective, opt, _batches(3), epochs=2, hooks=[ParamFreezeHook(specs),
            _TrainModeEveryStep(), snap], progress=False).train()
    after = model.backbone.state_dict()
    assert _same(before, after)  # weights, running_mean/var, num_batches_tracked
    assert not torch.equal(model.classifier.weight, head_before)  # the rest did train
    assert snap.bn_training == [False] * 6
    assert model.training  # only the frozen BatchNorms are in eval mode


def test_freeze_epochs_then_the_backbone_trains_and_its_statistics_move():
    model, objective, opt, specs = _setup([{"match": "backbone.", "freeze_epochs": 1}])
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    snap = _Snapshot()
    Trainer(model, objective, opt, _batches(3), epochs=2, hooks=[ParamFreezeHook(specs),
            _TrainModeEveryStep(), snap], progress=False).train()
    first, second = snap.states
    assert _same(before, first)
    assert snap.bn_training == [False] * 3 + [True] * 3
    for key in ("conv1.weight", "bn1.weight", "bn1.running_mean", "bn1.running_var",
                "layer4.0.bn3.running_var"):
        assert not torch.equal(first[key], second[key]), key
    assert int(second["bn1.num_batches_tracked"]) == 3
