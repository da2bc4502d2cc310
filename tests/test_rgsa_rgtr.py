"""RGSA + RGTR (Li et al., AAAI 2020): relation module forms, pair BN, attention, heads."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videoreid.models.rgsa_rgtr import (
    RGSA,
    RGSARGTR,
    RGTR,
    InnerProductRelation,
    PairDifferenceBatchNorm,
    RawInnerProductRelation,
    RelationModule,
    build_rgsa_rgtr,
)

# Small settings: resnet_tiny has C=64 output channels; 64×32 frames give a 4×2 map (N=8).
TINY = dict(backbone="resnet_tiny", r1=4, r2=16, image_size=(64, 32))


def _seed(s: int = 0) -> None:
    torch.manual_seed(s)


def _batch(b: int = 4, t: int = 3, h: int = 64, w: int = 32, classes: int = 3) -> dict:
    return {
        "images": torch.randn(b, t, 3, h, w),
        "pids": torch.arange(b) % classes,
        "camids": torch.zeros(b, dtype=torch.long),
    }


def _bn_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "tracked" in k}


# --------------------------------------------------------------------------------------------
# Pair batch norm: analytic statistics == nn.BatchNorm1d on the materialised differences


def _grouped_inputs(g: int, m: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Group-dependent offsets correlated between u and v: pooled var(u)+var(v) would be wrong
    # here (it misses −2·cov of the group means), so the test can tell the formulas apart.
    offset = torch.randn(g, 1, k) * 3
    u = torch.randn(g, m, k) + offset
    v = 0.5 * torch.randn(g, m, k) + 0.8 * offset + 1.0
    return u, v


@pytest.mark.parametrize("g,m,k,momentum", [(5, 7, 3, 0.1), (1, 4, 2, 0.1), (6, 1, 4, None)])
def test_pair_bn_matches_batchnorm_on_materialised_pairs(g, m, k, momentum):
    _seed(1)
    ours = PairDifferenceBatchNorm(k, momentum=momentum)
    nn.init.uniform_(ours.weight, 0.5, 2.0)
    nn.init.uniform_(ours.bias, -1.0, 1.0)
    ref = nn.BatchNorm1d(k, momentum=momentum)
    ref.load_state_dict(ours.state_dict())
    for step in range(3):  # several steps: running stats accumulate the same way
        u, v = _grouped_inputs(g, m, k)
        u1, v1 = u.clone().requires_grad_(), v.clone().requires_grad_()
        u2, v2 = u.clone().requires_grad_(), v.clone().requires_grad_()
        out = ours.pairwise(u1, v1)
        pairs = (u2.unsqueeze(2) - v2.unsqueeze(1)).reshape(-1, k)
        expect = ref(pairs).reshape(g, m, m, k)
        torch.testing.assert_close(out, expect, rtol=1e-5, atol=1e-5)
        w = torch.randn_like(out)
        (out * w).sum().backward()
        (expect * w).sum().backward()
        torch.testing.assert_close(u1.grad, u2.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(v1.grad, v2.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-4)
        for name, buf in ref.named_buffers():
            torch.testing.assert_close(getattr(ours, name), buf, rtol=1e-5, atol=1e-6, msg=f"{name} step {step}")
    ours.eval()
    ref.eval()
    u, v = _grouped_inputs(g, m, k)
    expect = ref((u.unsqueeze(2) - v.unsqueeze(1)).reshape(-1, k)).reshape(g, m, m, k)
    torch.testing.assert_close(ours.pairwise(u, v), expect, rtol=1e-5, atol=1e-5)


def test_pair_bn_statistics_are_not_the_pooled_formula():
    # Guards the derivation: the per-group (law of total variance) form is the right one.
    _seed(2)
    u, v = _grouped_inputs(6, 5, 3)
    bn = PairDifferenceBatchNorm(3)
    mean, var = bn.pair_statistics(u, v)
    d = (u.unsqueeze(2) - v.unsqueeze(1)).reshape(-1, 3)
    torch.testing.assert_close(mean, d.mean(0))
    torch.testing.assert_close(var, d.var(0, unbiased=False), rtol=1e-5, atol=1e-5)
    pooled = u.reshape(-1, 3).var(0, unbiased=False) + v.reshape(-1, 3).var(0, unbiased=False)
    assert (pooled - var).abs().min() > 0.5


def test_pair_bn_rejects_bad_shapes():
    bn = PairDifferenceBatchNorm(4)
    with pytest.raises(ValueError, match="must both be"):
        bn.pairwise(torch.randn(2, 3, 4), torch.randn(2, 3, 5))


# --------------------------------------------------------------------------------------------
# Relation module: projected == naive (same parameters)


@pytest.mark.parametrize("train", [True, False])
def test_projected_relation_equals_naive(train):
    _seed(3)
    rm = RelationModule(32, r1=4, r2=8, impl="naive")
    for p in rm.parameters():  # non-trivial BN affine parameters
        if p.dim() == 1:
            nn.init.uniform_(p, -0.5, 1.5)
    if not train:  # populate running stats first so eval mode uses non-default values
        for _ in range(3):
            rm(torch.randn(3, 6, 32))
    naive = rm.train(train)
    proj = copy.deepcopy(rm)
    proj.impl = "projected"
    x = torch.randn(3, 6, 32) * 2 + 0.5
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_n, out_p = naive(x1), proj(x2)
    assert out_p.shape == (3, 6, 6, 4)
    torch.testing.assert_close(out_p, out_n, rtol=1e-5, atol=1e-5)
    # r[g, i, j] relates x_i to x_j: recompute one entry from eq. 1–2 by hand (eval mode only,
    # where BN is a fixed affine map of the single pair).
    if not train:
        th, ph = naive.theta(x[1:2, 2:3]), naive.phi(x[1:2, 4:5])
        z = naive.proj(th - ph).reshape(1, -1)
        by_hand = F.relu(F.batch_norm(z, naive.bn.running_mean, naive.bn.running_var,
                                      naive.bn.weight, naive.bn.bias, False, 0.0, naive.bn.eps))
        torch.testing.assert_close(out_p[1, 2, 4], by_hand[0], rtol=1e-5, atol=1e-5)
    w = torch.randn_like(out_n)
    (out_n * w).sum().backward()
    (out_p * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-4)
    for (name, p_n), (_, p_p) in zip(naive.named_parameters(), proj.named_parameters(), strict=True):
        torch.testing.assert_close(p_p.grad, p_n.grad, rtol=1e-4, atol=1e-4, msg=name)
    for (name, b_n), (_, b_p) in zip(naive.named_buffers(), proj.named_buffers(), strict=True):
        torch.testing.assert_close(b_p, b_n, rtol=1e-5, atol=1e-6, msg=name)


def test_projected_model_equals_naive_model():
    _seed(4)
    model = RGSARGTR(5, seq_len=3, relation_impl="naive", **TINY)
    other = copy.deepcopy(model)
    other.set_relation_impl("projected")
    batch = _batch()
    for train in (True, False):
        model.train(train)
        other.train(train)
        a, b = model(batch), other(batch)
        torch.testing.assert_close(b.embedding, a.embedding, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(b.attention["spatial"], a.attention["spatial"], rtol=1e-4, atol=1e-4)
    # Same parameter names and shapes: a checkpoint of one form loads into the other.
    assert model.state_dict().keys() == other.state_dict().keys()


def test_relation_dimensions_follow_the_paper():
    rm = RelationModule(2048, r1=32, r2=256)
    assert rm.theta[0].weight.shape == (64, 2048)  # W_θ ∈ R^{C/r1 × C}
    assert rm.proj.weight.shape == (8, 64)  # W ∈ R^{C/r2 × C/r1}
    rgsa = RGSA(2048, num_positions=128)
    # W_A ∈ R^{C × (N/r2 + 1)C}: [X_i, r̃_i] with r̃_i ∈ R^{N·C/r2} = R^{1024}
    assert rgsa.attention.fc.weight.shape == (2048, 2048 + 1024)
    rgtr = RGTR(2048, seq_len=8)
    assert rgtr.refine.fc.weight.shape == (2048, 2048 + 8 * 8)  # W_R ∈ R^{C × (T/r2 + 1)C}
    ip = RGSA(2048, num_positions=128, relation="inner_product")
    assert ip.attention.fc.weight.shape == (2048, 2048 + 128)


def test_reduction_that_leaves_no_channels_is_an_error():
    with pytest.raises(ValueError, match="r2=256 reduces C=64"):
        RelationModule(64, r1=4, r2=256)


def test_inner_product_relation_is_scaled_dot_product_of_embeddings():
    _seed(5)
    ip = InnerProductRelation(16, r1=2).eval()
    x = torch.randn(2, 5, 16)
    r = ip(x)
    assert r.shape == (2, 5, 5, 1)
    th, ph = ip.theta(x), ip.phi(x)
    torch.testing.assert_close(r[1, 3, 0, 0], (th[1, 3] * ph[1, 0]).sum() / 8**0.5)


# --------------------------------------------------------------------------------------------
# RGSA: weights in (0, 1), frame feature a per-channel convex combination


@pytest.mark.parametrize("relation", ["difference", "inner_product"])
def test_rgsa_weights_and_convex_combination(relation):
    _seed(6)
    rgsa = RGSA(16, num_positions=6, r1=2, r2=4, relation=relation)
    x = torch.randn(5, 6, 16) * 3
    f, a = rgsa(x)
    assert f.shape == (5, 16) and a.shape == (5, 6, 16)
    assert bool(((a > 0) & (a < 1)).all())
    weights = a / a.sum(1, keepdim=True)  # per frame and channel, sums to 1 over positions
    torch.testing.assert_close(weights.sum(1), torch.ones(5, 16))
    torch.testing.assert_close(f, (weights * x).sum(1))
    lo, hi = x.min(1).values, x.max(1).values
    assert bool(((f >= lo - 1e-5) & (f <= hi + 1e-5)).all())
    # Identical features at every position: any convex combination returns that feature.
    same = torch.randn(5, 1, 16).expand(5, 6, 16).contiguous()
    torch.testing.assert_close(rgsa(same)[0], same[:, 0])


def test_rgsa_feature_and_attention_in_model_output():
    _seed(7)
    model = RGSARGTR(3, rgtr=False, seq_len=3, **TINY).eval()
    batch = _batch(b=2, t=3)
    out = model(batch)
    h, w = model.feature_size
    assert (h, w) == (4, 2)
    a = out.attention["spatial/channels"]
    assert a.shape == (2, 3, 64, h, w)
    torch.testing.assert_close(out.attention["spatial"], a.mean(2))
    # Recompute the clip feature from the exposed weights and the backbone's map.
    fmap = model.backbone(batch["images"].flatten(0, 1)).reshape(2, 3, 64, h, w)
    frame = (a * fmap).sum((-2, -1)) / a.sum((-2, -1))
    torch.testing.assert_close(out.embedding, frame.mean(1), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# RGTR: output shape, clip feature = (mask-aware) temporal mean of the refined features


def test_rgtr_shapes_and_temporal_mean():
    _seed(8)
    model = RGSARGTR(3, seq_len=4, **TINY).eval()
    captured = {}
    model.rgtr.register_forward_hook(lambda m, i, o: captured.update(inp=i[0], out=o))
    batch = _batch(b=3, t=4)
    out = model(batch)
    refined, rel = captured["out"]
    assert captured["inp"].shape == (3, 4, 64)
    assert refined.shape == (3, 4, 64)
    assert rel.shape == (3, 4, 4, 64 // 16)
    assert out.embedding.shape == (3, 64)
    torch.testing.assert_close(out.embedding, refined.mean(1))
    torch.testing.assert_close(out.attention["temporal_relation"], rel.mean(-1))
    # Padded frames are left out of the temporal mean (eq. 10 over real frames only).
    mask = torch.tensor([[True] * 4, [True, True, False, False], [True, False, False, False]])
    out = model({**batch, "frame_mask": mask})
    refined = captured["out"][0]
    expect = torch.stack([refined[0].mean(0), refined[1, :2].mean(0), refined[2, 0]])
    torch.testing.assert_close(out.embedding, expect)


def test_rgtr_refinement_uses_other_frames():
    # f̃_t must depend on f_s (s ≠ t) through the relation vector, not only on f_t.
    _seed(9)
    rgtr = RGTR(16, seq_len=4, r1=2, r2=4).eval()
    for _ in range(3):
        rgtr.train()(torch.randn(6, 4, 16))
    rgtr.eval()
    f = torch.randn(2, 4, 16)
    g = f.clone()
    g[:, 3] += 2.0
    a, _ = rgtr(f)
    b, _ = rgtr(g)
    assert (a[:, 0] - b[:, 0]).abs().max() > 1e-3


def test_baseline_rows_are_average_pooling():
    _seed(10)
    model = RGSARGTR(3, rgsa=False, rgtr=False, seq_len=3, **TINY).eval()
    batch = _batch(b=2, t=3)
    out = model(batch)
    fmap = model.backbone(batch["images"].flatten(0, 1))
    expect = fmap.mean((-2, -1)).reshape(2, 3, -1).mean(1)
    torch.testing.assert_close(out.embedding, expect)
    assert out.attention == {}


def test_wrong_clip_length_or_image_size_is_an_error():
    model = RGSARGTR(3, seq_len=4, **TINY)
    with pytest.raises(ValueError, match="seq_len=4"):
        model(_batch(t=3))
    with pytest.raises(ValueError, match="image_size"):
        model(_batch(t=4, h=128, w=64))


# --------------------------------------------------------------------------------------------
# Heads, objective, gradients


def test_frame_and_clip_logits_both_feed_the_objective():
    from videoreid.losses import build_objective

    _seed(11)
    model = RGSARGTR(4, seq_len=3, **TINY).train()
    batch = _batch(b=8, t=3, classes=4)
    out = model(batch)
    assert out.logits.shape == (8, 4)
    assert out.frame_logits.shape == (8, 3, 4)
    objective = build_objective(
        [{"name": "ce"}, {"name": "frame_ce"}, {"name": "adaptive_triplet"}], num_classes=4, feat_dim=64
    )
    losses = objective(out, batch)
    torch.testing.assert_close(losses["total"], losses["ce"] + losses["frame_ce"] + losses["adaptive_triplet"])
    # Each CE term reaches its own classifier: eq. 11's two terms are both live.
    for term, head in (("ce", model.classifier), ("frame_ce", model.frame_classifier)):
        model.zero_grad()
        losses[term].backward(retain_graph=True)
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0, term
        other = model.frame_classifier if head is model.classifier else model.classifier
        assert other.weight.grad is None or other.weight.grad.abs().sum() == 0, term
    model.eval()
    out = model(batch)
    assert out.logits is None and out.frame_logits is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"relation": "inner_product"},
        {"relation_impl": "naive"},
        {"rgsa": False},
        {"rgtr": False},
        {"frame_feature": "refined"},
    ],
)
def test_gradients_reach_every_parameter(kwargs):
    _seed(12)
    model = build_rgsa_rgtr(4, seq_len=3, **TINY, **kwargs).train()
    batch = _batch(b=6, t=3, classes=4)
    out = model(batch)
    loss = (
        F.cross_entropy(out.logits, batch["pids"])
        + F.cross_entropy(out.frame_logits.flatten(0, 1), batch["pids"].repeat_interleave(3))
        + out.metric_feature.pow(2).mean()
    )
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert dead == []


def test_factory_builds_rgsa_rgtr():
    from videoreid.models.factory import MODELS, build_model

    if "rgsa_rgtr" not in MODELS:
        pytest.skip("rgsa_rgtr not yet registered in models/factory.py")
    model = build_model("rgsa_rgtr", 3, seq_len=2, **TINY)
    assert isinstance(model, RGSARGTR)
    with pytest.raises(TypeError, match="valid"):
        build_model("rgsa_rgtr", 3, not_an_arg=1)


@pytest.mark.slow
def test_full_size_shapes():
    """ResNet-50, last_stride=1, 256×128: 16×8 map, N=128, r̃_i ∈ R^1024, C=2048."""
    _seed(13)
    model = RGSARGTR(10, seq_len=2).eval()
    assert model.feature_size == (16, 8)
    assert model.rgsa.attention.fc.in_features == 2048 + 128 * 8
    assert model.rgtr.refine.fc.in_features == 2048 + 2 * 8
    with torch.no_grad():
        out = model({"images": torch.randn(1, 2, 3, 256, 128)})
    assert out.embedding.shape == (1, 2048)
    assert out.attention["spatial"].shape == (1, 2, 16, 8)
    assert out.attention["spatial/channels"].shape == (1, 2, 2048, 16, 8)
    assert out.attention["temporal_relation"].shape == (1, 2, 2)
    model.train()
    out = model({"images": torch.randn(2, 2, 3, 256, 128)})
    assert out.logits.shape == (2, 10) and out.frame_logits.shape == (2, 2, 10)


@pytest.mark.parametrize("dataset", ["mars", "dukev", "ilidsvid", "prid2011"])
def test_configs_are_consistent_with_the_paper(dataset):
    from pathlib import Path

    from videoreid.config import load_config

    path = Path(__file__).resolve().parents[1] / "configs" / "rgsa_rgtr" / f"{dataset}.yaml"
    cfg = load_config(path)
    args = cfg.model.args
    t = args["seq_len"]
    # RGTR's W_R and RGSA's W_A fix T and N: sampler, test plan and image size must agree.
    assert cfg.data.train_sampler.args["length"] == t == 8
    assert cfg.data.test_plan.name == "dense"
    assert cfg.data.test_plan.args == {"length": t, "stride": t // 2}
    assert list(args["image_size"]) == [cfg.data.height, cfg.data.width] == [256, 128]
    assert (args["r1"], args["r2"], args["last_stride"]) == (32, 256, 1)
    assert (cfg.data.P, cfg.data.K) == (18, 4)
    assert sorted(s["name"] for s in cfg.loss) == ["adaptive_triplet", "ce", "frame_ce"]
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adam", 3e-4, 5e-4)
    assert (cfg.schedule.milestones, cfg.schedule.gamma, cfg.train.epochs) == ([125, 250], 0.1, 375)
    assert (cfg.eval.metric, cfg.eval.normalize) == ("cosine", "both")
    assert cfg.data.augment.flip == 0.5 and cfg.data.augment.erasing > 0
    assert cfg.data.dataset == dataset


def test_short_synthetic_training_lowers_loss_and_beats_chance(tmp_path):
    """The whole pipeline (config → trainer → dense-clip extraction → cosine ranking) with the
    tiny backbone on a small synthetic MARS-layout dataset."""
    import csv
    import dataclasses
    from pathlib import Path

    import numpy as np

    from videoreid.config import load_config
    from videoreid.engine.builders import train_from_config
    from videoreid.evaluation.features import FeatureSet
    from videoreid.evaluation.protocol import evaluate_features

    config = Path(__file__).resolve().parents[1] / "configs" / "rgsa_rgtr" / "mars.yaml"
    run = tmp_path / "run"
    cfg = load_config(config, [
        f"data.root={tmp_path / 'data'}",
        "data.synth={layout: mars, ids: 24, cameras: 3, preset: easy, seed: 0, height: 64, "
        "width: 32, args: {keypoints: false, tracklet_len: [8, 12]}}",
        "data.height=64", "data.width=32", "data.P=4", "data.K=2", "data.workers=0",
        "data.train_sampler.args.length=2", "data.test_plan.args={length: 2, stride: 1}",
        "data.augment={flip: 0.5, pad: 0, erasing: 0.0}",
        "model.args.backbone=resnet_tiny", "model.args.pretrained=none",
        "model.args.image_size=[64, 32]", "train.iters_per_epoch=null",
        "model.args.seq_len=2", "model.args.r1=4", "model.args.r2=16",
        "optim.lr=1e-3", "schedule.milestones=[1000]", "train.epochs=40", "train.eval_every=0",
        "train.checkpoint_every=40", "train.device=cpu", "train.progress=false",
        f"output_dir={run}",
    ])
    summary = train_from_config(cfg)
    with open(run / "log.csv", newline="") as f:
        losses = [float(r["loss/total"]) for r in csv.DictReader(f)]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3]), losses

    metrics = summary["metrics"]
    rank1 = next(v for k, v in metrics.items() if k.endswith("/rank1"))
    mAP = next(v for k, v in metrics.items() if k.endswith("/mAP"))
    # Chance: the same labels and protocol with random features, averaged over draws.
    fs = FeatureSet.load(run / "features.npz")
    rng = np.random.default_rng(0)
    chance = [
        evaluate_features(dataclasses.replace(fs, features=rng.standard_normal(fs.features.shape)),
                          cfg.eval.protocol, "cosine")
        for _ in range(50)
    ]
    chance_r1 = float(np.mean([c["cmc"][0] for c in chance]))
    chance_map = float(np.mean([c["mAP"] for c in chance]))
    assert rank1 > chance_r1 + 0.1, (rank1, chance_r1)
    assert mAP > chance_map + 0.1, (mAP, chance_map)


# --------------------------------------------------------------------------------------------
# Equation-level reference (eval mode): eq. 1–10 with functional ops and the module's weights


def _bn_eval(x: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
    """BN with running statistics, written out: γ (x − μ) / √(σ² + ε) + β over the last dim."""
    return (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias


def _randomise_statistics(model: nn.Module, seed: int = 3) -> None:
    """Running statistics and affine terms far from (0, 1) so every BN really acts."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d) or type(m).__name__ in ("_TokenBN", "PairDifferenceBatchNorm"):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g))


def _relation_reference(rel: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``r̃_i = [RM(x_i, x_1), …, RM(x_i, x_M)]`` (eq. 1–2, 4 / 7–8): ``(G, M, C)`` → ``(G, M, M·K)``."""
    g, m, _ = x.shape
    if isinstance(rel, RawInnerProductRelation):
        return torch.einsum("gic,gjc->gij", x, x).reshape(g, m, m)

    def embed(seq: nn.Sequential, v: torch.Tensor) -> torch.Tensor:  # θ / φ = ReLU(BN(W f))
        return F.relu(_bn_eval(F.linear(v, seq[0].weight), seq[1]))

    th, ph = embed(rel.theta, x), embed(rel.phi, x)
    if isinstance(rel, InnerProductRelation):
        r = torch.einsum("gic,gjc->gij", th, ph)[..., None] / math.sqrt(th.shape[-1])
    else:
        diff = th[:, :, None, :] - ph[:, None, :, :]  # θ(x_i) − φ(x_j), (G, M, M, C/r1)
        r = F.relu(_bn_eval(F.linear(diff, rel.proj.weight), rel.bn))  # eq. 2
    return r.reshape(g, m, -1)  # concatenation over j, in order (eq. 4 / 8)


def rgsa_rgtr_reference(model: RGSARGTR, images: torch.Tensor, mask=None) -> torch.Tensor:
    b, t = images.shape[:2]
    fmap = model.backbone(images.flatten(0, 1))  # the CNN is not under test
    x = fmap.flatten(2).transpose(1, 2)  # (B·T, N, C), row-major positions
    if model.rgsa is not None:
        r = _relation_reference(model.rgsa.relation, x)
        lin = model.rgsa.attention
        z = F.linear(torch.cat([x, r], dim=-1), lin.fc.weight)  # W_A [X_i, r̃_i] (eq. 5)
        a = torch.sigmoid(_bn_eval(z, lin.bn))
        f = (a * x).sum(1) / a.sum(1)  # eq. 6
    else:
        f = x.mean(1)
    f = f.reshape(b, t, -1)
    if model.rgtr is not None:
        r = _relation_reference(model.rgtr.relation, f)
        lin = model.rgtr.refine
        f = _bn_eval(F.linear(torch.cat([f, r], dim=-1), lin.fc.weight), lin.bn)  # eq. 9
    w = torch.ones(b, t, dtype=f.dtype) if mask is None else mask.to(f.dtype)
    return (f * w[..., None]).sum(1) / w.sum(1, keepdim=True)  # eq. 10 over real frames


@pytest.mark.parametrize("kw", [
    {}, {"relation_impl": "naive"}, {"relation": "inner_product"}, {"relation": "raw_inner_product"},
    {"rgtr": False}, {"rgsa": False},
], ids=["full", "naive", "ip", "raw_ip", "rgsa_only", "rgtr_only"])
def test_forward_equals_functional_reference_of_the_equations(kw):
    _seed(21)
    model = RGSARGTR(3, seq_len=3, **{**TINY, **kw})
    _randomise_statistics(model)
    # float64: the raw inner products reach ~1e2, and float32 rounding of W_A's input then
    # moves the output by ~1e-2 through the sigmoid and RGTR's second inner product.
    model.double().eval()
    batch = _batch(b=2, t=3)
    batch["images"] = batch["images"].double()
    mask = torch.tensor([[True, True, True], [True, True, False]])
    with torch.no_grad():
        for m in (None, mask):
            got = model({**batch, "frame_mask": m} if m is not None else batch).embedding
            ref = rgsa_rgtr_reference(model, batch["images"], m)
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_raw_inner_product_relation_has_no_parameters():
    _seed(22)
    rel = RawInnerProductRelation()
    x = torch.randn(2, 5, 16)
    assert list(rel.parameters()) == []
    torch.testing.assert_close(rel(x)[1, 3, 0, 0], x[1, 3] @ x[1, 0])
    model = RGSARGTR(3, seq_len=3, relation="raw_inner_product", **TINY)
    assert model.rgsa.attention.fc.weight.shape == (64, 64 + 8)  # W_A ∈ R^{C×(C+N)}
    assert model.rgtr.refine.fc.weight.shape == (64, 64 + 3)


# --------------------------------------------------------------------------------------------
# Adaptive weighted triplet (eq. 12–14) against an anchor-by-anchor reference


def adaptive_triplet_reference(feat: torch.Tensor, pids: torch.Tensor, anchor_in_positives=False):
    """Eq. 12–14 written per anchor with explicit sets, weights not detached."""
    n = len(pids)
    losses = []
    for a in range(n):
        pos = [i for i in range(n) if pids[i] == pids[a] and (i != a or anchor_in_positives)]
        neg = [j for j in range(n) if pids[j] != pids[a]]
        if not pos or not neg:
            continue
        d_p = torch.stack([torch.sqrt(((feat[a] - feat[i]) ** 2).sum()) if i != a
                           else feat.new_zeros(()) for i in pos])
        d_n = torch.stack([torch.sqrt(((feat[a] - feat[j]) ** 2).sum()) for j in neg])
        w_p = torch.exp(d_p) / torch.exp(d_p).sum()  # eq. 12
        w_n = torch.exp(-d_n) / torch.exp(-d_n).sum()  # eq. 13
        losses.append(F.softplus((w_p * d_p).sum() - (w_n * d_n).sum()))  # eq. 14
    return torch.stack(losses).mean()


@pytest.mark.parametrize("anchor_in_positives", [False, True])
def test_adaptive_triplet_value_and_gradient_match_the_equations(anchor_in_positives):
    """K = 3 clips per identity, so every anchor has two positives whose weights matter;
    the gradient check catches detached weights (the value alone would not)."""
    from videoreid.losses.triplet import AdaptiveWeightedTripletLoss
    from videoreid.models.output import ReIDOutput

    _seed(23)
    pids = torch.arange(4).repeat_interleave(3)  # P = 4, K = 3
    feat = (torch.randn(12, 8, dtype=torch.float64) * 0.7).requires_grad_(True)
    loss_fn = AdaptiveWeightedTripletLoss(anchor_in_positives=anchor_in_positives)
    got = loss_fn(ReIDOutput(embedding=feat, metric_feature=feat), {"pids": pids})
    ref = adaptive_triplet_reference(feat, pids, anchor_in_positives)
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-6)
    g_got, = torch.autograd.grad(got, feat)
    g_ref, = torch.autograd.grad(ref, feat)
    torch.testing.assert_close(g_got.double(), g_ref, rtol=1e-4, atol=1e-6)
    other = AdaptiveWeightedTripletLoss(anchor_in_positives=not anchor_in_positives)
    with torch.no_grad():
        alt = other(ReIDOutput(embedding=feat, metric_feature=feat), {"pids": pids})
    assert abs(float(alt) - float(got.detach())) > 1e-3  # the switch changes the loss


def test_adaptive_triplet_anchor_in_positives_keeps_singleton_anchors():
    """Literal eq. 12: an anchor alone with its identity still has a positive set {itself}."""
    from videoreid.losses.triplet import AdaptiveWeightedTripletLoss
    from videoreid.models.output import ReIDOutput

    feat = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    out = ReIDOutput(embedding=feat, metric_feature=feat)
    pids = torch.tensor([0, 1])
    assert float(AdaptiveWeightedTripletLoss()(out, {"pids": pids})) == 0.0  # no valid anchor
    lit = AdaptiveWeightedTripletLoss(anchor_in_positives=True)(out, {"pids": pids})
    assert float(lit) == pytest.approx(math.log1p(math.exp(-5.0)), rel=1e-5)  # softplus(0 − 5)
