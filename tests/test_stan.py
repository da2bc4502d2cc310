"""STAN (Li et al. 2018): receptive fields, diversity terms, enhancement E, temporal attention,
masks, gradients, shapes (tiny backbone; one full-size ResNet-50 check marked slow)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from videoreid.losses.attention import DiversityLoss
from videoreid.models.factory import build_model
from videoreid.models.output import ReIDOutput
from videoreid.models.stan import (
    STAN,
    TemporalAttention,
    TemporalEnhancement,
    build_stan,
    receptive_field_overlap,
)

H, W = 128, 64  # resnet_tiny → 4 × 2 grid (L = 8)


def tiny(**kw) -> STAN:
    torch.manual_seed(0)
    kw.setdefault("num_classes", 5)
    kw.setdefault("K", 3)
    kw.setdefault("d", 16)
    kw.setdefault("embed_dim", 12)
    return build_stan(backbone="resnet_tiny", **kw)


def clip(b: int = 2, t: int = 4, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 3, H, W, generator=g)


def q_reference(s: torch.Tensor, hellinger: bool) -> torch.Tensor:
    """Eq. 9 / eq. 10 for one image, written out element by element: s is (K, L)."""
    k = s.shape[0]
    total = torch.zeros((), dtype=torch.float64)
    for i in range(k):
        for j in range(k):
            if hellinger:
                g = sum(math.sqrt(float(s[i, l]) * float(s[j, l])) for l in range(s.shape[1]))
            else:
                g = sum(float(s[i, l]) * float(s[j, l]) for l in range(s.shape[1]))
            total += (g - (1.0 if i == j else 0.0)) ** 2
    return total


def diversity(maps: torch.Tensor, variant: str, batch: dict | None = None) -> torch.Tensor:
    out = ReIDOutput(embedding=torch.zeros(1, 1), attention={"spatial": maps})
    return DiversityLoss("spatial", variant=variant)(out, batch or {})


# --------------------------------------------------------------------------- receptive fields


def test_receptive_fields_are_distributions_with_documented_shapes():
    model = tiny().eval()
    with torch.no_grad():
        out = model({"images": clip()})
    s = out.attention["spatial"]
    assert s.shape == (2, 4, 3, 4, 2)
    assert (s >= 0).all()
    torch.testing.assert_close(s.sum((-2, -1)), torch.ones(2, 4, 3))
    # Random init: the fields are not uniform, i.e. they depend on the features.
    assert (s - 1 / 8).abs().max() > 1e-3
    assert out.attention["temporal"].shape == (2, 4, 3)
    assert out.embedding.shape == (2, 12)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(2))
    assert out.metric_feature is out.embedding
    assert out.logits is None  # eval mode


def test_gated_features_are_attention_weighted_averages():
    """Eq. 3 checked against an explicit sum over the L cells."""
    model = tiny().eval()
    feat = torch.randn(3, model.backbone_dim, 4, 2)
    x, s = model.spatial_attention(feat)
    ref = torch.einsum("nkhw,nchw->nkc", s, feat)
    torch.testing.assert_close(x, ref)
    # Eq. 1 for model k=1 by hand: w'ᵀ relu(W f + b), softmax over cells.
    k, d = 1, 16
    wk = model.spatial_attention.hidden.weight[k * d:(k + 1) * d, :, 0, 0]
    bk = model.spatial_attention.hidden.bias[k * d:(k + 1) * d]
    w2 = model.spatial_attention.score.weight[k, :, 0, 0]
    f = feat.flatten(2).transpose(1, 2)  # (N, L, D)
    e = F.relu(f @ wk.T + bk) @ w2
    torch.testing.assert_close(s[:, k].flatten(1), torch.softmax(e, dim=1))


# --------------------------------------------------------------------------- diversity terms


@pytest.mark.parametrize("variant", ["hellinger", "q_prime"])
def test_diversity_zero_for_disjoint_one_hot_and_k_k_minus_1_for_identical(variant):
    k, l = 4, 8
    disjoint = torch.zeros(k, l)
    disjoint[torch.arange(k), torch.tensor([0, 3, 5, 7])] = 1.0
    identical = torch.zeros(k, l)
    identical[:, 2] = 1.0
    assert float(diversity(disjoint.reshape(1, 1, k, 4, 2), variant)) == pytest.approx(0.0, abs=1e-4)
    assert float(diversity(identical.reshape(1, 1, k, 4, 2), variant)) == pytest.approx(k * (k - 1))


def test_hellinger_and_q_prime_on_hand_built_matrices():
    # Two fields of L = 4 cells. Hand values:
    # s1 = (1/2, 1/2, 0, 0), s2 = (0, 1/2, 1/2, 0).
    # Hellinger: √s1·√s2 = 1/2, diagonal 1 → Q = 2·(1/2)² = 1/2.
    # Q': s1·s1 = 1/2, s2·s2 = 1/2, s1·s2 = 1/4 → Q' = 2·(1/2)² + 2·(1/4)² = 5/8.
    s = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0]])
    maps = s.reshape(1, 1, 2, 2, 2)
    assert float(diversity(maps, "hellinger")) == pytest.approx(0.5, abs=1e-4)  # 1e-12 clamp
    assert float(diversity(maps, "q_prime")) == pytest.approx(5 / 8, abs=1e-6)
    # Uniform identical fields: Hellinger hits its maximum K(K−1) while Q' does not, the
    # difference sec. 3.3 describes (Q' also pulls each field towards one cell).
    k, l = 3, 8
    uni = torch.full((1, 1, k, 4, 2), 1 / l)
    assert float(diversity(uni, "hellinger")) == pytest.approx(k * (k - 1), rel=1e-5)
    expected = k * (1 / l - 1) ** 2 + k * (k - 1) / l**2
    assert float(diversity(uni, "q_prime")) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("variant", ["hellinger", "q_prime"])
def test_diversity_on_model_output_matches_elementwise_reference(variant):
    model = tiny(K=4).eval()
    with torch.no_grad():
        out = model({"images": clip(b=1, t=2)})
    s = out.attention["spatial"]
    ref = torch.stack([q_reference(s[0, n].flatten(1), variant == "hellinger") for n in range(2)])
    got = DiversityLoss("spatial", variant=variant)(out, {})
    assert float(got) == pytest.approx(float(ref.mean()), rel=1e-5)


def test_identical_model_fields_give_maximal_hellinger_q():
    """With the second linear map zeroed every model's field is uniform: Q = K(K−1)."""
    model = tiny(K=4).eval()
    with torch.no_grad():
        model.spatial_attention.score.weight.zero_()
        out = model({"images": clip(b=1, t=2)})
    assert float(DiversityLoss("spatial")(out, {})) == pytest.approx(12.0, rel=1e-5)
    assert float(receptive_field_overlap(out.attention["spatial"])) == pytest.approx(1.0, rel=1e-5)


def test_receptive_field_overlap_hand_values():
    s = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0]])
    # BC(1,2) = 1/2, BC(1,3) = 0, BC(2,3) = 0 → mean over 3 pairs = 1/6.
    assert float(receptive_field_overlap(s.reshape(1, 3, 2, 2))) == pytest.approx(1 / 6)
    # Link to eq. 9: Q = Σ_{i≠j} BC² for distributions.
    q = float(diversity(s.reshape(1, 1, 3, 2, 2), "hellinger"))
    assert q == pytest.approx(2 * 0.25, abs=1e-4)


# --------------------------------------------------------------------------- temporal attention


@pytest.mark.parametrize("temporal", ["softmax", "literal", "avg", "max"])
def test_temporal_weights_sum_to_one_and_ignore_padded_frames(temporal):
    model = tiny(temporal=temporal).eval()
    with torch.no_grad():
        if temporal in ("softmax", "literal"):
            model.temporal_attention.weight.normal_(std=0.5)
        mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
        out = model({"images": clip(), "frame_mask": mask})
    w = out.attention["temporal"]
    assert w.shape == (2, 4, 3)
    torch.testing.assert_close(w.sum(1), torch.ones(2, 3))
    assert (w[1, 2:] == 0).all()
    if temporal != "literal":
        assert (w >= 0).all()
    if temporal == "avg":
        torch.testing.assert_close(w[1, :2], torch.full((2, 3), 0.5))


@pytest.mark.parametrize("temporal", ["softmax", "literal", "avg", "max"])
@pytest.mark.parametrize("enhancement", ["second_order", "identity"])
def test_padded_frames_do_not_change_the_embedding(temporal, enhancement):
    """A clip with garbage padded frames encodes exactly like the clip without them."""
    model = tiny(temporal=temporal, enhancement=enhancement).eval()
    with torch.no_grad():
        if temporal in ("softmax", "literal"):
            model.temporal_attention.weight.normal_(std=0.5)
        images = clip(b=1, t=4)
        mask = torch.tensor([[True, True, True, False]])
        padded = model({"images": images, "frame_mask": mask})
        short = model({"images": images[:, :3]})
    torch.testing.assert_close(padded.embedding, short.embedding, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(padded.attention["temporal"][:, :3], short.attention["temporal"],
                               atol=1e-5, rtol=1e-4)
    # Padded frames skip the backbone, so their receptive fields are exactly uniform.
    torch.testing.assert_close(padded.attention["spatial"][0, 3], torch.full((3, 4, 2), 1 / 8))


def test_softmax_and_literal_temporal_weights_by_hand():
    torch.manual_seed(3)
    x = torch.randn(2, 5, 3, 7)
    soft = TemporalAttention(7, 3, "softmax")
    lit = TemporalAttention(7, 3, "literal")
    with torch.no_grad():
        soft.weight.normal_()
        lit.weight.normal_(std=0.1)
        lit.bias.copy_(torch.tensor([2.0, 3.0, 4.0]))
    pooled, w = soft(x)
    e = torch.einsum("btkd,kd->btk", x, soft.weight)  # eq. 11
    torch.testing.assert_close(w, torch.softmax(e, dim=1))
    torch.testing.assert_close(pooled, (w[..., None] * x).sum(1))  # eq. 13
    pooled, w = lit(x)
    e = torch.einsum("btkd,kd->btk", x, lit.weight) + lit.bias
    torch.testing.assert_close(w, e / e.sum(1, keepdim=True))  # eq. 12 as printed
    torch.testing.assert_close(pooled, (w[..., None] * x).sum(1))


def test_max_pooling_weights_count_winning_channels():
    x = torch.tensor([[[[1.0, 5.0, 0.0, 2.0]], [[3.0, 1.0, 0.5, 9.0]]]])  # (B=1, T=2, K=1, D=4)
    pooled, w = TemporalAttention(4, 1, "max")(x)
    torch.testing.assert_close(pooled, torch.tensor([[[3.0, 5.0, 0.5, 9.0]]]))
    torch.testing.assert_close(w, torch.tensor([[[0.25], [0.75]]]))


# --------------------------------------------------------------------------- enhancement E


def test_second_order_enhancement_matches_loop_reference():
    """Supplement eq. 1–4 written frame by frame (with the readings in the module docstring)."""
    torch.manual_seed(4)
    b, t, k, d = 2, 5, 3, 6
    enh = TemporalEnhancement(d, num_frames=4, sigma=2.0)  # t > num_frames: clamped positions
    with torch.no_grad():
        enh.pos_weight.normal_()
        enh.pos_bias.normal_()
        enh.fcn.weight.normal_()  # the zero init would make FCN(pooled) = 0
        enh.fcn.bias.normal_()
    x = torch.randn(b, t, k, d)
    mask = torch.tensor([[True] * 5, [True, True, True, False, True]])
    with torch.no_grad():
        got = enh(x, mask)
        ref = reference_enhancement(enh, x, mask)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def reference_enhancement(enh: TemporalEnhancement, x: torch.Tensor, mask: torch.Tensor):
    b, t, k, d = x.shape
    ref = torch.empty_like(x)
    for bi in range(b):
        for ki in range(k):
            for i in range(t):
                scores = []
                for j in range(t):
                    phi = float(x[bi, i, ki] @ x[bi, j, ki]) / math.sqrt(d)
                    wij = float(enh.pos_weight[min(i, 3), min(j, 3)])
                    psi = wij * math.exp(-abs(i - j) / 2.0) + float(enh.pos_bias[min(j, 3)])
                    scores.append(phi + psi if mask[bi, j] else -math.inf)
                c = torch.softmax(torch.tensor(scores), dim=0)
                pooled = (c[:, None] * x[bi, :, ki]).sum(0)
                ref[bi, i, ki] = enh.fcn(pooled) + x[bi, i, ki]
    return ref


def test_single_frame_clips_work_for_image_pretraining():
    model = tiny(num_frames=6)
    model.train()
    out = model({"images": clip(b=3, t=1), "pids": torch.tensor([0, 1, 2])})
    assert out.logits.shape == (3, 5)
    assert out.attention["spatial"].shape == (3, 1, 3, 4, 2)
    torch.testing.assert_close(out.attention["temporal"], torch.ones(3, 1, 3))
    assert torch.isfinite(out.embedding).all()
    base = tiny(spatial=False, enhancement="identity", temporal="avg").eval()
    with torch.no_grad():
        out = base({"images": clip(b=2, t=1)})
    assert "spatial" not in out.attention
    assert out.attention["temporal"].shape == (2, 1, 1)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"temporal": "literal"},
        {"temporal": "max", "enhancement": "identity"},
        {"spatial": False, "enhancement": "identity", "temporal": "avg"},
    ],
    ids=["full", "literal", "maxpool", "baseline"],
)
def test_gradients_reach_every_parameter(kw):
    # A random FCN in E: with the default zero init, W and b of E get their first gradient
    # only after one step (see test_zero_initialised_e_starts_as_identity_and_then_learns).
    model = tiny(num_frames=4, zero_init_e=False, **kw).train()
    batch = {"images": clip(b=4, t=4), "pids": torch.tensor([0, 1, 2, 3])}
    out = model(batch)
    loss = F.cross_entropy(out.logits, batch["pids"])
    loss = loss + (out.embedding * torch.randn_like(out.embedding)).sum()
    if "spatial" in out.attention:
        loss = loss + DiversityLoss("spatial")(out, batch)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


# --------------------------------------------------------------------------- API


def test_factory_builds_stan_and_rejects_unknown_arguments():
    model = build_model("stan", 7, backbone="resnet_tiny", K=2, d=8)
    assert isinstance(model, STAN) and model.K == 2
    assert model.modalities == ("images",)
    with pytest.raises(TypeError, match="valid"):
        build_model("stan", 7, backbone="resnet_tiny", heads=3)
    with pytest.raises(ValueError, match="temporal"):
        build_stan(3, backbone="resnet_tiny", temporal="mean")
    with pytest.raises(ValueError, match="enhancement"):
        build_stan(3, backbone="resnet_tiny", enhancement="bilinear")


def test_staged_training_groups_by_parameter_name():
    """Sec. 4.2 freezes the CNN first: every backbone parameter is under ``backbone.``."""
    model = tiny()
    names = [n for n, _ in model.named_parameters()]
    backbone = {n for n in names if n.startswith("backbone.")}
    assert {f"backbone.{n}" for n, _ in model.backbone.named_parameters()} == backbone
    assert {n.split(".")[0] for n in names} - {"backbone"} == {
        "spatial_attention", "enhancement", "temporal_attention", "embed", "embed_bn", "classifier"
    }


@pytest.mark.slow
def test_full_size_resnet50_shapes():
    """Sec. 3.2: 256 × 128 frames, conv1..res5c → 8 × 4 grid of D = 2048; K = 6; 128-d output."""
    torch.manual_seed(0)
    model = build_stan(num_classes=10, backbone="resnet50").eval()
    assert model.backbone_dim == 2048 and model.feat_dim == 128
    assert model.embed.weight.shape == (128, 6 * 2048)
    assert model.spatial_attention.hidden.weight.shape == (6 * 256, 2048, 1, 1)
    with torch.no_grad():
        out = model({"images": torch.randn(2, 2, 3, 256, 128)})
    assert out.embedding.shape == (2, 128)
    assert out.attention["spatial"].shape == (2, 2, 6, 8, 4)
    assert out.attention["temporal"].shape == (2, 2, 6)
    torch.testing.assert_close(out.attention["spatial"].sum((-2, -1)), torch.ones(2, 2, 6))
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(2))


def test_init_from_image_pretrained_checkpoint(tmp_path):
    """Sec. 4.2: a one-frame (image) Baseline run initialises the video model's backbone."""
    torch.manual_seed(5)
    image_model = tiny(num_classes=9, spatial=False, enhancement="identity", temporal="avg")
    with torch.no_grad():
        for p in image_model.parameters():
            p.add_(1.0)
    path = tmp_path / "epoch_0001.pt"
    torch.save({"model": image_model.state_dict(), "epoch": 1}, path)
    video = tiny(num_classes=5, init_from=str(path))
    for name, value in image_model.backbone.state_dict().items():
        torch.testing.assert_close(video.backbone.state_dict()[name], value)
    # Different identities and K: classifier and embedding FC keep their own init.
    assert video.classifier.weight.shape == (5, 12)
    assert video.embed.weight.shape == (12, 3 * 64)
    torch.testing.assert_close(video.embed_bn.weight, image_model.embed_bn.weight)
    with pytest.raises(ValueError, match="no tensor matches"):
        torch.save({"model": {"unrelated.weight": torch.zeros(2)}}, tmp_path / "bad.pt")
        tiny(init_from=str(tmp_path / "bad.pt"))


STAN_DIR = Path(__file__).resolve().parents[1] / "configs" / "stan"
CONFIGS = sorted(STAN_DIR.rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(STAN_DIR)) for p in CONFIGS])
def test_configs_load_and_build(path):
    from videoreid.config import load_config

    cfg = load_config(path)
    assert cfg.model.name == "stan"
    args = dict(cfg.model.args, backbone="resnet_tiny", pretrained=None, init_from=None)
    model = build_model("stan", 4, **args)
    image_sets = {"market1501", "dukemtmc_reid", "cuhk03_np"}
    datasets = cfg.data.dataset if isinstance(cfg.data.dataset, list) else [cfg.data.dataset]
    if set(datasets) <= image_sets:  # image pre-training: one-frame tracklets
        assert cfg.data.train_sampler.args["length"] == 1 and not model.spatial
    else:  # sec. 4.2: N = 6 restricted random frames; first frame of each segment at test
        assert cfg.data.train_sampler.name == "restricted_random"
        assert cfg.data.test_plan.name == "first_of_segments"
        assert cfg.data.train_sampler.args["length"] == cfg.data.test_plan.args["length"] == 6
    if "synthetic" not in path.stem:
        assert (cfg.data.height, cfg.data.width) == (256, 128)
        assert cfg.optim.name == "sgd" and cfg.optim.lr == 0.1
        assert cfg.schedule.gamma == 0.1 and len(cfg.schedule.milestones) == 1
        assert cfg.model.args["embed_dim"] == 128 and cfg.model.args["backbone"] == "resnet50"
        if model.spatial and path.parent.name.startswith("table2_"):  # table 2: K = 1 ... 8
            assert model.K == int(path.stem.split("_k")[1])
        elif model.spatial:
            assert model.K == 6


# --------------------------------------------------------------------------- short training


def test_short_synthetic_training_lowers_loss_and_beats_chance(tmp_path):
    """Tiny backbone, synthetic MARS layout, restricted random sampling, first-of-segments
    test clips, softmax CE (the paper's alternative to OIM, which learns too slowly from
    scratch for a unit test) + Hellinger Q, through the project's trainer."""
    import csv

    import numpy as np

    from videoreid.config import config_from_dict
    from videoreid.engine import builders
    from videoreid.evaluation.features import FeatureSet
    from videoreid.evaluation.protocol import evaluate_features

    cfg = config_from_dict({
        "seed": 0,
        "output_dir": str(tmp_path / "run"),
        "data": {
            "dataset": "mars", "root": str(tmp_path / "data"), "height": 64, "width": 32,
            "synth": {"layout": "mars", "ids": 32, "cameras": 2, "preset": "easy",
                      "height": 64, "width": 32,
                      "args": {"keypoints": False, "tracklet_len": [8, 16]}},
            "train_sampler": {"name": "restricted_random", "args": {"length": 4}},
            "test_plan": {"name": "first_of_segments", "args": {"length": 4}},
            "P": 4, "K": 2, "workers": 0, "augment": {"pad": 2},
        },
        "model": {"name": "stan", "args": {"backbone": "resnet_tiny", "last_stride": 1, "K": 2,
                                           "d": 16, "embed_dim": 32, "num_frames": 4}},
        "loss": [{"name": "ce"}, {"name": "diversity", "key": "spatial", "weight": 0.1}],
        "optim": {"name": "adam", "lr": 3e-3},
        "schedule": {"name": "constant"},
        "train": {"epochs": 12, "iters_per_epoch": 8, "device": "cpu", "eval_every": 0,
                  "checkpoint_every": 12, "progress": False},
        "eval": {"metric": "cosine", "batch_size": 64, "precision": "fp32"},
    })
    summary = builders.train_from_config(cfg)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    ce = [float(r["loss/ce"]) for r in rows]
    # Measured with this setting over training/data seeds (0, 0), (1, 0), (2, 2), (3, 3): loss
    # ratio 0.62–0.72 and mAP − chance 0.11–0.25 (0.16 for the seeds used here).
    assert np.mean(ce[-2:]) < 0.85 * ce[0], ce
    m_ap = summary["metrics"]["mars/split0/market/mAP"]
    fs = FeatureSet.load(tmp_path / "run" / "features.npz")
    rng = np.random.default_rng(0)
    chance = []
    for _ in range(20):
        fs.features = rng.standard_normal(fs.features.shape).astype(np.float32)
        chance.append(evaluate_features(fs, "market", "cosine")["mAP"])
    assert m_ap > np.mean(chance) + 0.08, (m_ap, np.mean(chance))


# --------------------------------------------------------------------------- E init, clip lengths


def test_zero_initialised_e_starts_as_identity_and_then_learns():
    """``zero_init_e`` (default): x̂ = x at initialisation, so the full model starts out equal to
    the model without E; after one step E's every parameter receives gradient."""
    with_e = tiny(num_frames=4).eval()
    without = tiny(num_frames=4, enhancement="identity").eval()
    without.load_state_dict({k: v for k, v in with_e.state_dict().items()
                             if not k.startswith("enhancement.")})
    images = clip(b=2, t=4)
    with torch.no_grad():
        torch.testing.assert_close(with_e({"images": images}).embedding,
                                   without({"images": images}).embedding)
    assert float(with_e.enhancement.fcn.weight.detach().abs().sum()) == 0.0
    model = tiny(num_frames=4).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = {"images": clip(b=4, t=4), "pids": torch.tensor([0, 1, 2, 3])}
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(batch).logits, batch["pids"]).backward()
        opt.step()
    for name, p in model.enhancement.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    assert not tiny(zero_init_e=False).enhancement.fcn.weight.eq(0).all()


@pytest.mark.parametrize("override, key", [
    ("data.train_sampler.args.length=4", "data.train_sampler"),
    ("data.test_plan.args.length=8", "data.test_plan"),
    ("model.args.num_frames=8", "data.train_sampler"),
])
def test_clip_length_must_match_num_frames(override, key):
    from videoreid.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=rf"model.args.num_frames=\d+ but {key}.*args.length"):
        load_config("stan/mars", [override])
    # All three set together, or E switched off (no positional parameters): accepted.
    load_config("stan/mars", ["model.args.num_frames=8", "data.train_sampler.args.length=8",
                              "data.test_plan.args.length=8"])
    load_config("stan/mars", [override, "model.args.enhancement=identity"])


# --------------------------------------------------------------------------- equation-level reference


def _randomise_head(model: STAN, seed: int = 7) -> None:
    """Non-trivial values for every non-backbone parameter and BN statistic (eval mode)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("backbone."):
                p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 0.5))
        if model.embed_bn is not None:
            model.embed_bn.running_mean.copy_(torch.randn(model.embed_bn.num_features, generator=g))
            model.embed_bn.running_var.copy_(torch.rand(model.embed_bn.num_features, generator=g) + 0.5)
        if model.temporal_attention.mode == "literal":
            model.temporal_attention.bias.add_(3.0)  # keep Σ_n e_{n,k} away from 0


def stan_reference(model: STAN, images: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
    """Eq. 1–4, 11–15 and the supplement's E recomputed with functional ops from the weights.

    Written independently of the module: per-model weights are unpacked from the conv tensors,
    eq. 1 is an explicit two-layer perceptron per model and cell, the temporal terms are plain
    elementwise products and sums (no shared einsum strings with the code).
    """
    b, t = images.shape[:2]
    k = model.K
    m = torch.ones(b, t, dtype=torch.bool) if mask is None else mask
    f = model.backbone(images.flatten(0, 1))  # (B·T, D, h, w): the CNN is not under test
    d_feat, h, w = f.shape[1:]
    f = f.reshape(b, t, d_feat, h * w).transpose(2, 3)  # (B, T, L, D) cells f_{n,l}
    f = f * m[:, :, None, None]  # padded frames are zeros (they skip the backbone)
    out = {}
    if model.spatial_attention is not None:
        sa = model.spatial_attention
        w1 = sa.hidden.weight.reshape(k, -1, d_feat)  # W_{s,k}: (K, d, D)
        b1 = sa.hidden.bias.reshape(k, -1)  # b_{s,k}
        w2 = sa.score.weight.reshape(k, -1)  # w'_{s,k}: (K, d) (grouped conv)
        hidden = F.relu(torch.einsum("btld,kjd->btlkj", f, w1) + b1)  # eq. 1 inner layer
        e = (hidden * w2).sum(-1)  # (B, T, L, K); b'_{s,k} cancels in eq. 2
        s = torch.softmax(e, dim=2)  # eq. 2: over the L cells
        x = (s[..., None] * f[:, :, :, None, :]).sum(2)  # eq. 3: (B, T, K, D)
        out["spatial"] = s.permute(0, 1, 3, 2).reshape(b, t, k, h, w)
    else:
        x = f.mean(2, keepdim=True)  # (B, T, 1, D)
    if model.enhancement is not None:  # supplement eq. 1–4 (readings (a)–(g))
        enh = model.enhancement
        pos = torch.arange(t)
        idx = pos.clamp(max=enh.num_frames - 1)
        xt = x.permute(0, 2, 1, 3)  # (B, K, T, D)
        phi = (xt[:, :, :, None, :] * xt[:, :, None, :, :]).sum(-1) / math.sqrt(d_feat)
        dist = (pos[:, None] - pos[None, :]).abs().float()
        psi = enh.pos_weight[idx][:, idx] * torch.exp(-dist / enh.sigma) + enh.pos_bias[idx][None, :]
        logits = (phi + psi).masked_fill(~m[:, None, None, :], float("-inf"))
        c = torch.softmax(logits, dim=-1)  # row i: contributions of every frame j to frame i
        pooled = (c[..., None] * xt[:, :, None, :, :]).sum(3)
        x = (F.linear(pooled, enh.fcn.weight, enh.fcn.bias) + xt).permute(0, 2, 1, 3)
    ta = model.temporal_attention
    mm = m[:, :, None]
    if ta.mode in ("softmax", "literal"):
        e = (x * ta.weight[None, None]).sum(-1)  # eq. 11: w_{t,k}ᵀ x̂_{n,k}, (B, T, K)
        if ta.mode == "softmax":
            tw = torch.exp(e - e.max(1, keepdim=True).values) * mm
            tw = tw / tw.sum(1, keepdim=True)  # softmax over the N frames (sec. 3.4 text)
        else:
            e = (e + ta.bias) * mm
            tw = e / e.sum(1, keepdim=True)  # eq. 12 as printed
        pooled = (tw[..., None] * x).sum(1)  # eq. 13
    elif ta.mode == "avg":
        pooled = (x * mm[..., None]).sum(1) / mm.sum(1)[..., None]
    else:
        pooled = x.masked_fill(~mm[..., None], float("-inf")).amax(1)
    z = F.linear(pooled.reshape(b, -1), model.embed.weight, model.embed.bias)  # eq. 15 + FC
    if model.embed_bn is not None:
        bn = model.embed_bn
        z = (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    out["embedding"] = z / z.norm(dim=1, keepdim=True)
    return out


@pytest.mark.parametrize("kw", [
    {}, {"temporal": "literal"}, {"temporal": "avg"}, {"temporal": "max"},
    {"enhancement": "identity"}, {"spatial": False, "enhancement": "identity", "temporal": "avg"},
], ids=["full", "literal", "avg", "max", "no_e", "baseline"])
def test_forward_equals_functional_reference_of_the_equations(kw):
    model = tiny(num_frames=4, **kw).eval()
    _randomise_head(model)
    images = clip(b=2, t=4, seed=3)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    with torch.no_grad():
        for m in (None, mask):
            batch = {"images": images} if m is None else {"images": images, "frame_mask": m}
            got = model(batch)
            ref = stan_reference(model, images, m)
            torch.testing.assert_close(got.embedding, ref["embedding"], rtol=1e-4, atol=1e-5)
            if "spatial" in ref:
                torch.testing.assert_close(got.attention["spatial"], ref["spatial"], rtol=1e-4,
                                           atol=1e-6)


# --------------------------------------------------------------------------- staged training chain

STAGES = sorted((STAN_DIR / "stages").glob("*.yaml"))


def test_stage_chain_reads_each_previous_stage_last_checkpoint():
    """Baseline → SpaAtn+Q → TemAtn → Ind (sec. 4.2–4.3): each stage's ``init_from`` is the
    last checkpoint its predecessor writes, and the stages switch what the paper says."""
    from videoreid.config import load_config

    cfgs = [load_config(p) for p in STAGES]
    assert [p.stem for p in STAGES] == ["1_baseline", "2_spaatn_q", "3_tematn", "4_ind"]
    assert cfgs[0].model.args["init_from"] is None
    for prev, cur in zip(cfgs, cfgs[1:], strict=False):
        assert cur.model.args["init_from"] == (
            f"{prev.output_dir}/checkpoints/epoch_{prev.train.epochs:04d}.pt")
    a = [c.model.args for c in cfgs]
    assert (a[0]["spatial"], a[0]["temporal"]) == (False, "avg")
    assert [x["temporal"] for x in a[1:]] == ["avg", "softmax", "softmax"]
    frozen = [[g.frozen for g in c.optim.param_groups] for c in cfgs]
    assert frozen == [[False], [True], [True], [False]]
    assert [s["name"] for s in cfgs[1].loss] == ["oim", "diversity"]


@pytest.mark.slow
def test_stage_chain_runs_end_to_end(tmp_path, monkeypatch):
    """The four stage configs, shrunk (tiny backbone, 1 epoch of 2 iterations), run in order
    from one working directory, each loading its predecessor's checkpoint."""
    from videoreid.config import load_config
    from videoreid.engine import builders

    monkeypatch.chdir(tmp_path)
    tiny_args = ["model.args.backbone=resnet_tiny", "model.args.last_stride=1", "model.args.K=2",
                 "model.args.d=8", "model.args.embed_dim=16", "model.args.pretrained=null",
                 "data.root=data", "data.height=64", "data.width=32", "data.P=4", "data.K=2",
                 "data.workers=0",
                 "data.synth={layout: mars, ids: 8, cameras: 2, preset: easy, height: 64, "
                 "width: 32, args: {keypoints: false, tracklet_len: [6, 10]}}",
                 "train.epochs=1", "train.iters_per_epoch=2", "train.eval_every=0",
                 "train.checkpoint_every=1", "train.device=cpu", "train.progress=false",
                 "eval.batch_size=16"]
    prev = None
    for path in STAGES:
        extra = [] if prev is None else [f"model.args.init_from={prev}/checkpoints/epoch_0001.pt"]
        cfg = load_config(path, [*tiny_args, *extra])
        builders.train_from_config(cfg)
        prev = cfg.output_dir
        assert (tmp_path / prev / "checkpoints" / "epoch_0001.pt").is_file()
    assert prev == "runs/stan/stages/4_ind"
    # The CNN trained in stage 1 (weights and BN statistics) arrives unchanged through the two
    # frozen stages.
    def backbone(stage: str) -> dict:
        ckpt = torch.load(tmp_path / f"runs/stan/stages/{stage}/checkpoints/epoch_0001.pt",
                          map_location="cpu", weights_only=False)
        return {k: v for k, v in ckpt["model"].items()
                if k.startswith("backbone.") and "num_batches" not in k}
    first, third = backbone("1_baseline"), backbone("3_tematn")
    assert first.keys() == third.keys()
    for k in first:
        torch.testing.assert_close(third[k], first[k], msg=k)
