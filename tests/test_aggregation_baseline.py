"""Temporal aggregation (Gao & Nevatia baselines) and BaselineModel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videoreid.models.aggregation import (
    AGGREGATIONS,
    TemporalAttention,
    TemporalRNN,
    build_aggregation,
)
from videoreid.models.baseline import BaselineModel
from videoreid.models.factory import MODELS, build_model
from videoreid.models.output import ReIDOutput

C, H, W = 6, 2, 3


def make(name: str) -> torch.nn.Module:
    kw = {"feature_size": (H, W), "hidden": 5} if name == "attention" else {}
    if name == "rnn":
        kw = {"hidden": 7}
    torch.manual_seed(0)
    m = build_aggregation(name, C, **kw).eval()
    if name == "attention":
        # Positive temporal-conv bias keeps the ReLU'd scores alive for the checks below.
        torch.nn.init.constant_(m.temporal_conv.bias, 0.5)
    return m


@pytest.mark.parametrize("name", sorted(AGGREGATIONS))
def test_shapes(name):
    m = make(name)
    feat = torch.randn(3, 4, C, H, W)
    pooled, weights = m(feat)
    assert pooled.shape == (3, m.out_channels)
    if name == "attention":
        assert weights.shape == (3, 4)
    else:
        assert weights is None
        assert m(feat.mean((-2, -1)))[0].shape == (3, m.out_channels)


def test_avg_and_max_reference():
    feat = torch.randn(2, 5, C, H, W)
    vec = feat.mean((-2, -1))
    torch.testing.assert_close(make("avg")(feat)[0], vec.mean(1))
    torch.testing.assert_close(make("max")(feat)[0], vec.amax(1))
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 0, 1]], dtype=torch.bool)
    torch.testing.assert_close(make("avg")(feat, mask)[0][0], vec[0, [0, 2, 3]].mean(0))
    torch.testing.assert_close(make("max")(feat, mask)[0][1], vec[1, 4])


def test_temporal_attention_reference():
    m = make("attention")
    feat = torch.randn(2, 4, C, H, W)
    pooled, weights = m(feat)
    # Spatial conv with an h×w kernel on an h×w map is a linear map of the flattened map.
    wsp = m.spatial_conv.weight.reshape(m.spatial_conv.out_channels, -1)
    a = F.relu(feat.flatten(2) @ wsp.t() + m.spatial_conv.bias)  # (B, T, hidden)
    wt, bt = m.temporal_conv.weight[0], m.temporal_conv.bias  # (hidden, 3)
    padded = F.pad(a, (0, 0, 1, 1))  # zero frame before and after
    scores = F.relu(sum(padded[:, i : i + 4] @ wt[:, i] for i in range(3)) + bt)
    expected_w = torch.softmax(scores, dim=1)
    torch.testing.assert_close(weights, expected_w)
    torch.testing.assert_close(weights.sum(1), torch.ones(2))
    torch.testing.assert_close(pooled, (feat.mean((-2, -1)) * expected_w[..., None]).sum(1))


def test_temporal_attention_sigmoid_weights_sum_to_one():
    torch.manual_seed(0)
    m = TemporalAttention(C, (H, W), hidden=5, normalize="sigmoid")
    _, w = m(torch.randn(2, 3, C, H, W), torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    torch.testing.assert_close(w.sum(1), torch.ones(2))
    assert w[0, 2] == 0


def test_temporal_attention_checks_feature_size():
    with pytest.raises(ValueError, match="image_size"):
        make("attention")(torch.randn(1, 2, C, H + 1, W))


def test_rnn_reference():
    m = make("rnn")
    feat = torch.randn(2, 3, C)
    out, _ = m.lstm(feat)
    torch.testing.assert_close(m(feat)[0], out.mean(1))


@pytest.mark.parametrize("name", sorted(AGGREGATIONS))
def test_padded_frames_do_not_matter(name):
    m = make(name)
    torch.manual_seed(1)
    feat = torch.randn(3, 5, C, H, W)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 1, 0, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    other = feat.clone()
    other[~mask] = torch.randn(int((~mask).sum()), C, H, W) * 10
    with torch.no_grad():
        p1, w1 = m(feat, mask)
        p2, w2 = m(other, mask)
        torch.testing.assert_close(p1, p2)
        for b in range(3):  # same as the clip made of the real frames only
            pb, wb = m(feat[b : b + 1, mask[b]])
            torch.testing.assert_close(p1[b : b + 1], pb, rtol=1e-5, atol=1e-6)
            if w1 is not None:
                torch.testing.assert_close(w1[b, mask[b]], wb[0])
                assert (w1[b, ~mask[b]] == 0).all()
                torch.testing.assert_close(w1[b].sum(), torch.tensor(1.0))


def test_build_aggregation_errors():
    with pytest.raises(ValueError, match="avg"):
        build_aggregation("mean", 4)
    with pytest.raises(TypeError, match="hidden"):
        build_aggregation("rnn", 4, hiden=3)


# ---------------------------------------------------------------------- BaselineModel
def tiny(aggregation: str, bnneck: bool = True, num_classes: int = 5) -> BaselineModel:
    torch.manual_seed(0)
    m = build_model(
        "baseline",
        num_classes,
        backbone="resnet_tiny",
        aggregation=aggregation,
        bnneck=bnneck,
        image_size=(64, 32),
        rnn_hidden=12,
        attention_hidden=8,
    )
    if aggregation == "attention":
        torch.nn.init.constant_(m.aggregation.temporal_conv.bias, 0.5)
    return m


def clip_batch(b: int = 2, t: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.randn(b, t, 3, 64, 32, generator=g), "pids": torch.arange(b)}


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
@pytest.mark.parametrize("bnneck", [True, False])
def test_baseline_outputs(aggregation, bnneck):
    m = tiny(aggregation, bnneck)
    dim = 12 if aggregation == "rnn" else 64
    out = m.train()(clip_batch())
    assert isinstance(out, ReIDOutput)
    assert out.embedding.shape == (2, dim) and out.metric_feature.shape == (2, dim)
    assert out.logits.shape == (2, 5)
    if aggregation == "attention":
        assert out.attention["temporal"].shape == (2, 3)
        torch.testing.assert_close(out.attention["temporal"].sum(1), torch.ones(2))
    else:
        assert out.attention == {}
    with torch.no_grad():
        ev = m.eval()(clip_batch())
    assert ev.logits is None and ev.embedding.shape == (2, dim)
    if not bnneck:
        torch.testing.assert_close(ev.embedding, ev.metric_feature)


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
def test_baseline_mask_invariance(aggregation):
    m = tiny(aggregation)
    batch = clip_batch(b=2, t=4)
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 1]], dtype=torch.bool)
    other = batch["images"].clone()
    other[~mask] = torch.randn(int((~mask).sum()), 3, 64, 32) * 5
    # Training mode too: padded frames must not enter the backbone's batch statistics.
    for train in (True, False):
        m.train(train)
        torch.manual_seed(0)
        a = m({**batch, "frame_mask": mask})
        torch.manual_seed(0)
        b = m({"images": other, "pids": batch["pids"], "frame_mask": mask})
        torch.testing.assert_close(a.embedding, b.embedding)
        torch.testing.assert_close(a.metric_feature, b.metric_feature)
    m.eval()
    with torch.no_grad():
        full = m({**batch, "frame_mask": mask})
        for i in range(2):
            one = m({"images": batch["images"][i : i + 1, mask[i]]})
            torch.testing.assert_close(
                full.embedding[i : i + 1], one.embedding, rtol=1e-4, atol=1e-5
            )


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
@pytest.mark.parametrize("bnneck", [True, False])
def test_gradients_reach_every_parameter(aggregation, bnneck):
    m = tiny(aggregation, bnneck).train()
    batch = clip_batch(b=4, t=3)
    batch["pids"] = torch.tensor([0, 1, 0, 1])
    out = m(batch)
    loss = F.cross_entropy(out.logits, batch["pids"]) + out.metric_feature.pow(2).mean()
    loss.backward()
    for name, p in m.named_parameters():
        if not p.requires_grad:
            assert name == "bnneck.bn.bias"  # BNNeck's frozen shift
            continue
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_build_model_validates_arguments():
    assert "baseline" in MODELS
    with pytest.raises(TypeError) as e:
        build_model("baseline", 3, backbone="resnet_tiny", agregation="avg")
    assert "agregation" in str(e.value) and "aggregation" in str(e.value)
    with pytest.raises(ValueError, match="baseline"):
        build_model("nope", 3)
    with pytest.raises(ValueError, match="rnn"):
        build_model("baseline", 3, backbone="resnet_tiny", aggregation="lstm")


def test_baseline_without_classifier():
    m = tiny("avg", num_classes=0).train()
    out = m(clip_batch())
    assert out.logits is None and out.embedding.shape == (2, 64)


def test_rnn_module_type():
    assert isinstance(tiny("rnn").aggregation, TemporalRNN)
