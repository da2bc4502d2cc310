"""AlignNet + TAP (Rambhatla & Jones 2019): part sets, composite maps, spatial softmax, TAP,
eq. 5-7 by hand, masks, gradients, shapes, configs, and a short synthetic training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from videoreid.engine.hooks import HookBase
from videoreid.modalities.pose import (
    BACKGROUND,
    KEYPOINT_NAMES,
    keypoint_index,
    paf_channels,
    render_pose_maps,
)
from videoreid.models.alignnet import (
    PART_CHANNELS,
    PART_JOINTS,
    PART_LIMBS,
    PART_NAMES,
    AlignNet,
    TemporalAttentionPooling,
    build_alignnet,
    composite_part_maps,
    part_weight_matrix,
)
from videoreid.models.factory import build_model

H, W = 128, 64  # resnet_tiny: 4 x 2 appearance grid; pose maps 16 x 8
CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "alignnet").glob("*.yaml"))


def tiny(**kw) -> AlignNet:
    torch.manual_seed(0)
    kw.setdefault("tap_hidden", 8)
    return build_alignnet(kw.pop("num_classes", 5), backbone="resnet_tiny", **kw)


def clip_batch(b: int = 2, t: int = 3, seed: int = 1, pose_hw=(16, 8)) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.randn(b, t, 3, H, W, generator=g),
            "pose": torch.rand(b, t, 57, *pose_hw, generator=g),
            "pids": torch.arange(b)}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from videoreid.data.synthetic import generate

    out = tmp_path_factory.mktemp("alignnet_synth")
    m = generate("mars", out, ids=4, cameras=2, seed=0, height=H, width=W, preset="easy",
                 tracklet_len=(6, 8), progress=False)
    return out, m


# ------------------------------------------------------------------------- part sets


def test_channel_sets_are_the_papers_joint_and_limb_lists():
    for part in PART_NAMES:
        want = [keypoint_index(j) for j in PART_JOINTS[part]]
        for a, b in PART_LIMBS[part]:
            want += list(paf_channels(a, b))
        assert sorted(PART_CHANNELS[part]) == sorted(want), part
        assert len(set(PART_CHANNELS[part])) == len(PART_CHANNELS[part])
    assert [len(PART_CHANNELS[p]) for p in PART_NAMES] == [6 + 10, 6 + 12, 6 + 8]
    used = [c for p in PART_NAMES for c in PART_CHANNELS[p]]
    assert len(used) == len(set(used))  # disjoint sets
    assert BACKGROUND not in used
    heat = sorted(c for c in used if c < 18)
    assert heat == list(range(18))  # every joint belongs to exactly one part
    assert {KEYPOINT_NAMES[c] for c in PART_CHANNELS["upper"] if c < 18} == {
        "nose", "neck", "r_eye", "l_eye", "r_ear", "l_ear"}


def test_composite_maps_average_their_channels():
    g = torch.Generator().manual_seed(0)
    pose = torch.randn(2, 57, 5, 4, generator=g)
    comp = composite_part_maps(pose, "signed")  # eq. 2 on the raw maps
    for i, part in enumerate(PART_NAMES):
        want = pose[:, list(PART_CHANNELS[part])].mean(1)
        torch.testing.assert_close(comp[:, i], want)
    a = composite_part_maps(pose)  # default: PAF magnitudes
    ch = list(PART_CHANNELS["middle"])
    want = torch.cat([pose[:, ch[:6]], pose[:, ch[6:]].abs()], 1).mean(1)
    torch.testing.assert_close(a[:, 1], want)
    torch.testing.assert_close(part_weight_matrix().sum(1), torch.ones(3))
    with pytest.raises(ValueError, match="57"):
        composite_part_maps(torch.zeros(1, 56, 2, 2))


def test_part_maps_are_spatial_distributions_at_appearance_resolution():
    model = tiny().eval()
    with torch.no_grad():
        out = model(clip_batch())
    parts = out.attention["parts"]
    assert parts.shape == (2, 3, 3, 4, 2)
    assert (parts >= 0).all()
    torch.testing.assert_close(parts.sum((-1, -2)), torch.ones(2, 3, 3))


def test_composite_maps_of_synthetic_frames_peak_in_head_torso_leg_bands(synth):
    """On every frame of the generator's (clean) tracklets the upper map peaks on the head
    (above the shoulder line), the middle map on the torso and arms (between the shoulder and
    hip lines), the lower map on the legs (between the hips and the ankles), and their
    centres of mass are ordered top to bottom. The body's bands are the thirds the sets
    describe; a crop's shoulders sit at ~20 % of its height, so frame thirds would not be."""
    _, m = synth
    stride, cell = 8, 8.0
    frames = 0
    for t in (t for t in m.tracklets if t.kind == "normal"):
        maps = torch.from_numpy(render_pose_maps(t.keypoints[:, None], (H, W), stride=stride))
        comp = composite_part_maps(maps)  # (T, 3, 16, 8), default paf_mode="abs"
        for f in range(len(t)):
            kp = t.keypoints[f]
            vis = kp[:, 2] > 0

            def y(names, fn, kp=kp, vis=vis):
                ys = [kp[keypoint_index(n), 1] for n in names if vis[keypoint_index(n)]]
                return fn(ys) if ys else None

            if None in (y(PART_JOINTS["upper"], min), y(["r_shoulder", "l_shoulder"], min),
                        y(["r_hip", "l_hip"], min), y(["r_ankle", "l_ankle"], min)):
                continue  # a landmark hidden (self-occlusion): no band to test against
            shoulders = y(["r_shoulder", "l_shoulder"], np.mean)
            hips = y(["r_hip", "l_hip"], np.mean)
            top = y(PART_JOINTS["upper"], min)
            bottom = y(["r_ankle", "l_ankle"], max)
            rows = comp[f].flatten(1).argmax(1) // comp.shape[-1]
            yc = stride / 2 - 0.5 + rows.numpy() * stride  # peak cell centres, px
            assert top - cell <= yc[0] <= shoulders + cell, (t.tracklet_id, f, yc, shoulders)
            assert shoulders - cell <= yc[1] <= hips + cell, (t.tracklet_id, f, yc)
            assert hips - cell <= yc[2] <= bottom + cell, (t.tracklet_id, f, yc)
            mass = comp[f].clamp_min(0)
            ys = torch.arange(comp.shape[-2], dtype=torch.float32)
            com = (mass.sum(-1) * ys).sum(-1) / mass.sum((-1, -2))
            assert com[0] < com[1] < com[2]
            frames += 1
    assert frames > 20


# ------------------------------------------------------------------------------ TAP


def test_tap_keeps_spatial_size_and_weights_lie_in_0_1():
    tap = TemporalAttentionPooling(16, hidden=8)
    x = torch.randn(5, 16, 4, 2) * 3
    inner = tap.conv2(tap.relu(tap.bn(tap.conv1(x))))
    assert inner.shape == (5, 8, 4, 2)  # 3x3 convs keep the size
    w = tap(x)
    assert w.shape == (5,)
    torch.testing.assert_close(w, torch.sigmoid(inner.mean((1, 2, 3))))
    model = tiny().train()
    out = model(clip_batch())
    for key in ("tap/appearance", "tap/parts"):
        assert out.attention[key].shape == (2, 3)
        assert ((out.attention[key] > 0) & (out.attention[key] < 1)).all()


@pytest.mark.parametrize("tap_pooling", ["weighted_mean", "sum"])
@pytest.mark.parametrize("part_pool", ["sum", "avg"])
def test_video_descriptor_is_eq_5_to_7_by_hand(tap_pooling, part_pool):
    model = tiny(tap_pooling=tap_pooling, part_pool=part_pool).eval()
    batch = clip_batch()
    with torch.no_grad():
        out = model(batch)
        fa = model.backbone(batch["images"].flatten(0, 1))  # (B*T, C, h, w)
    c, h, w = fa.shape[1:]
    fa = fa.view(2, 3, c, h, w)
    rbar = out.attention["parts"]  # (B, T, 3, h, w)
    wa, wp = out.attention["tap/appearance"], out.attention["tap/parts"]
    app = fa.mean((-1, -2))
    parts = (rbar[:, :, :, None] * fa[:, :, None]).sum((-1, -2))  # (B, T, 3, C)
    if part_pool == "avg":
        parts = parts / (h * w)
    norm_a = wa.sum(1, keepdim=True) if tap_pooling == "weighted_mean" else 1.0
    norm_p = wp.sum(1, keepdim=True) if tap_pooling == "weighted_mean" else 1.0
    want = [(wa[..., None] * app).sum(1) / norm_a]
    want += [(wp[..., None] * parts[:, :, r]).sum(1) / norm_p for r in range(3)]
    torch.testing.assert_close(out.embedding, torch.cat(want, 1), rtol=1e-4, atol=1e-5)
    assert out.embedding.shape == (2, 4 * c) and model.feat_dim == 4 * c


def test_avg_variants_and_baseline():
    batch = clip_batch()
    avg = tiny(temporal="avg").eval()
    with torch.no_grad():
        out = avg(batch)
    assert set(out.attention) == {"parts"} and out.embedding.shape == (2, 256)
    base = tiny(parts=False, temporal="avg").eval()
    assert base.modalities == ("images",) and base.feat_dim == 64
    with torch.no_grad():
        o = base({"images": batch["images"]})
        fa = base.backbone(batch["images"].flatten(0, 1)).view(2, 3, 64, 4, 2)
    torch.testing.assert_close(o.embedding, fa.mean((-1, -2)).mean(1), rtol=1e-5, atol=1e-6)
    assert o.attention == {}


def test_padded_frames_are_ignored():
    model = tiny().eval()
    batch = clip_batch(t=4)
    batch["frame_mask"] = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        out = model(batch)
        changed = dict(batch, images=batch["images"].clone(), pose=batch["pose"].clone())
        changed["images"][0, 3] += 5.0
        changed["pose"][1, 2:] = 0.3
        out2 = model(changed)
    torch.testing.assert_close(out.embedding, out2.embedding)
    assert (out.attention["tap/appearance"][~batch["frame_mask"]] == 0).all()
    assert (out.attention["tap/parts"][~batch["frame_mask"]] == 0).all()
    with pytest.raises(ValueError, match="no real frame"):
        model(dict(batch, frame_mask=torch.zeros(2, 4, dtype=torch.bool)))


def test_part_scale_sharpens_the_softmax():
    batch = clip_batch()
    soft = tiny().eval()
    sharp = tiny(part_scale=20.0).eval()
    with torch.no_grad():
        p1 = soft(batch).attention["parts"]
        p2 = sharp(batch).attention["parts"]
    assert p2.amax((-1, -2)).mean() > p1.amax((-1, -2)).mean()
    learned = tiny(learn_part_scale=True)
    assert "part_log_scale" in dict(learned.named_parameters())
    assert "part_log_scale" not in soft.state_dict()


# ------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("kw", [
    {},
    {"temporal": "avg"},
    {"parts": False, "temporal": "tap"},
    {"bnneck": True, "learn_part_scale": True, "paf_mode": "abs"},
    {"pose_source": "openpose", "pose_stages": 1},
])
def test_gradients_reach_every_parameter(kw):
    from videoreid.losses.objective import build_objective

    model = tiny(num_classes=4, **kw).train()
    batch = clip_batch(b=4, t=3, pose_hw=(16, 8))
    batch["pids"] = torch.tensor([0, 0, 1, 1])
    if model.pose_net is not None:
        del batch["pose"]
        assert model.modalities == ("images",)
    objective = build_objective([{"name": "ce"}, {"name": "margin_ranking", "margin": 0.3}],
                                num_classes=4, feat_dim=model.feat_dim)
    out = model(batch)
    objective(out, batch)["total"].backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, missing


def test_openpose_source_runs_the_network_on_the_clip_images():
    model = tiny(pose_source="openpose", pose_stages=1).eval()
    batch = clip_batch(t=2)
    with torch.no_grad():
        out = model({"images": batch["images"]})
        from videoreid.models.openpose import imagenet_to_openpose

        maps = model.pose_net(imagenet_to_openpose(batch["images"].flatten(0, 1)))
    assert maps.shape == (4, 57, 16, 8)
    want = model.part_attention(maps, (4, 2)).view(2, 2, 3, 4, 2)
    torch.testing.assert_close(out.attention["parts"], want)


# ----------------------------------------------------------------------- factory, configs


def test_factory_builds_alignnet_and_checks_arguments(tmp_path):
    m = build_model("alignnet", 7, backbone="resnet_tiny", tap_hidden=8)
    assert isinstance(m, AlignNet) and m.modalities == ("images", "pose")
    assert m.classifier.out_features == 7
    with pytest.raises(TypeError, match="valid"):
        build_model("alignnet", 7, backbone="resnet_tiny", tap=True)
    with pytest.raises(ValueError, match="temporal"):
        build_model("alignnet", 7, backbone="resnet_tiny", temporal="max")
    # synthetic pre-training -> fine-tuning: everything but the classifier transfers
    path = tmp_path / "pre.pt"
    torch.save({"model": tiny(num_classes=9).state_dict()}, path)
    fine = tiny(num_classes=3, init_from=str(path))
    torch.testing.assert_close(fine.backbone.conv1.weight, tiny(num_classes=9).backbone.conv1.weight)


def test_lr_groups_by_parameter_prefix():
    from videoreid.engine.builders import build_optimizer

    model = tiny(pose_source="openpose", pose_stages=1)
    groups = [{"match": "pose_net.", "lr_mult": 0.01}, {"match": "backbone.", "lr_mult": 0.1},
              {"match": "tap_", "lr_mult": 1.0}, {"match": "classifier.", "lr_mult": 10.0}]
    opt, _ = build_optimizer(model, None, name="sgd", lr=0.1, param_groups=groups)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == pytest.approx({"pose_net.": 1e-3, "backbone.": 1e-2, "tap_": 0.1,
                                 "classifier.": 1.0})
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters()))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_configs_load_and_validate(path):
    from videoreid.config import check_components, load_config

    cfg = load_config(path)
    check_components(cfg)
    assert cfg.model.name == "alignnet"
    assert cfg.data.test_plan.name == "chunks" and cfg.data.test_plan.args.get("length", 15) == 15
    assert cfg.eval.metric == "euclidean"
    names = [s["name"] for s in cfg.loss]
    assert names == ["ce", "margin_ranking"]
    model = build_model("alignnet", 4, **dict(cfg.model.args, backbone="resnet_tiny",
                                               pose_weights=None, pretrained=None,
                                               init_from=None, pose_stages=1))
    assert ("pose" in cfg.data.modalities) == ("pose" in model.modalities)


@pytest.mark.slow
def test_full_size_resnet50_shapes():
    model = build_alignnet(10).eval()
    batch = {"images": torch.randn(1, 2, 3, 256, 128), "pose": torch.rand(1, 2, 57, 32, 16)}
    with torch.no_grad():
        out = model(batch)
    assert out.embedding.shape == (1, 4 * 2048) and model.feat_dim == 8192
    assert out.attention["parts"].shape == (1, 2, 3, 8, 4)
    assert out.attention["tap/appearance"].shape == (1, 2)
    assert out.attention["tap/parts"].shape == (1, 2)
    op = build_alignnet(10, pose_source="openpose").eval()
    with torch.no_grad():
        o = op({"images": torch.randn(1, 2, 3, 128, 64)})
    assert o.embedding.shape == (1, 8192) and o.attention["parts"].shape == (1, 2, 3, 4, 2)


# ------------------------------------------------------------------- short training run


class _EpochLosses(HookBase):
    def __init__(self) -> None:
        self.totals: list[float] = []

    def after_epoch(self) -> None:
        self.totals.append(self.trainer.epoch_log["loss/total"])


def test_short_synthetic_training_lowers_loss_and_beats_chance(tmp_path):
    """Tiny backbone, keypoint source, synthetic MARS layout: the loss goes down and
    retrieval mAP beats the chance mAP of the same query/gallery sets."""
    from videoreid.config import config_from_dict
    from videoreid.data.temporal import build_plan
    from videoreid.engine import builders
    from videoreid.engine.extract import extract_features
    from videoreid.engine.trainer import Trainer
    from videoreid.evaluation.distance import compute_distance
    from videoreid.evaluation.rank import evaluate

    cfg = config_from_dict({
        "seed": 0,
        "output_dir": str(tmp_path / "run"),
        "data": {
            "dataset": "mars", "root": str(tmp_path / "data"), "height": H, "width": W,
            "synth": {"layout": "mars", "ids": 16, "cameras": 2, "preset": "easy",
                      "height": H, "width": W},
            "train_sampler": {"name": "consecutive", "args": {"length": 4}},
            "test_plan": {"name": "chunks", "args": {"length": 4}},
            "chunk_train": {"length": 15, "overlap": 5},
            "P": 4, "K": 2, "workers": 0, "augment": {"flip": 0.0},
            "modalities": ["pose"],
        },
        "model": {"name": "alignnet", "args": {"backbone": "resnet_tiny", "tap_hidden": 16}},
        "loss": [{"name": "ce"}, {"name": "margin_ranking", "margin": 0.3}],
        "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 5e-4},
    })
    split = builders.build_splits(cfg)[0]
    builders.seed_everything(cfg.seed)
    modalities = builders.build_modalities(cfg)
    train_tf, test_tf = builders.build_transforms(cfg)
    model = builders.build_model_from_config(cfg, split.num_train_pids)
    objective = builders.build_objective_from_config(cfg, model, split.num_train_pids)
    optimizer, _ = builders.build_optimizer(model, objective, lr=cfg.optim.lr,
                                            weight_decay=cfg.optim.weight_decay)
    loader = builders.build_train_loader(cfg, split.train, train_tf, modalities)
    recorder = _EpochLosses()
    trainer = Trainer(model, objective, optimizer, loader, epochs=6, iters_per_epoch=8,
                      hooks=[recorder], progress=False)
    trainer.train()
    assert recorder.totals[-1] < 0.9 * recorder.totals[0], recorder.totals

    plan = build_plan("chunks", length=4)
    qf = extract_features(model, split.query, plan, test_tf, modalities=modalities,
                          progress=False)
    gf = extract_features(model, split.gallery, plan, test_tf, modalities=modalities,
                          progress=False)
    q_pids = [t.pid for t in split.query]
    g_pids = [t.pid for t in split.gallery]
    q_cams = [t.camid for t in split.query]
    g_cams = [t.camid for t in split.gallery]
    result = evaluate(compute_distance(qf, gf), q_pids, g_pids, q_cams, g_cams,
                      protocol=split.protocol)
    rng = np.random.default_rng(0)
    chance = np.mean([
        evaluate(rng.random((len(q_pids), len(g_pids))), q_pids, g_pids, q_cams, g_cams,
                 protocol=split.protocol)["mAP"]
        for _ in range(20)
    ])
    assert result["mAP"] > chance + 0.15, (result["mAP"], chance)


# ------------------------------------------------- equation-level functional reference


def _tap_reference(tap: TemporalAttentionPooling, x: torch.Tensor) -> torch.Tensor:
    """Sec. 3.3 / eq. 8-9 with functional ops and the module's weights (eval-mode BN)."""
    import torch.nn.functional as F

    y = F.conv2d(x, tap.conv1.weight, None, padding=1)
    y = F.batch_norm(y, tap.bn.running_mean, tap.bn.running_var, tap.bn.weight, tap.bn.bias,
                     training=False, eps=tap.bn.eps)
    y = F.conv2d(F.relu(y), tap.conv2.weight, tap.conv2.bias, padding=1)
    return torch.sigmoid(y.mean((1, 2, 3)))


def alignnet_reference(model: AlignNet, batch: dict) -> torch.Tensor:
    """Eq. 1-9 recomputed from the paper with the module's weights: part sets from the joint
    and limb NAMES (pose layout, not PART_CHANNELS), |PAF| or raw maps (paf_mode), each
    composite map area-averaged to the appearance grid, THEN the spatial softmax of eq. 3,
    f_{a,r} = f_a ⊙ r̄_r, spatial pooling (sum or eq. 5's mean), TAP on f_{a,u} (or one per
    part) and on f_a, weighted mean or eq. 7's sum."""
    images, pose = batch["images"], batch["pose"]
    b, t = images.shape[:2]
    fa = model.backbone(images.flatten(0, 1))  # (N, C, h, w), eq. 1 (the backbone as given)
    n, c, h, w = fa.shape
    p = pose.flatten(0, 1)
    comps = []
    for part in PART_NAMES:
        heat = [p[:, keypoint_index(j)] for j in PART_JOINTS[part]]
        pafs = [p[:, ch] for a, bb in PART_LIMBS[part] for ch in paf_channels(a, bb)]
        if model.paf_mode == "abs":
            pafs = [m.abs() for m in pafs]
        comps.append(torch.stack(heat + pafs).mean(0))  # eq. 2
    r = torch.stack(comps, 1)  # (N, 3, hp, wp)
    hp, wp = r.shape[-2:]
    r = r.view(n, 3, h, hp // h, w, wp // w).mean((3, 5))  # area average to (h, w)
    e = torch.exp(r * model.part_log_scale.exp())
    rbar = e / e.sum((-1, -2), keepdim=True)  # eq. 3 at the appearance resolution
    app = fa.mean((-1, -2))  # eq. 5, appearance block
    parts = []
    for i in range(3):
        f = (fa * rbar[:, i:i + 1]).sum((-1, -2))  # eq. 4 + pooling
        parts.append(f / (h * w) if model.part_pool == "avg" else f)

    def pool(x, wts):  # eq. 7
        x, wts = x.view(b, t, -1), wts.view(b, t)
        s = (wts[..., None] * x).sum(1)
        return s / wts.sum(1, keepdim=True) if model.tap_pooling == "weighted_mean" else s

    wa = _tap_reference(model.tap_appearance, fa)
    if model.separate_part_tap:
        wps = [_tap_reference(model.tap_parts[i], fa * rbar[:, i:i + 1]) for i in range(3)]
    else:
        wps = [_tap_reference(model.tap_parts, fa * rbar[:, :1])] * 3  # eq. 8 on f_{a,u}
    return torch.cat([pool(app, wa)] + [pool(x, wp) for x, wp in zip(parts, wps, strict=True)], 1)


@pytest.mark.parametrize("kw", [
    {},
    {"separate_part_tap": True},
    {"tap_pooling": "sum", "part_pool": "avg", "paf_mode": "signed", "part_scale": 3.0},
])
def test_forward_equals_the_papers_equations_with_the_modules_weights(kw):
    model = tiny(**kw)
    with torch.no_grad():  # non-trivial eval-mode BN statistics in every TAP
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d) and m.num_features == 8:
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    model.eval()
    g = torch.Generator().manual_seed(3)
    batch = clip_batch(b=2, t=4)
    batch["pose"] = 3 * torch.rand(2, 4, 57, 16, 8, generator=g) - 0.5  # PAFs of both signs
    with torch.no_grad():
        got = model(batch).embedding
        want = alignnet_reference(model, batch)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    if kw.get("separate_part_tap"):
        out = model(batch)
        assert {"tap/parts/upper", "tap/parts/middle", "tap/parts/lower"} <= set(out.attention)
        assert len(model.tap_parts) == 3


def test_table_1b_variants_start_with_the_full_recipes_param_groups(caplog):
    """Baseline and AlignNet + AvgPool lack the pose net and TAP: their param groups are
    skipped with a warning; a group naming no module at all is still an error."""
    from videoreid.config import ConfigError, load_config
    from videoreid.engine.builders import build_optimizer

    cfg = load_config("alignnet/mars")
    groups = [dict(match=g.match, lr_mult=g.lr_mult) for g in cfg.optim.param_groups]
    for kw in ({"parts": False, "temporal": "avg"}, {"temporal": "avg"}):
        model = tiny(**kw)
        with caplog.at_level("WARNING"):
            opt, _ = build_optimizer(model, None, name="sgd", lr=0.1, param_groups=groups)
        assert "no such module" in caplog.text and "pose_net is None" in caplog.text
        assert "tap_appearance is None" in caplog.text
        names = {g["name"] for g in opt.param_groups}
        assert names - {"default"} == {"backbone.", "classifier."}
        assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
        caplog.clear()
    with pytest.raises(ConfigError, match="selects no trainable parameter"):
        build_optimizer(tiny(), None, param_groups=[{"match": "backbon."}])
    with pytest.raises(ConfigError, match="selects no trainable parameter"):
        build_optimizer(tiny(), None, param_groups=[{"match": "pose_nets."}])
