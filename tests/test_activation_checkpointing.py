"""Activation checkpointing per backbone stage: same gradients, same BatchNorm statistics,
activations really recomputed; ``train.activation_checkpointing`` reaches every backbone."""

from __future__ import annotations

import copy

import pytest
import torch

from videoreid.config import ConfigError
from videoreid.engine.amp import autocast, resolve_amp
from videoreid.engine.memory import apply_activation_checkpointing
from videoreid.models.backbones import build_backbone
from videoreid.models.factory import build_model


def _step(model, batch, amp="none"):
    model.train()
    model.zero_grad(set_to_none=True)
    with autocast(resolve_amp(amp, "cpu")):
        out = model(batch)
    # a loss that reaches every output element differently
    emb = out.embedding.float()
    (emb * torch.linspace(-1, 1, emb.shape[1])).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_gradients_and_running_stats_are_identical_with_checkpointing(amp):
    torch.manual_seed(0)
    plain = build_model("man", 3, backbone="resnet_tiny", pretrained="none", embed_hidden=8)
    ckpt = copy.deepcopy(plain)
    assert apply_activation_checkpointing(ckpt, True) == 2  # both streams
    g = torch.Generator().manual_seed(1)
    # 64 x 32, not smaller: at 32 x 16 layer4's 3x3 stride-2 conv sees a 2 x 1 map, and
    # torch's CPU bf16 weight gradient for it differs between two identical plain runs.
    batch = {"images": torch.randn(2, 2, 3, 64, 32, generator=g),
             "flow": torch.randn(2, 2, 2, 64, 32, generator=g)}
    ga, gb = _step(plain, batch, amp), _step(ckpt, batch, amp)
    assert ga.keys() == gb.keys()
    assert all(n in ga for n, _ in plain.named_parameters() if n.startswith(("app.", "flow.")))
    for n in ga:
        assert torch.equal(ga[n], gb[n]), n
    sa, sb = plain.state_dict(), ckpt.state_dict()
    for k in sa:  # running statistics updated once per step, not again in the recomputation
        assert torch.equal(sa[k], sb[k]), k


def test_checkpointed_stages_are_recomputed_in_backward_only_in_training():
    net = build_backbone("resnet_tiny", pretrained="none")
    calls = {"layer2": 0, "layer3": 0}
    for name in calls:
        getattr(net, name).register_forward_pre_hook(
            lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    net.set_activation_checkpointing(["layer2"])
    x = torch.randn(2, 3, 32, 16)
    net.train()
    net(x).sum().backward()
    assert calls == {"layer2": 2, "layer3": 1}  # forward + recomputation vs. forward only
    net.eval()
    with torch.no_grad():
        net(x)
    assert calls == {"layer2": 3, "layer3": 2}
    with pytest.raises(ValueError, match="layer9"):
        net.set_activation_checkpointing(["layer9"])


def test_config_switch_and_its_errors():
    from videoreid.config import load_config

    cfg = load_config(None, ["train.activation_checkpointing=[layer1, layer2]"], check=False)
    assert cfg.train.activation_checkpointing == ["layer1", "layer2"]
    assert load_config(None, ["train.activation_checkpointing=true"],
                       check=False).train.activation_checkpointing is True
    model = build_model("baseline", 3, backbone="resnet_tiny", pretrained="none")
    assert apply_activation_checkpointing(model, False) == 0
    assert model.backbone.checkpoint_stages == frozenset()
    assert apply_activation_checkpointing(model, ["layer1", "layer2"]) == 1
    assert model.backbone.checkpoint_stages == {"layer1", "layer2"}
    with pytest.raises(ConfigError, match="unknown stages"):
        apply_activation_checkpointing(model, ["conv5"])
    with pytest.raises(ConfigError, match="no backbone"):
        apply_activation_checkpointing(torch.nn.Linear(2, 2), True)
