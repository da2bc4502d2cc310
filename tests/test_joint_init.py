"""Joint training over several datasets, and chained / per-split initialisation (init_from)."""

from __future__ import annotations

import json

import pytest
import torch

from videoreid.config import ConfigError, load_config

LAYOUTS = ("mars", "ilidsvid", "prid2011")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Tiny synthetic MARS, iLIDS-VID and PRID2011 in their official layouts (one root each)."""
    from videoreid.engine.builders import generate_in_subprocess

    base = tmp_path_factory.mktemp("joint")
    out = {}
    for layout in LAYOUTS:
        out[layout] = base / layout
        generate_in_subprocess(layout, out[layout], ids=8, height=64, width=32, preset="easy",
                               tracklet_len=[6, 8], keypoints=False, workers=1)
    return out


def joint_overrides(roots, *extra):
    mapping = ", ".join(f"{k}: {v}" for k, v in roots.items())
    return [
        f"data.dataset=[{', '.join(LAYOUTS)}]", f"data.root={{{mapping}}}",
        "data.dataset_args={prid2011: {min_frames: 4}}",
        "data.height=64", "data.width=32", "data.P=4", "data.K=2", "data.workers=0",
        "data.train_sampler.args.length=4", "data.test_plan.args.length=4",
        "model.args={backbone: resnet_tiny, aggregation: avg}", "schedule.name=constant",
        "optim.lr=1e-3", "train.epochs=1", "train.iters_per_epoch=2", "train.device=cpu",
        "train.progress=false", "train.eval_every=0", "eval.batch_size=8", *extra,
    ]


def test_joint_split_offsets_cameras_and_no_test_identity_in_training(roots):
    from videoreid.data.datasets.factory import build_dataset
    from videoreid.engine.builders import build_splits

    cfg = load_config(None, joint_overrides(roots, "data.split=3"))
    (joint,) = build_splits(cfg)
    assert [p.name for p in joint.parts] == list(LAYOUTS)
    own = {n: build_dataset(n, roots[n], **({"min_frames": 4} if n == "prid2011" else {}))
           for n in LAYOUTS}
    expected_splits = {"mars": 0, "ilidsvid": 3, "prid2011": 3}
    offset = 0
    for name in LAYOUTS:
        ref = own[name].split(expected_splits[name])
        mine = [t for t in joint.train if t.meta["dataset"] == name]
        assert len(mine) == len(ref.train)
        # pids shifted by the identities of the datasets before; cameras untouched
        assert joint.pid_offsets[name] == offset
        assert [t.pid - offset for t in mine] == [t.pid for t in ref.train]
        assert [t.meta["dataset_pid"] for t in mine] == [t.pid for t in ref.train]
        assert [t.camid for t in mine] == [t.camid for t in ref.train]
        # evaluated on its own split's query/gallery, under its own protocol
        part = joint.parts[LAYOUTS.index(name)]
        assert part.query == ref.query and part.gallery == ref.gallery
        assert part.protocol == ref.protocol and part.split_index == expected_splits[name]
        train_ids = {t.meta["orig_pid"] for t in ref.train}
        assert not train_ids & {t.pid for t in ref.query}  # split k's test ids: not trained
        offset += ref.num_train_pids
    assert joint.num_train_pids == offset
    assert sorted({t.pid for t in joint.train}) == list(range(offset))  # no collision
    # the P x K sampler draws from the union: one epoch reaches every dataset
    from videoreid.data.samplers import PKSampler

    sampler = PKSampler([t.pid for t in joint.train], P=2, K=2, seed=0)
    drawn = {joint.train[i].meta["dataset"] for batch in sampler for i in batch}
    assert drawn == set(LAYOUTS)


def test_joint_split_all_repeats_over_the_multi_split_index(roots):
    from videoreid.engine.builders import build_splits

    splits = build_splits(load_config(None, joint_overrides(roots, "data.split=all")))
    assert len(splits) == 10
    assert [s.split_index for s in splits] == list(range(10))
    for k, s in enumerate(splits):
        assert [p.split_index for p in s.parts] == [0, k, k]


def test_joint_training_reports_each_dataset_under_its_protocol(roots, tmp_path):
    from videoreid.engine.builders import train_from_config

    cfg = load_config(None, joint_overrides(roots, f"output_dir={tmp_path / 'run'}"))
    summary = train_from_config(cfg)
    names = sorted(summary["metrics"])
    for name, protocol in (("mars", "market"), ("ilidsvid", "cross_camera"),
                           ("prid2011", "cross_camera")):
        assert f"{name}/split0/{protocol}/mAP" in names, names
        assert (tmp_path / "run" / f"features_{name}.npz").is_file()
    assert summary["protocol"] == {"mars": "market", "ilidsvid": "cross_camera",
                                   "prid2011": "cross_camera"}
    table = summary["table"]
    assert all(n in table for n in LAYOUTS)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["datasets"] == sorted(LAYOUTS)


def test_joint_config_is_validated(roots):
    with pytest.raises(ConfigError, match=r"missing \['prid2011'\]"):
        load_config(None, ["data.dataset=[mars, prid2011]", "data.root={mars: a}"])
    with pytest.raises(ConfigError, match="maps a dataset name"):
        load_config(None, ["data.dataset=[mars, prid2011]", "data.dataset_args={seed: 1}"])
    with pytest.raises(ConfigError, match="own protocol"):
        load_config(None, ["data.dataset=[mars, prid2011]", "eval.protocol=market"])
    with pytest.raises(ConfigError, match="listed more than once"):
        load_config(None, ["data.dataset=[mars, mars]"])
    with pytest.raises(ConfigError, match="unknown dataset 'marz'"):
        load_config(None, ["data.dataset=[marz, prid2011]"])
    with pytest.raises(ConfigError, match="needs data.dataset to be a list"):
        load_config(None, ["data.root={mars: a}"])


# ------------------------------------------------------------------------ init_from


def stage1_checkpoints(tmp_path, cfg, splits, dataset_cfg_overrides):
    """Fake stage-1 run: split k's checkpoint holds fresh weights + 0.01 (k + 1)."""
    from videoreid.config import save_resolved
    from videoreid.engine.builders import build_model_from_config

    run = tmp_path / "stage1"
    for s in splits:
        model = build_model_from_config(cfg, s.num_train_pids)
        state = {k: v + 0.01 * (s.split_index + 1) if v.is_floating_point() else v
                 for k, v in model.state_dict().items()}
        (run / f"split{s.split_index}" / "checkpoints").mkdir(parents=True)
        torch.save({"model": state}, run / f"split{s.split_index}" / "checkpoints" / "epoch_0001.pt")
    save_resolved(load_config(None, dataset_cfg_overrides), run)
    return run


BASELINE = "model.args={backbone: resnet_tiny, aggregation: avg}"
STAN = ("model={name: stan, args: {_replace_: true, backbone: resnet_tiny, K: 2, d: 8, "
        "embed_dim: 16, num_frames: 4}}")  # a model with its own init_from argument
MODEL_FOR = {"train.init_from": BASELINE, "model.args.init_from": STAN}


def prid_overrides(roots, *extra, model=BASELINE):
    return ["data.dataset=prid2011", f"data.root={roots['prid2011']}",
            "data.dataset_args={min_frames: 4}", "data.split=all",
            "data.height=64", "data.width=32", "data.P=2", "data.K=2", "data.workers=0",
            "data.train_sampler.args.length=4", "data.test_plan.args.length=4",
            model, "train.epochs=0",
            "train.device=cpu", "train.progress=false", "eval.batch_size=8", *extra]


@pytest.mark.parametrize("key", ["train.init_from", "model.args.init_from"])
def test_each_split_starts_from_its_own_earlier_stage(roots, tmp_path, key):
    from videoreid.engine.builders import build_splits, train_split

    model = MODEL_FOR[key]
    cfg = load_config(None, prid_overrides(roots, model=model))
    splits = build_splits(cfg)
    run = stage1_checkpoints(tmp_path, cfg, splits, prid_overrides(roots, model=model))
    template = f"{run}/split{{split}}/checkpoints/epoch_0001.pt"
    cfg2 = load_config(None, prid_overrides(roots, f"{key}={template}", model=model))
    for s in build_splits(cfg2)[:2]:  # 10 splits; two make the point
        out = train_split(cfg2, s, tmp_path / "stage2" / f"split{s.split_index}",
                          torch.device("cpu"))
        saved = torch.load(run / f"split{s.split_index}" / "checkpoints" / "epoch_0001.pt",
                           weights_only=True)["model"]
        others = torch.load(run / f"split{(s.split_index + 1) % 2}" / "checkpoints" /
                            "epoch_0001.pt", weights_only=True)["model"]
        state = out["trainer"].module.state_dict()
        assert state.keys() == saved.keys()
        for name, v in state.items():
            assert torch.equal(v, saved[name]), (s.split_index, name)
        assert not torch.equal(state["backbone.conv1.weight"], others["backbone.conv1.weight"])
        if key == "model.args.init_from":
            assert out["trainer"].module.__class__.__name__ == "STAN"


def test_multi_split_run_without_placeholder_is_refused(roots, tmp_path):
    from videoreid.engine.builders import build_splits

    cfg = load_config(None, prid_overrides(roots))
    run = stage1_checkpoints(tmp_path, cfg, build_splits(cfg), prid_overrides(roots))
    fixed = f"{run}/split0/checkpoints/epoch_0001.pt"
    for key, model in MODEL_FOR.items():
        with pytest.raises(ConfigError, match="test identities") as e:
            build_splits(load_config(None, prid_overrides(roots, f"{key}={fixed}", model=model)))
        assert "test identities" in str(e.value) and "{split}" in str(e.value)
    # one split (data.split=K) with a fixed file is the user's explicit choice
    build_splits(load_config(None, prid_overrides(roots, f"train.init_from={fixed}",
                                                  "data.split=1")))
    with pytest.raises(ConfigError, match="placeholder"):
        build_splits(load_config(None, prid_overrides(roots, "train.init_from=a{fold}.pt")))


def test_pretraining_on_other_data_may_initialise_every_split(roots, tmp_path):
    """The earlier run's config says it trained on another dataset: no leak, allowed."""
    from videoreid.engine.builders import build_splits

    cfg = load_config(None, prid_overrides(roots))
    run = stage1_checkpoints(tmp_path, cfg, build_splits(cfg)[:1],
                             ["data.dataset=mars", f"data.root={roots['mars']}"])
    fixed = f"{run}/split0/checkpoints/epoch_0001.pt"
    assert len(build_splits(load_config(None, prid_overrides(roots, f"train.init_from={fixed}")))) == 10
