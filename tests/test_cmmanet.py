"""CMMANet (Hu, Liu, Huang 2020): MAM maps and eq. 1–5, the diversity / concentration terms on
the model's maps, Random Interval Sampling (sec. III-A), masks, gradients, configs, shapes
(tiny backbone; one full-size ResNet-50 check marked slow) and a short synthetic training run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videoreid.data.temporal import RandomInterval, RestrictedRandom, build_sampler
from videoreid.engine.hooks import HookBase
from videoreid.losses.attention import ConcentrationLoss, DiversityLoss
from videoreid.losses.objective import build_objective
from videoreid.models.cmmanet import (
    MAM_KEYS,
    CMMANet,
    MultiAttentionModule,
    build_cmmanet,
    shortcut_max,
    shortcut_max_reference,
)
from videoreid.models.factory import build_model
from videoreid.models.output import ReIDOutput

H, W = 128, 64  # resnet_tiny: layer3 8 × 4 (64 ch), layer4 4 × 2 (64 ch)
ROOT = Path(__file__).resolve().parents[1]


def tiny(**kw) -> CMMANet:
    torch.manual_seed(0)
    kw.setdefault("num_classes", 5)
    kw.setdefault("hidden", 16)
    return build_cmmanet(backbone="resnet_tiny", **kw)


def clip(b: int = 2, t: int = 3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 3, H, W, generator=g)


def att_out(maps: torch.Tensor, key: str = "spatial/mam2") -> ReIDOutput:
    return ReIDOutput(embedding=torch.zeros(1, 1), attention={key: maps})


FULL_LOSSES = [
    {"name": "ce"},
    {"name": "triplet", "margin": 0.3},
    {"name": "diversity", "key": "spatial/mam1"},
    {"name": "concentration", "key": "spatial/mam1"},
    {"name": "diversity", "key": "spatial/mam2"},
    {"name": "concentration", "key": "spatial/mam2"},
]


# --------------------------------------------------------------------------- MAM (eq. 1–4)


def test_each_submodule_map_is_a_distribution_with_documented_shapes():
    model = tiny().eval()
    with torch.no_grad():
        out = model({"images": clip()})
    assert set(out.attention) == {"spatial/mam1", "spatial/mam2"}
    a1, a2 = out.attention["spatial/mam1"], out.attention["spatial/mam2"]
    assert a1.shape == (2, 3, 4, 8, 4) and a2.shape == (2, 3, 4, 4, 2)
    for a in (a1, a2):
        assert (a >= 0).all()
        torch.testing.assert_close(a.sum((-2, -1)), torch.ones(a.shape[:3]))
        # random init: the maps depend on the features (not uniform)
        assert (a - 1 / (a.shape[-1] * a.shape[-2])).abs().max() > 1e-4
    assert out.embedding.shape == (2, 64) and out.metric_feature is out.embedding
    assert out.logits is None  # eval mode
    assert model.attention_keys == ("spatial/mam1", "spatial/mam2")


def test_submodule_response_by_hand():
    """Eq. 1–2 for submodule k: Conv1×1(D→hidden) → ReLU → Conv1×1(hidden→1), softmax over h·w."""
    torch.manual_seed(2)
    mam = MultiAttentionModule(in_channels=6, K=3, hidden=5)
    f = torch.randn(2, 6, 4, 3)
    a = mam.attention(f)
    for k in range(3):
        w1 = mam.hidden.weight[k * 5:(k + 1) * 5, :, 0, 0]
        b1 = mam.hidden.bias[k * 5:(k + 1) * 5]
        w2 = mam.score.weight[k, :, 0, 0]
        cells = f.flatten(2).transpose(1, 2)  # (N, h·w, D)
        r = F.relu(cells @ w1.T + b1) @ w2  # eq. 1
        torch.testing.assert_close(a[:, k].flatten(1), torch.softmax(r, dim=1))  # eq. 2
    assert mam.score.bias is None  # cancels in the softmax


def test_shortcut_max_on_a_constructed_example():
    """Eq. 3–4 on numbers worked out by hand: one position, D = 3 channels, K = 2."""
    f = torch.tensor([2.0, -1.0, 0.0]).reshape(1, 3, 1, 1)
    a = torch.tensor([0.25, 0.75]).reshape(1, 2, 1, 1)
    # x_1 = (0.5, -0.25, 0), x_2 = (1.5, -0.75, 0); max = (1.5, -0.25, 0); f̂ = (3.5, -1.25, 0)
    expected = torch.tensor([3.5, -1.25, 0.0]).reshape(1, 3, 1, 1)
    torch.testing.assert_close(shortcut_max(f, a), expected)
    torch.testing.assert_close(shortcut_max_reference(f, a), expected)


def test_shortcut_max_equals_literal_formula_with_gradients():
    torch.manual_seed(3)
    f = torch.randn(4, 7, 5, 3, dtype=torch.float64, requires_grad=True)
    a = torch.softmax(torch.randn(4, 3, 15, dtype=torch.float64), -1).reshape(4, 3, 5, 3)
    a.requires_grad_(True)
    fast = shortcut_max(f, a)
    ref = shortcut_max_reference(f, a)
    torch.testing.assert_close(fast, ref)
    g = torch.randn_like(ref)
    grads_fast = torch.autograd.grad(fast, (f, a), g)
    grads_ref = torch.autograd.grad(ref, (f, a), g)
    for x, y in zip(grads_fast, grads_ref, strict=True):
        torch.testing.assert_close(x, y)


def test_mam_forward_is_eq_3_4_on_its_own_maps():
    torch.manual_seed(4)
    mam = MultiAttentionModule(in_channels=8, K=4, hidden=6)
    f = torch.relu(torch.randn(3, 8, 4, 2))
    fhat, a = mam(f)
    x = torch.stack([a[:, k:k + 1] * f for k in range(4)], dim=1)  # eq. 3, (N, K, D, h, w)
    torch.testing.assert_close(fhat, f + x.amax(dim=1))  # eq. 4


def test_video_feature_is_spatial_average_of_temporal_average():
    """Eq. 5 recomputed from the stages: stem..layer3 → MAM1 → layer4 → MAM2, then averages."""
    model = tiny().eval()
    images = clip(b=2, t=3)
    with torch.no_grad():
        out = model({"images": images})
        bb = model.backbone
        frames = images.flatten(0, 1)
        x = bb.forward_stages(frames, "stem", "layer3")
        x, a1 = model.mams["layer3"](x)
        x = bb.forward_stages(x, "layer4", "layer4")
        fhat, a2 = model.mams["layer4"](x)
        fhat = fhat.reshape(2, 3, *fhat.shape[1:])
        ref = fhat.mean(dim=1).mean(dim=(-2, -1))  # TemporalAvg, then SpatialAvg
    torch.testing.assert_close(out.embedding, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.attention["spatial/mam1"], a1.reshape(2, 3, 4, 8, 4))
    torch.testing.assert_close(out.attention["spatial/mam2"], a2.reshape(2, 3, 4, 4, 2))


def test_ablation_variants_and_per_mam_k():
    single = tiny(mams=("layer4",))
    base = tiny(mams=())
    with torch.no_grad():
        out_s = single.eval()({"images": clip(b=1, t=2)})
        out_b = base.eval()({"images": clip(b=1, t=2)})
    assert set(out_s.attention) == {"spatial/mam2"}
    assert out_b.attention == {}
    # Baseline = plain backbone + temporal/spatial average
    with torch.no_grad():
        feats = base.backbone(clip(b=1, t=2).flatten(0, 1))
    torch.testing.assert_close(out_b.embedding, feats.mean((0, 2, 3))[None], rtol=1e-5, atol=1e-6)
    per = tiny(K=(2, 3), mams=("layer3", "layer4"))
    assert per.mams["layer3"].K == 2 and per.mams["layer4"].K == 3
    # K pairs with the stage as given, whatever the order
    rev = tiny(K=(3, 2), mams=("layer4", "layer3"))
    assert rev.stages == ("layer3", "layer4") and rev.mams["layer3"].K == 2
    with pytest.raises(ValueError, match="layer2"):
        tiny(mams=("layer2",))
    with pytest.raises(ValueError, match="K="):
        tiny(K=(2, 3), mams=("layer4",))
    with pytest.raises(TypeError, match="sequence"):
        tiny(mams="layer4")


# --------------------------------------------------------------------------- masks


def test_padded_frames_change_nothing_and_get_uniform_maps():
    model = tiny().eval()
    images = clip(b=2, t=4)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    with torch.no_grad():
        padded = model({"images": images, "frame_mask": mask})
        short = model({"images": images[:1, :2]})
        full = model({"images": images[1:]})
    torch.testing.assert_close(padded.embedding[:1], short.embedding, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(padded.embedding[1:], full.embedding, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(padded.attention["spatial/mam2"][0, 2:],
                               torch.full((2, 4, 4, 2), 1 / 8))
    torch.testing.assert_close(padded.attention["spatial/mam1"][0, :2],
                               short.attention["spatial/mam1"][0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no real frame"):
        model({"images": images, "frame_mask": torch.zeros(2, 4, dtype=torch.bool)})


def test_attention_losses_skip_padded_frames():
    model = tiny().eval()
    images = clip(b=2, t=4)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    with torch.no_grad():
        out = model({"images": images, "frame_mask": mask})
    for loss in (ConcentrationLoss("spatial/mam1"), DiversityLoss("spatial/mam2")):
        maps = out.attention[loss.key]
        per_image = [float(loss(att_out(maps[b, t][None, None], loss.key), {}))
                     for b in range(2) for t in range(4) if mask[b, t]]
        got = float(loss(out, {"frame_mask": mask}))
        assert got == pytest.approx(sum(per_image) / len(per_image), rel=1e-5)


# --------------------------------------------------------------------------- losses (eq. 7–10)


def test_concentration_loss_hand_value_on_a_constructed_layer4_map():
    """K = 4 maps on the paper's 8 × 4 layer4 grid: stripes are rows {0,1}, {2,3}, {4,5}, {6,7}.

    Map 0: uniform → Â_00 = 8/32 = 1/4.  Map 1: 0.6 on row 2, 0.4 on row 7 → Â_11 = 0.6.
    Map 2: all on row 5 → Â_22 = 1.  Map 3: half on row 6, half spread over rows 0–1 →
    Â_33 = 0.5.  Loss = −log(1/4) − log(0.6) − log(1) − log(0.5).
    """
    a = torch.zeros(4, 8, 4)
    a[0] = 1 / 32
    a[1, 2, 0], a[1, 7, 3] = 0.6, 0.4
    a[2, 5, 1] = 1.0
    a[3, 6, 2] = 0.5
    a[3, :2] = 0.5 / 8
    torch.testing.assert_close(a.sum((-2, -1)), torch.ones(4))
    expected = -math.log(0.25) - math.log(0.6) - math.log(0.5)
    got = ConcentrationLoss("spatial/mam2")(att_out(a[None, None]), {})
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_concentration_loss_is_minimal_when_each_submodule_stays_in_its_stripe():
    con = ConcentrationLoss("spatial/mam2")
    torch.manual_seed(5)
    logits = torch.randn(200, 4, 8, 4)
    stripe = torch.arange(8) // 2  # row → stripe on the 8 × 4 grid
    inside = stripe[None, :] == torch.arange(4)[:, None]  # (K, rows)
    own = logits.masked_fill(~inside[None, :, :, None], float("-inf"))
    best = torch.softmax(own.flatten(2), -1).reshape(200, 4, 8, 4)  # all mass in own stripe
    rand = torch.softmax(logits.flatten(2), -1).reshape(200, 4, 8, 4)
    per_best = [float(con(att_out(m[None, None]), {})) for m in best]
    per_rand = [float(con(att_out(m[None, None]), {})) for m in rand]
    assert max(per_best) == pytest.approx(0.0, abs=1e-6)
    assert min(per_rand) > 0.0
    # Swapping two submodules' stripes makes a perfect map maximally wrong (clamped at eps).
    swapped = best[:1, [1, 0, 2, 3]]
    assert float(con(att_out(swapped[None]), {})) == pytest.approx(-2 * math.log(1e-8), rel=1e-3)


def test_concentration_loss_when_hw_is_not_divisible_by_k():
    """h·w = 5 × 2 = 10 positions, K = 4: stripes are whole rows, the first 5 mod 4 = 1 stripe
    gets the extra row: rows {0,1}, {2}, {3}, {4}."""
    a = torch.zeros(4, 5, 2)
    a[0, 1, 1], a[0, 4, 0] = 0.7, 0.3  # Â_00 = 0.7 (row 1 is in stripe 0)
    a[1, 2] = 0.5  # Â_11 = 1
    a[2, 3, 0], a[2, 2, 0] = 0.2, 0.8  # Â_22 = 0.2
    a[3, 4, 1], a[3, 0, 0] = 0.9, 0.1  # Â_33 = 0.9
    expected = -math.log(0.7) - math.log(0.2) - math.log(0.9)
    got = ConcentrationLoss("spatial/mam2")(att_out(a[None, None]), {})
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_concentration_loss_log_of_zero_is_finite_with_finite_gradient():
    a = torch.zeros(1, 1, 4, 8, 4)
    a[0, 0, :, 0, 0] = 1.0  # every map on row 0: Â_kk = 0 for k = 1, 2, 3
    a.requires_grad_(True)
    loss = ConcentrationLoss("spatial/mam2")(att_out(a), {})
    assert float(loss.detach()) == pytest.approx(-3 * math.log(1e-8), rel=1e-4)
    loss.backward()
    assert torch.isfinite(a.grad).all()


def test_diversity_on_model_output_matches_eq_8_elementwise():
    """‖√A √Aᵀ − I‖²_F per frame (eq. 8), written as a double loop over submodules."""
    model = tiny().eval()
    with torch.no_grad():
        out = model({"images": clip(b=1, t=2)})
    for key in ("spatial/mam1", "spatial/mam2"):
        maps = out.attention[key][0]  # (T, K, h, w)
        ref = []
        for t in range(maps.shape[0]):
            a = maps[t].flatten(1).double()
            q = sum((float((a[j].sqrt() * a[k].sqrt()).sum()) - float(j == k)) ** 2
                    for j in range(4) for k in range(4))
            ref.append(q)
        got = DiversityLoss(key, variant="hellinger")(out, {})
        assert float(got) == pytest.approx(sum(ref) / len(ref), rel=1e-5)


def test_concentration_loss_trains_the_mam_towards_its_stripes():
    """A few Adam steps on the concentration term alone (MAM parameters only, fixed batch)
    move each submodule's mass into its stripe: the diagonal of Â rises from ≈ 1/K."""
    model = tiny(mams=("layer4",)).eval()
    batch = {"images": clip(b=2, t=2)}
    with torch.no_grad():
        feats = model.backbone(batch["images"].flatten(0, 1))
    mam = model.mams["layer4"]
    con = ConcentrationLoss("spatial/mam2")
    opt = torch.optim.Adam(mam.parameters(), lr=0.05)

    def diag() -> float:
        with torch.no_grad():
            a = mam.attention(feats)  # (N, K, 4, 2), stripes = rows
            return float(torch.stack([a[:, k, k].sum(-1) for k in range(4)], 1).mean())

    before = diag()
    for _ in range(30):
        loss = con(att_out(mam.attention(feats)[None]), {})
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = diag()
    assert before < 0.4 and after > 0.8, (before, after)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize(
    "kw,losses",
    [
        ({}, FULL_LOSSES),
        ({"mams": ("layer4",)}, [FULL_LOSSES[i] for i in (0, 1, 4, 5)]),
        ({"mams": ()}, FULL_LOSSES[:2]),
        ({"bnneck": True}, FULL_LOSSES),
    ],
    ids=["multi_mam", "single_mam", "baseline", "bnneck"],
)
def test_gradients_reach_every_parameter(kw, losses):
    model = tiny(**kw).train()
    objective = build_objective(losses, num_classes=5, feat_dim=model.feat_dim)
    batch = {"images": clip(b=4, t=3), "pids": torch.tensor([0, 0, 1, 1]),
             "frame_mask": torch.tensor([[True, True, True]] * 3 + [[True, False, False]])}
    values = objective(model(batch), batch)
    values["total"].backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(v) for v in values.values())


# --------------------------------------------------------------------------- RIS (sec. III-A)


def test_random_interval_draws_valid_evenly_spaced_frames():
    n_frames = 6
    sampler = RandomInterval(n_frames, max_interval=4, seed=0)
    rng = np.random.default_rng(0)
    for epoch in range(8):
        sampler.set_epoch(epoch)
        g = sampler.interval
        assert 1 <= g <= 4
        for n in range(1, 60):
            idx, mask = sampler(n, rng)
            assert idx.shape == mask.shape == (n_frames,) and idx.dtype == np.int64
            assert ((0 <= idx) & (idx < n)).all()
            real = idx[mask]
            if n >= g * (n_frames - 1) + 1:  # the epoch's interval fits
                assert mask.all() and (np.diff(real) == g).all()
            elif n >= n_frames:  # shortened interval, still evenly spaced, N real frames
                gi = (n - 1) // (n_frames - 1)
                assert mask.all() and (np.diff(real) == gi).all() and 1 <= gi < g
            else:  # fewer than N frames: all of them, then padding
                assert real.tolist() == list(range(n))


def test_random_interval_start_covers_every_position_that_fits():
    sampler = RandomInterval(6, max_interval=4, seed=0)
    rng = np.random.default_rng(1)
    n = 40
    for epoch in range(6):
        sampler.set_epoch(epoch)
        g = sampler.interval
        starts = {int(sampler(n, rng)[0][0]) for _ in range(3000)}
        assert starts == set(range(0, n - g * 5))  # 0 .. n−1−g(N−1)


def test_random_interval_paper_start_matches_the_literal_formula():
    """s ∈ [1, T − g·N], frames I_{s+g}, …, I_{s+g·N} (1-based), i.e. 0-based s+g·i−1."""
    sampler = RandomInterval(6, max_interval=4, seed=0, paper_start=True)
    rng = np.random.default_rng(2)
    n = 50
    for epoch in range(6):
        sampler.set_epoch(epoch)
        g = sampler.interval
        literal = {tuple(s + g * i - 1 for i in range(1, 7)) for s in range(1, n - g * 6 + 1)}
        drawn = {tuple(sampler(n, rng)[0].tolist()) for _ in range(3000)}
        assert drawn == literal


def test_random_interval_changes_across_epochs_and_is_shared_within_one():
    sampler = build_sampler("random_interval", N=6, max_interval=4, seed=0)
    intervals = []
    for epoch in range(12):
        sampler.set_epoch(epoch)
        intervals.append(sampler.interval)
        rng = np.random.default_rng(epoch)
        # every long-enough tracklet of this epoch uses the same g
        gaps = {int(np.diff(sampler(n, rng)[0])[0]) for n in range(30, 80)}
        assert gaps == {sampler.interval}
    assert len(set(intervals)) >= 3  # g is redrawn each epoch (uniform on 1..4)
    assert any(a != b for a, b in zip(intervals[:-1], intervals[1:], strict=True))
    # reproducible from (seed, epoch)
    again = build_sampler("random_interval", N=6, max_interval=4, seed=0)
    again.set_epoch(7)
    assert again.interval == intervals[7]


def test_restricted_sampling_alternative_one_frame_per_chunk():
    """Table III's alternative: N equal chunks, one frame from each."""
    sampler = RestrictedRandom(6)
    rng = np.random.default_rng(3)
    for n in (6, 13, 40):
        idx, mask = sampler(n, rng)
        bounds = (np.arange(7) * n) // 6
        assert mask.all() and ((bounds[:-1] <= idx) & (idx < bounds[1:])).all()


# --------------------------------------------------------------------------- API and configs


def test_factory_builds_cmmanet_and_rejects_unknown_arguments():
    model = build_model("cmmanet", 7, backbone="resnet_tiny", K=2, hidden=8, mams=["layer4"])
    assert isinstance(model, CMMANet) and model.stages == ("layer4",)
    assert model.modalities == ("images",)
    with pytest.raises(TypeError, match="valid"):
        build_model("cmmanet", 7, backbone="resnet_tiny", heads=3)
    assert MAM_KEYS == {"layer3": "spatial/mam1", "layer4": "spatial/mam2"}


def test_bnneck_head_and_training_logits():
    model = tiny(bnneck=True).train()
    out = model({"images": clip(b=3, t=2)})
    assert out.logits.shape == (3, 5)
    assert out.metric_feature.shape == out.embedding.shape == (3, 64)
    assert not torch.equal(out.metric_feature, out.embedding)  # BN(F) for retrieval
    plain = tiny().train()
    out = plain({"images": clip(b=3, t=2)})
    assert out.logits.shape == (3, 5) and out.metric_feature is out.embedding


@pytest.mark.slow
def test_full_size_resnet50_shapes():
    """III-B: 256 × 128 frames; MAM1 on layer3 (1024 × 16 × 8), MAM2 on layer4 (2048 × 8 × 4),
    K = 4 submodules of 1×1 convs D → 256 → 1; F ∈ R^2048."""
    torch.manual_seed(0)
    model = build_cmmanet(num_classes=10, backbone="resnet50").eval()
    assert model.feat_dim == 2048
    assert model.mams["layer3"].hidden.weight.shape == (4 * 256, 1024, 1, 1)
    assert model.mams["layer4"].hidden.weight.shape == (4 * 256, 2048, 1, 1)
    assert model.mams["layer4"].score.weight.shape == (4, 256, 1, 1)
    with torch.no_grad():
        out = model({"images": torch.randn(1, 2, 3, 256, 128)})
    assert out.embedding.shape == (1, 2048)
    assert out.attention["spatial/mam1"].shape == (1, 2, 4, 16, 8)
    assert out.attention["spatial/mam2"].shape == (1, 2, 4, 8, 4)
    for a in out.attention.values():
        torch.testing.assert_close(a.sum((-2, -1)), torch.ones(1, 2, 4))


CONFIGS = sorted((ROOT / "configs" / "cmmanet").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT)) for p in CONFIGS])
def test_configs_follow_the_paper_and_build(path):
    from videoreid.config import load_config

    cfg = load_config(path)
    assert cfg.model.name == "cmmanet"
    args = dict(cfg.model.args, backbone="resnet_tiny", pretrained=None, hidden=8)
    model = build_model("cmmanet", 4, **args)
    # IV-B: N = 6 frames at 256 × 128, Adam lr 2e-4 wd 5e-4, batch 28, ResNet-50
    assert cfg.data.train_sampler.args["length"] == 6
    assert (cfg.data.height, cfg.data.width) == (256, 128)
    assert cfg.data.P * cfg.data.K == 28
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adam", 2e-4, 5e-4)
    assert cfg.model.args["backbone"] == "resnet50" and cfg.model.args["K"] == 4
    expected_sampler = "restricted_random" if "restricted" in path.stem else "random_interval"
    assert cfg.data.train_sampler.name == expected_sampler
    # every attention term reads a map the model produces; CE and triplet always present
    names = [spec["name"] for spec in cfg.loss]
    assert names[:2] == ["ce", "triplet"]
    keys = {spec["key"] for spec in cfg.loss if "key" in spec}
    assert keys <= set(model.attention_keys)
    # the diversity loss is on every MAM; Loss_con is on all of them or none
    div = {s["key"] for s in cfg.loss if s["name"] == "diversity"}
    con = {s["key"] for s in cfg.loss if s["name"] == "concentration"}
    assert div == set(model.attention_keys) and con in (set(), div)


# --------------------------------------------------------------------------- short training


class _EpochLosses(HookBase):
    """Records each epoch's mean total loss."""

    def __init__(self) -> None:
        self.totals: list[float] = []
        self.ce: list[float] = []

    def after_epoch(self) -> None:
        self.totals.append(self.trainer.epoch_log["loss/total"])
        self.ce.append(self.trainer.epoch_log["loss/ce"])


@pytest.mark.slow
def test_short_synthetic_training_lowers_loss_and_beats_chance(tmp_path):
    """Tiny backbone, synthetic MARS layout, RIS, the full objective: the loss goes down and
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
                      "height": H, "width": W, "args": {"keypoints": False}},
            "train_sampler": {"name": "random_interval", "args": {"length": 4}},
            "test_plan": {"name": "all_consecutive", "args": {"length": 4}},
            "P": 4, "K": 2, "workers": 0,
        },
        "model": {"name": "cmmanet", "args": {"backbone": "resnet_tiny", "hidden": 16}},
        "loss": FULL_LOSSES,
        "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 5e-4},
    })
    split = builders.build_splits(cfg)[0]
    builders.seed_everything(cfg.seed)
    train_tf, test_tf = builders.build_transforms(cfg)
    model = builders.build_model_from_config(cfg, split.num_train_pids)
    objective = builders.build_objective_from_config(cfg, model, split.num_train_pids)
    optimizer, _ = builders.build_optimizer(model, objective, lr=cfg.optim.lr,
                                            weight_decay=cfg.optim.weight_decay)
    loader = builders.build_train_loader(cfg, split.train, train_tf)
    recorder = _EpochLosses()
    trainer = Trainer(model, objective, optimizer, loader, epochs=5, iters_per_epoch=8,
                      hooks=[recorder], progress=False)
    trainer.train()
    assert recorder.totals[-1] < 0.9 * recorder.totals[0], recorder.totals
    assert recorder.ce[-1] < recorder.ce[0], recorder.ce  # not only the attention terms
    # RIS redrew g once per epoch through the dataset's set_epoch
    assert loader.dataset.sampler.epoch == trainer.data_pass - 1

    plan = build_plan("all_consecutive", length=4)
    qf = extract_features(model, split.query, plan, test_tf, progress=False)
    gf = extract_features(model, split.gallery, plan, test_tf, progress=False)
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


# --------------------------------------------------------------------------- equation-level reference


def _mam_reference(mam: MultiAttentionModule, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1–4 with functional ops: per-submodule weights unpacked from the conv tensors, the
    K-fold attended tensor built explicitly and maxed over K."""
    k = mam.K
    d = f.shape[1]
    w1 = mam.hidden.weight.reshape(k, -1, d)  # submodule k: Conv1×1(D→D_1) as (D_1, D)
    b1 = mam.hidden.bias.reshape(k, -1)
    w2 = mam.score.weight.reshape(k, -1)  # Conv1×1(D_1→1), grouped per submodule
    hid = F.relu(torch.einsum("ndhw,kjd->nkjhw", f, w1) + b1[None, :, :, None, None])  # eq. 1
    r = torch.einsum("nkjhw,kj->nkhw", hid, w2)
    a = torch.softmax(r.flatten(2), dim=-1).reshape(r.shape)  # eq. 2 over h·w
    x = a[:, :, None] * f[:, None]  # eq. 3: (N, K, D, h, w)
    return f + x.max(dim=1).values, a  # eq. 4


def cmmanet_reference(model, images: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
    """Eq. 1–5 recomputed around the backbone stages (the CNN itself is not under test)."""
    b, t = images.shape[:2]
    frames = images.flatten(0, 1)
    keep = torch.ones(b * t, dtype=torch.bool) if mask is None else mask.reshape(-1)
    bb = model.backbone
    x = frames[keep]
    maps = {}
    start = "stem"
    for stage, nxt in (("layer3", "layer4"), ("layer4", None)):
        x = bb.forward_stages(x, start, stage)
        if stage in model.mams:
            x, maps[stage] = _mam_reference(model.mams[stage], x)
        start = nxt
    per_frame = torch.zeros(b * t, x.shape[1])
    per_frame[keep] = x.mean(dim=(-2, -1))  # SpatialAvg
    w = keep.reshape(b, t).float()
    video = (per_frame.reshape(b, t, -1) * w[..., None]).sum(1) / w.sum(1, keepdim=True)  # eq. 5
    return {"F": video, "maps": maps}


@pytest.mark.parametrize("mams", [("layer3", "layer4"), ("layer4",), ()], ids=["multi", "single", "baseline"])
def test_forward_equals_functional_reference_of_the_equations(mams):
    model = tiny(mams=mams, K=3).eval()
    images = clip(b=2, t=3, seed=4)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    with torch.no_grad():
        for m in (None, mask):
            batch = {"images": images} if m is None else {"images": images, "frame_mask": m}
            out = model(batch)
            ref = cmmanet_reference(model, images, m)
            torch.testing.assert_close(out.embedding, ref["F"], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(out.metric_feature, ref["F"], rtol=1e-4, atol=1e-5)
            keep = torch.ones(6, dtype=torch.bool) if m is None else m.reshape(-1)
            for stage, a in ref["maps"].items():
                got = out.attention[MAM_KEYS[stage]].flatten(0, 1)[keep]
                torch.testing.assert_close(got, a, rtol=1e-4, atol=1e-6)


def test_eq5_test_time_feature_is_the_mean_over_every_real_frame(tmp_path):
    """Eq. 5 at test time: the tracklet feature from ``all_consecutive(4)`` clips (7 frames →
    clips of 4 and 3 real + 1 padded frame), aggregated by ``extract_features``, equals ``F`` of
    the whole tracklet as one clip — because each clip counts by its number of real frames."""
    import cv2

    from videoreid.data.clips import load_clip
    from videoreid.data.temporal import build_plan
    from videoreid.data.tracklet import Tracklet
    from videoreid.data.transforms import ClipTransform
    from videoreid.engine import extract

    rng = np.random.default_rng(0)
    paths = []
    for i in range(7):
        p = tmp_path / f"{i:04d}.png"
        cv2.imwrite(str(p), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        paths.append(p)
    track = Tracklet(tuple(paths), pid=0, camid=0, meta={})
    transform = ClipTransform(H, W, train=False)
    plan = build_plan("all_consecutive", length=4)
    assert [int(m.sum()) for _, m in plan(7)] == [4, 3]
    model = tiny().eval()
    got = extract.extract_features(model, [track], plan, transform, batch_size=2,
                                   normalize="none", progress=False, precision="fp32")
    whole = load_clip(track, np.arange(7), np.ones(7, dtype=bool), transform, None)
    with torch.no_grad():
        ref = model({"images": whole["images"][None]}).embedding.double().numpy()
        clips = [load_clip(track, idx, m, transform, None) for idx, m in plan(7)]
        per_clip = model({"images": torch.stack([c["images"] for c in clips]),
                          "frame_mask": torch.stack([c["frame_mask"] for c in clips])}).embedding
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    # the plain mean of the two clip features counts the second clip's frames 4/3 times
    assert np.abs(per_clip.double().mean(0).numpy() - ref).max() > 1e-3


# --------------------------------------------------------------------------- eq. 7, concentration


def test_eq7_unsquared_diversity_variant_by_hand():
    """Eq. 7 sums the Bhattacharyya coefficients 1 − D² of the pairs; eq. 8 their squares."""
    a = torch.zeros(3, 4)
    a[0] = torch.tensor([0.5, 0.5, 0.0, 0.0])
    a[1] = torch.tensor([0.0, 0.5, 0.5, 0.0])
    a[2] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    # BC(0,1) = √.25 = 0.5, BC(0,2) = BC(1,2) = 0: eq. 7 = 2·0.5 = 1; eq. 8 = 2·0.25 = 0.5
    out = att_out(a.reshape(1, 1, 3, 2, 2))
    eq7 = DiversityLoss("spatial/mam2", variant="bhattacharyya")(out, {})
    eq8 = DiversityLoss("spatial/mam2", variant="hellinger")(out, {})
    assert float(eq7) == pytest.approx(1.0, abs=1e-4)  # the 1e-12 clamp under √ adds ~1e-5
    assert float(eq8) == pytest.approx(0.5, abs=1e-4)
    same = att_out(torch.full((1, 1, 4, 2, 2), 0.25))  # identical maps: K(K−1) either way
    assert float(DiversityLoss("spatial/mam2", variant="bhattacharyya")(same, {})) == pytest.approx(12.0)


def test_concentration_gradient_never_dies():
    """A submodule whose stripe holds no mass still gets pulled back (log(Â + ε), no clamp)."""
    logits = torch.zeros(1, 1, 4, 8, 4)
    logits[0, 0, 1, 0, 0] = 40.0  # submodule 1's mass all on row 0 (stripe 0): Â_11 ≈ 0
    logits.requires_grad_(True)
    maps = torch.softmax(logits.flatten(-2), -1).reshape(logits.shape)
    loss = ConcentrationLoss("spatial/mam2")(att_out(maps), {})
    loss.backward()
    g = logits.grad[0, 0, 1]
    assert torch.isfinite(g).all()
    # gradient descent raises the logits of submodule 1's own stripe (rows 2-3)
    assert float(g[2:4].sum()) < 0 and float(g[2:4].abs().sum()) > 1e-12


# --------------------------------------------------------------------------- paper-table rows


CMMANET_ROWS = sorted((ROOT / "configs" / "cmmanet" / "ablation").glob("table[45]_*/*.yaml"))


@pytest.mark.parametrize("path", CMMANET_ROWS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_component_rows_say_what_their_name_says(path):
    """Tables IV–V: a row's file name fixes its MAMs and its loss terms (so the Single MAM
    rows with and without Loss_con, say, cannot swap contents unnoticed)."""
    from videoreid.config import load_config

    cfg = load_config(path)
    name = path.stem.split("_", 1)[1]
    paper = path.read_text().splitlines()[1]
    mams = {"baseline": [], "single_mam": ["layer4"], "multi_mam": ["layer3", "layer4"]}[
        name.removesuffix("_con")]
    assert list(cfg.model.args["mams"]) == mams
    keys = [MAM_KEYS[s] for s in mams]
    terms = sorted((s["name"], s.get("key")) for s in cfg.loss)
    expected = [("ce", None), ("triplet", None)] + [("diversity", k) for k in keys]
    if name.endswith("_con"):
        expected += [("concentration", k) for k in keys]
    assert terms == sorted(expected)
    assert ("Loss_con" in paper) == name.endswith("_con")
    assert ("Single MAM" in paper) == name.startswith("single") and ("Multi-MAM" in paper) == name.startswith("multi")
