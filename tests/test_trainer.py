"""Trainer, hooks and checkpoints: schedules, freezing, AMP, NaN stop, exact resume, learning."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

from videoreid.engine.builders import build_optimizer
from videoreid.engine.checkpoint import (
    CheckpointManager,
    from_safe,
    load_checkpoint,
    save_checkpoint,
    to_safe,
)
from videoreid.engine.hooks import (
    CheckpointHook,
    CSVLogHook,
    HookBase,
    LRScheduleHook,
    ParamFreezeHook,
    lr_factor,
)
from videoreid.engine.trainer import NonFiniteLossError, Trainer
from videoreid.losses.objective import build_objective
from videoreid.models.output import ReIDOutput

NUM_CLASSES = 4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models are slower with several threads on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class ToyNet(nn.Module):
    """Backbone/head split (for parameter groups) with dropout (so RNG state matters)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(2), nn.Linear(3 * 4 * 4, 16), nn.ReLU(),
                                      nn.Dropout(0.3))
        self.head = nn.Linear(16, 16)
        self.classifier = nn.Linear(16, NUM_CLASSES)
        self.dtypes: list[torch.dtype] = []

    def forward(self, batch: dict) -> ReIDOutput:
        emb = self.head(self.backbone(batch["images"]).mean(1))
        self.dtypes.append(emb.dtype)
        return ReIDOutput(embedding=emb, logits=self.classifier(emb) if self.training else None)


def toy_batches(n: int = 5, b: int = 8, poison: int | None = None) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        images = torch.randn(b, 2, 3, 4, 4, generator=g)
        pids = torch.arange(b) % NUM_CLASSES
        images = images + pids.view(b, 1, 1, 1, 1).float()  # learnable
        if i == poison:
            images[0, 0, 0, 0, 0] = float("nan")
        out.append({"images": images, "pids": pids})
    return out


def toy_trainer(tmp_path, epochs=3, hooks=(), batches=None, amp="none", groups=()):
    torch.manual_seed(0)
    model = ToyNet()
    objective = build_objective([{"name": "ce"}], NUM_CLASSES, 16)
    opt, specs = build_optimizer(model, objective, name="adam", lr=1e-2, weight_decay=1e-4,
                                 param_groups=groups)
    all_hooks = [LRScheduleHook(name="multistep", milestones=[2], gamma=0.1,
                                warmup_epochs=1, warmup_factor=0.1)]
    if specs:
        all_hooks.append(ParamFreezeHook(specs))
    all_hooks += [CSVLogHook(tmp_path / "log.csv"), *hooks]
    return Trainer(model, objective, opt, batches or toy_batches(), epochs=epochs, amp=amp,
                   grad_clip=10.0, hooks=all_hooks, run_dir=tmp_path, progress=False)


# --------------------------------------------------------------------- schedules


def test_lr_factor_hand_values():
    assert lr_factor(0.0, name="constant") == 1.0
    assert lr_factor(199.9, name="step", step_size=200) == 1.0
    assert lr_factor(200.0, name="step", step_size=200, gamma=0.1) == pytest.approx(0.1)
    assert lr_factor(450.0, name="step", step_size=200, gamma=0.1) == pytest.approx(0.01)
    ms = {"name": "multistep", "milestones": [10, 20], "gamma": 0.5}
    assert [lr_factor(e, **ms) for e in (9.99, 10.0, 19.5, 20.0)] == [1.0, 0.5, 0.5, 0.25]
    assert lr_factor(5.0, name="cosine", epochs=10) == pytest.approx(0.5)
    assert lr_factor(10.0, name="cosine", epochs=10, min_factor=0.1) == pytest.approx(0.1)
    # linear warm-up from warmup_factor to 1 over warmup_epochs, multiplied into the decay
    w = {"name": "constant", "warmup_epochs": 4.0, "warmup_factor": 0.2}
    assert lr_factor(0.0, **w) == pytest.approx(0.2)
    assert lr_factor(2.0, **w) == pytest.approx(0.6)
    assert lr_factor(4.0, **w) == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(0.0, name="poly")


def test_schedule_sets_lr_per_step_for_every_group(tmp_path):
    seen = []

    class Record(HookBase):
        def after_step(self):
            seen.append([g["lr"] for g in self.trainer.optimizer.param_groups])

    t = toy_trainer(tmp_path, epochs=3, hooks=[Record()],
                    groups=[{"match": "backbone.", "lr_mult": 0.1}])
    t.train()
    # 5 steps per epoch; warm-up over epoch 0 (factor 0.1 → 1), ×0.1 from epoch 2
    expect = [1e-2 * lr_factor(e + i / 5, name="multistep", milestones=[2], gamma=0.1,
                               warmup_epochs=1, warmup_factor=0.1)
              for e in range(3) for i in range(5)]
    names = [g["name"] for g in t.optimizer.param_groups]
    assert names == ["default", "backbone."]
    np.testing.assert_allclose([s[0] for s in seen], expect, rtol=1e-12)
    np.testing.assert_allclose([s[1] for s in seen], [0.1 * e for e in expect], rtol=1e-12)


# ------------------------------------------------------------ groups and freezing


def test_frozen_group_and_staged_freezing(tmp_path):
    snapshots = []

    class Snap(HookBase):
        def after_epoch(self):
            snapshots.append({k: v.clone() for k, v in self.trainer.module.state_dict().items()})

    t = toy_trainer(tmp_path, epochs=3, hooks=[Snap()], groups=[
        {"match": "head.", "frozen": True},
        {"match": "backbone.", "freeze_epochs": 2},
    ])
    init = {k: v.clone() for k, v in t.module.state_dict().items()}
    opt_params = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
    assert all(id(p) not in opt_params for p in t.module.head.parameters())
    t.train()
    for e, snap in enumerate(snapshots):
        assert torch.equal(snap["head.weight"], init["head.weight"])  # frozen for good
        assert not torch.equal(snap["classifier.weight"], init["classifier.weight"])
        moved = not torch.equal(snap["backbone.1.weight"], init["backbone.1.weight"])
        assert moved == (e >= 2)  # fixed for epochs 0 and 1, trained in epoch 2
    with pytest.raises(Exception, match="selects no trainable parameter"):
        toy_trainer(tmp_path, groups=[{"match": "nonexistent."}])


# ---------------------------------------------------------------------- AMP


def test_bf16_autocast_on_cpu_and_fp16_rejected(tmp_path):
    t = toy_trainer(tmp_path, epochs=1, amp="bf16")
    t.train()
    assert set(t.module.dtypes) == {torch.bfloat16}  # the model ran under autocast
    assert all(p.dtype == torch.float32 for p in t.module.parameters())  # master weights
    assert math.isfinite(t.epoch_log["loss/total"])
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        toy_trainer(tmp_path, amp="fp16")


# -------------------------------------------------------------- checkpoints


def test_checkpoint_manager_keeps_last_k_and_loads_safely(tmp_path):
    mgr = CheckpointManager(tmp_path / "ck", keep_last=2)
    rng_state = np.random.default_rng(3).bit_generator.state
    for epoch in range(1, 5):
        mgr.save(epoch, {"w": torch.full((2,), float(epoch)), "np": np.arange(epoch),
                         "rng": rng_state, "tuple": (1, np.float32(2.5))})
    assert [e for e, _ in mgr.list()] == [3, 4]
    assert mgr.latest().name == "epoch_0004.pt"
    state = load_checkpoint(mgr.latest())  # weights_only=True under the hood
    assert torch.equal(state["w"], torch.full((2,), 4.0))
    np.testing.assert_array_equal(state["np"], np.arange(4))
    assert state["np"].dtype == np.arange(4).dtype
    assert state["rng"] == rng_state and state["tuple"] == (1, 2.5)
    assert not list((tmp_path / "ck").glob(".*tmp"))
    assert from_safe(to_safe({"a": [np.ones(2)]}))["a"][0].tolist() == [1.0, 1.0]
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    # a pickle that is not plain data is refused (weights_only)
    save_path = tmp_path / "evil.pt"
    torch.save({"obj": Trainer}, save_path)
    with pytest.raises(Exception):  # noqa: B017 - torch raises UnpicklingError
        load_checkpoint(save_path)
    save_checkpoint(save_path, {"obj": 1})  # atomically replaced by plain data
    assert load_checkpoint(save_path) == {"obj": 1}


# ------------------------------------------------------------------ NaN stop


def test_nan_loss_stops_with_checkpoint_and_message(tmp_path):
    t = toy_trainer(tmp_path, epochs=3, batches=toy_batches(poison=3))
    before = {}

    class Keep(HookBase):
        def before_step(self):
            before.update({k: v.clone() for k, v in self.trainer.module.state_dict().items()})

    t.register_hooks([Keep()])
    with pytest.raises(NonFiniteLossError) as e:
        t.train()
    msg = str(e.value)
    assert "non-finite loss at epoch 1, step 4/5 (global step 4)" in msg
    assert "ce=nan" in msg and "nan_stop.pt" in msg and "optim.lr" in msg
    state = load_checkpoint(tmp_path / "nan_stop.pt")
    assert state["epoch_complete"] is False and state["iter"] == 3
    for k, v in state["model"].items():  # the bad step changed nothing
        assert torch.equal(v, before[k]) and torch.equal(v, t.module.state_dict()[k])


# -------------------------------------------------------------- exact resume


class Interrupt(Exception):
    pass


class KillAfter(HookBase):
    """Simulates a crash right after the checkpoint of epoch ``n`` was written."""

    def __init__(self, n: int) -> None:
        self.n = n

    def after_epoch(self):
        if self.trainer.epoch + 1 == self.n:
            raise Interrupt


def test_toy_kill_and_resume_equals_uninterrupted(tmp_path):
    def run(folder, kill=None, resume=False, restore_rng=True):
        mgr = CheckpointManager(folder / "ck", keep_last=10)
        hooks = [CheckpointHook(mgr, every=1)] + ([KillAfter(kill)] if kill else [])
        t = toy_trainer(folder, epochs=4, hooks=hooks)
        if resume:
            t.resume(mgr.path_for(2))
            if not restore_rng:
                t._pending_rng = None
        try:
            t.train()
        except Interrupt:
            return None
        return t

    full = run(tmp_path / "a")
    assert run(tmp_path / "b", kill=2) is None
    assert run(tmp_path / "c", kill=2) is None
    assert CheckpointManager(tmp_path / "b" / "ck").latest().name == "epoch_0002.pt"
    resumed = run(tmp_path / "b", resume=True)
    assert resumed.start_epoch == 2
    for k, v in full.module.state_dict().items():
        assert torch.equal(v, resumed.module.state_dict()[k]), k
    for a, b in zip(full.optimizer.state_dict()["state"].values(),
                    resumed.optimizer.state_dict()["state"].values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    rows_a = list(csv.DictReader(open(tmp_path / "a" / "log.csv")))
    rows_b = list(csv.DictReader(open(tmp_path / "b" / "log.csv")))
    assert len(rows_a) == len(rows_b) == 4
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert ra["loss/total"] == rb["loss/total"] and ra["lr"] == rb["lr"]
    # the test is sensitive: dropout draws from the torch RNG, so a resume that does not
    # restore the RNG state continues differently
    unrestored = run(tmp_path / "c", resume=True, restore_rng=False)
    assert not torch.equal(unrestored.module.backbone[1].weight,
                           full.module.backbone[1].weight)


# ---------------------------------------------- full pipeline on synthetic data


@pytest.fixture(scope="module")
def synth_cfg(tmp_path_factory):
    """A tiny synthetic MARS dataset and a tiny-model config that trains in seconds."""
    from videoreid.config import load_config
    from videoreid.engine.builders import prepare_data_root

    root = tmp_path_factory.mktemp("synth")
    overrides = [
        f"data.root={root}",
        "data.synth={layout: mars, ids: 24, cameras: 3, preset: easy, seed: 0, height: 64,"
        " width: 32, args: {keypoints: false, tracklet_len: [8, 16]}}",
        "data.height=64", "data.width=32", "data.P=4", "data.K=4", "data.workers=0",
        "data.augment.pad=4",
        "model.args={backbone: resnet_tiny, aggregation: avg}",
        "optim.lr=3e-3", "schedule.name=constant",
        "train.epochs=3", "train.iters_per_epoch=4", "train.device=cpu", "train.progress=false",
        "train.checkpoint_every=1", "train.keep_last=5", "train.eval_every=2",
        "eval.protocol=market",
    ]
    cfg = load_config(None, overrides)
    prepare_data_root(cfg)
    return cfg, overrides


def _override(cfg_and_overrides, *extra):
    from videoreid.config import load_config

    return load_config(None, [*cfg_and_overrides[1], *extra])


def test_kill_and_resume_equals_uninterrupted_full_pipeline(synth_cfg, tmp_path):
    from videoreid.engine.builders import build_splits, train_split

    cfg = _override(synth_cfg, "data.workers=1")
    (split,) = build_splits(cfg)
    full = train_split(cfg, split, tmp_path / "a", torch.device("cpu"))
    with pytest.raises(Interrupt):
        train_split(cfg, split, tmp_path / "b", torch.device("cpu"), extra_hooks=[KillAfter(2)])
    assert (tmp_path / "b" / "checkpoints" / "epoch_0002.pt").is_file()
    assert not (tmp_path / "b" / "features.npz").exists()
    resumed = train_split(_override(synth_cfg, "data.workers=1", "train.resume=true"), split,
                          tmp_path / "b", torch.device("cpu"))
    assert resumed["trainer"].start_epoch == 2
    a, b = full["trainer"].module.state_dict(), resumed["trainer"].module.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full["metrics"] == resumed["metrics"] and full["metrics"]
    np.testing.assert_array_equal(full["features"].features, resumed["features"].features)
    rows_a = list(csv.DictReader(open(tmp_path / "a" / "log.csv")))
    rows_b = list(csv.DictReader(open(tmp_path / "b" / "log.csv")))
    assert len(rows_a) == len(rows_b) == 3
    for ra, rb in zip(rows_a, rows_b, strict=True):
        timing = ("time_s", "clips_per_s", "data_wait_s", "data_wait_frac")
        ra = {k: v for k, v in ra.items() if k not in timing}
        rb = {k: v for k, v in rb.items() if k not in timing}
        assert ra == rb
    # a fresh run into a folder with checkpoints is refused rather than mixed
    from videoreid.config import ConfigError

    with pytest.raises(ConfigError, match="train.resume=true"):
        train_split(cfg, split, tmp_path / "b", torch.device("cpu"))


def test_short_training_lowers_loss_and_beats_chance(synth_cfg, tmp_path, capsys):
    """`videoreid train` on synthetic data; then `extract` and `evaluate` on its checkpoint."""
    import json

    from videoreid.cli.main import main
    from videoreid.config import save_resolved
    from videoreid.evaluation.chance import chance_metrics
    from videoreid.evaluation.features import FeatureSet

    run = tmp_path / "run"
    cfg_path = save_resolved(_override(synth_cfg), tmp_path)
    assert main(["train", str(cfg_path), f"output_dir={run}", "train.epochs=24",
                 "train.eval_every=0", "train.checkpoint_every=24"]) == 0
    for name in ("config.yaml", "run_info.json", "metrics.json", "log.csv", "features.npz",
                 "checkpoints/epoch_0024.pt"):
        assert (run / name).is_file(), name
    info = json.loads((run / "run_info.json").read_text())
    assert info["torch"] == torch.__version__ and info["device"] == "cpu"
    assert info["git_revision"]  # a hash or "unknown"
    rows = list(csv.DictReader(open(run / "log.csv")))
    first, last = float(rows[0]["loss/total"]), float(rows[-1]["loss/total"])
    assert last < 0.7 * first, (first, last)
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    mAP = metrics["mars/split0/market/mAP"]
    fs = FeatureSet.load(run / "features.npz")
    chance = chance_metrics(fs, "market")["mAP"]
    assert mAP > max(2 * chance, chance + 0.2), (mAP, chance)  # measured: 0.45 vs 0.14

    # the CLIs reproduce the run's features and metrics from its own folder
    out = tmp_path / "again.npz"
    assert main(["extract", str(run / "config.yaml"), "--checkpoint", str(run),
                 "--out", str(out)]) == 0
    np.testing.assert_array_equal(FeatureSet.load(out).features, fs.features)
    capsys.readouterr()
    assert main(["evaluate", str(run / "config.yaml"), "--checkpoint",
                 str(run / "checkpoints" / "epoch_0024.pt"), "--out",
                 str(tmp_path / "eval.json")]) == 0
    printed = capsys.readouterr().out
    assert "market" in printed and "mars" in printed
    res = json.loads((tmp_path / "eval.json").read_text())["results"][0]
    assert res["mAP"] == pytest.approx(mAP, abs=1e-12) and res["protocol"] == "market"
    assert main(["evaluate", str(run / "config.yaml"), "--checkpoint", str(run),
                 "--protocol", "official"]) == 0
    assert "official" in capsys.readouterr().out
