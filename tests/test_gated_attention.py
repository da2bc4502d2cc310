"""Gated Attention baseline (Kiran et al., sec. 4, eq. 9–12, fig. 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_man import short_synthetic_run
from torch import nn

from videoreid.models.backbones.base import STAGES
from videoreid.models.factory import build_model
from videoreid.models.gated_attention import (
    GatedAttentionNetwork,
    ShallowFlowCNN,
    build_gated_attention,
)

H, W = 64, 32
TINY_FLOW = (8, 16, 16, 16, 16)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine run faster on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(num_classes: int = 5, **kw) -> GatedAttentionNetwork:
    kw.setdefault("flow_channels", TINY_FLOW)
    return build_gated_attention(num_classes, backbone="resnet_tiny", image_size=(H, W), **kw)


def batch(b: int = 2, t: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.randn(b, t, 3, H, W, generator=g),
            "flow": 3 * torch.randn(b, t, 2, H, W, generator=g)}


def test_shallow_flow_cnn_is_alexnet_shaped_with_stride_16():
    net = ShallowFlowCNN()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (2, 64, 11, 4), (64, 192, 5, 1), (192, 384, 3, 1), (384, 256, 3, 1), (256, 256, 3, 1)]
    with torch.no_grad():
        out = net.eval()(torch.randn(1, 2, 256, 128))
    assert out.shape == (1, 256, 16, 8)  # the layer3 grid of ResNet-50 at 256 × 128
    # the last conv has no ReLU: the pooled response is signed, the gate spans (0, 1)
    assert not isinstance(net.features[-1], nn.ReLU)
    with pytest.raises(ValueError, match="5 convs"):
        ShallowFlowCNN(channels=(8, 8))


def test_gate_is_the_sigmoid_of_the_channel_mean_and_multiplies_the_stage_features():
    """Eq. 11: the stage after l receives ψ ⊙ a with a = σ(mean_c S(F)) on ψ's grid."""
    torch.manual_seed(0)
    model = tiny().eval()
    b = batch()
    seen = {}
    model.backbone.layer4.register_forward_pre_hook(lambda m, i: seen.__setitem__("x", i[0]))
    with torch.no_grad():
        out = model(b)
        x, y = b["images"].flatten(0, 1), b["flow"].flatten(0, 1)
        psi = model.backbone.forward_stages(x, end="layer3")
        pooled = model.flow_cnn(y).mean(1, keepdim=True)
        a = torch.sigmoid(F.interpolate(pooled, size=psi.shape[-2:], mode="bilinear",
                                        align_corners=False))
    gate = out.attention["gate"]
    assert gate.shape == (2, 3, 1, *psi.shape[-2:])
    assert (gate > 0).all() and (gate < 1).all()
    torch.testing.assert_close(gate, a.view(2, 3, 1, *a.shape[-2:]))
    torch.testing.assert_close(seen["x"], psi * a)
    # only image features are used for re-identification: temporal average of φ
    with torch.no_grad():
        phi = model.backbone.forward_stages(psi * a, start="layer4").mean((-2, -1))
    torch.testing.assert_close(out.embedding, phi.view(2, 3, -1).mean(1))


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_works_and_gradients_reach_image_and_flow_networks(stage):
    torch.manual_seed(1)
    model = tiny(stage=stage).train()
    out = model(batch(b=4))
    assert out.embedding.shape == (4, 64) and out.logits.shape == (4, 5)
    h, w = model.backbone.feature_size(H, W, stage)
    assert out.attention["gate"].shape == (4, 3, 1, h, w)
    F.cross_entropy(out.logits, torch.arange(4)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_aggregations_padding_and_errors():
    torch.manual_seed(2)
    model = tiny(aggregation="weighted", embed_hidden=8).eval()
    b = batch(t=4)
    padded = dict(b, frame_mask=torch.tensor([[True, True, True, False]] * 2))
    with torch.no_grad():
        out = model(padded)
        short = model({k: v[:, :3] for k, v in b.items()})
    torch.testing.assert_close(out.embedding, short.embedding, atol=1e-5, rtol=1e-4)
    assert (out.attention["gate"][:, 3] == 0).all()
    torch.testing.assert_close(out.attention["temporal"].sum(1), torch.ones(2))
    with pytest.raises(ValueError, match="needs a stage"):
        tiny(stage=None)
    with pytest.raises(ValueError, match="unknown aggregation"):
        tiny(aggregation="mean")
    with pytest.raises(KeyError, match="flow"):
        model({"images": b["images"]})
    m = build_model("gated_attention", 3, backbone="resnet_tiny", flow_channels=list(TINY_FLOW))
    assert m.modalities == ("images", "flow") and m.feat_dim == 64


@pytest.mark.slow
def test_full_size_shapes():
    torch.manual_seed(0)
    model = build_gated_attention(7, backbone="resnet50").eval()
    with torch.no_grad():
        out = model({"images": torch.randn(1, 2, 3, 256, 128),
                     "flow": torch.randn(1, 2, 2, 256, 128)})
    assert out.embedding.shape == (1, 2048)
    assert out.attention["gate"].shape == (1, 2, 1, 16, 8)


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "gated_attention").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_configs_have_the_paper_settings_and_build(path):
    from videoreid.config import load_config

    cfg = load_config(path)
    assert cfg.model.name == "gated_attention" and cfg.data.modalities == ["flow"]
    assert cfg.optim.name == "adam" and cfg.data.P * cfg.data.K == 32
    assert cfg.data.train_sampler.args["length"] == 4
    a = cfg.model.args
    assert (a["stage"], a["aggregation"]) == ("layer3", "avg")
    model = build_model("gated_attention", 4,
                        **dict(a, backbone="resnet_tiny", pretrained="none",
                               flow_channels=list(TINY_FLOW)))
    assert model.stage == "layer3"


def test_short_synthetic_training_lowers_loss_and_beats_chance(tmp_path):
    totals, mAP, chance = short_synthetic_run(
        tmp_path, "gated_attention", {"backbone": "resnet_tiny", "flow_channels": list(TINY_FLOW)})
    assert totals[-1] < 0.9 * totals[0], totals
    assert mAP > chance + 0.1, (mAP, chance)
