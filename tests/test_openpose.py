"""OpenPose COCO body network: published layer shapes, loading converted weights
(``body_pose_model.pth`` key format, written by the test), forward contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from videoreid.models.openpose import (
    OpenPoseBody,
    imagenet_to_openpose,
    load_openpose_weights,
    map_openpose_keys,
)

# The published COCO body model (pose_deploy_linevec.prototxt / pytorch-openpose model.py):
# layer -> (in, out, kernel). Written out independently of the module under test.
PUBLISHED: dict[str, tuple[int, int, int]] = {
    "conv1_1": (3, 64, 3), "conv1_2": (64, 64, 3), "conv2_1": (64, 128, 3),
    "conv2_2": (128, 128, 3), "conv3_1": (128, 256, 3), "conv3_2": (256, 256, 3),
    "conv3_3": (256, 256, 3), "conv3_4": (256, 256, 3), "conv4_1": (256, 512, 3),
    "conv4_2": (512, 512, 3), "conv4_3_CPM": (512, 256, 3), "conv4_4_CPM": (256, 128, 3),
}
for _b, _o in ((1, 38), (2, 19)):
    PUBLISHED.update({f"conv5_1_CPM_L{_b}": (128, 128, 3), f"conv5_2_CPM_L{_b}": (128, 128, 3),
                      f"conv5_3_CPM_L{_b}": (128, 128, 3), f"conv5_4_CPM_L{_b}": (128, 512, 1),
                      f"conv5_5_CPM_L{_b}": (512, _o, 1)})
    for _s in range(2, 7):
        PUBLISHED[f"Mconv1_stage{_s}_L{_b}"] = (185, 128, 7)
        for _k in range(2, 6):
            PUBLISHED[f"Mconv{_k}_stage{_s}_L{_b}"] = (128, 128, 7)
        PUBLISHED[f"Mconv6_stage{_s}_L{_b}"] = (128, 128, 1)
        PUBLISHED[f"Mconv7_stage{_s}_L{_b}"] = (128, _o, 1)


@pytest.fixture(scope="module")
def net() -> OpenPoseBody:
    torch.manual_seed(0)
    return OpenPoseBody().eval()


def converted_state_dict(offset: float = 0.0) -> dict[str, torch.Tensor]:
    """A state dict in body_pose_model.pth's flat caffe-name format.

    Every tensor is a view into one shared buffer starting at its own position, so values
    differ between tensors while ``torch.save`` writes the storage once (~10 MB, not the
    model's 209 MB).
    """
    biggest = max(cin * cout * k * k for cin, cout, k in PUBLISHED.values())
    base = torch.arange(biggest + 2 * len(PUBLISHED), dtype=torch.float32) * 1e-6 + offset
    state = {}
    for i, (name, (cin, cout, k)) in enumerate(PUBLISHED.items()):
        state[f"{name}.weight"] = base[2 * i: 2 * i + cin * cout * k * k].view(cout, cin, k, k)
        state[f"{name}.bias"] = base[2 * i + 1: 2 * i + 1 + cout]
    return state


def test_network_has_the_published_layers(net):
    convs = {name.split(".")[-1]: m for name, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    assert set(convs) == set(PUBLISHED) and len(convs) == 92
    for name, (cin, cout, k) in PUBLISHED.items():
        c = convs[name]
        assert (c.in_channels, c.out_channels, c.kernel_size) == (cin, cout, (k, k)), name
        assert c.padding == ((k - 1) // 2, (k - 1) // 2) and c.stride == (1, 1)
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3  # stride 8
    total = sum(cin * cout * k * k + cout for cin, cout, k in PUBLISHED.values())
    assert sum(p.numel() for p in net.parameters()) == total == 52_311_446
    # pytorch-openpose's module names, so its own state dicts load as they are
    assert "model0.conv1_1.weight" in net.state_dict()
    assert "model6_2.Mconv7_stage6_L2.bias" in net.state_dict()


def test_output_convs_have_no_relu(net):
    for name in ("model1_1", "model1_2", "model6_1", "model6_2"):
        seq = getattr(net, name)
        assert isinstance(list(seq)[-1], nn.Conv2d), name
    assert isinstance(net.model0[-1], nn.ReLU)  # the feature F is post-ReLU


def test_loads_converted_weights_file_with_zero_missing_keys(net, tmp_path):
    state = converted_state_dict()
    path = tmp_path / "body_pose_model.pth"
    torch.save(state, path)
    result = load_openpose_weights(net, path)
    assert result.missing == [] and result.unexpected == []
    own = net.state_dict()
    for key, value in state.items():
        (mapped,) = map_openpose_keys({key: value})
        assert torch.equal(own[mapped], value), key
    assert map_openpose_keys({"Mconv7_stage6_L1.weight": 0}) == {
        "model6_1.Mconv7_stage6_L1.weight": 0}
    assert map_openpose_keys({"module.conv4_4_CPM.bias": 0}) == {"model0.conv4_4_CPM.bias": 0}
    # module-format keys (pytorch-openpose's own state_dict) load too
    module_format = map_openpose_keys(converted_state_dict(offset=1.0))
    assert all(k.startswith("model") for k in module_format)
    assert load_openpose_weights(net, module_format) == ([], [])
    assert torch.equal(net.model0.conv1_1.bias, state["conv1_1.bias"] + 1.0)
    extra = dict(state, **{"fc.weight": torch.zeros(2)})
    assert load_openpose_weights(net, extra).unexpected == ["fc.weight"]


def test_weight_file_errors_name_the_problem(net, tmp_path):
    state = converted_state_dict()
    del state["Mconv3_stage4_L2.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match="partial.pth.*Mconv3_stage4_L2"):
        load_openpose_weights(net, path)
    assert load_openpose_weights(net, path, strict=False).missing == [
        "model4_2.Mconv3_stage4_L2.weight"]
    state = converted_state_dict()
    state["conv1_1.weight"] = torch.zeros(64, 3, 5, 5)  # wrong kernel size
    with pytest.raises(ValueError, match="conv1_1"):
        load_openpose_weights(net, state)
    with pytest.raises(FileNotFoundError):
        load_openpose_weights(net, tmp_path / "nope.pth")


def test_forward_gives_heatmaps_then_pafs_at_stride_8(net):
    torch.manual_seed(0)
    for m in net.modules():  # earlier tests loaded constant weights
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=(2 / m.weight[0].numel()) ** 0.5)
            nn.init.normal_(m.bias, std=0.01)
    x = torch.randn(1, 3, 32, 24)
    with torch.no_grad():
        out = net(x)
        paf, heat = net.forward_branches(x)
    assert out.shape == (1, 57, 4, 3) and paf.shape[1] == 38 and heat.shape[1] == 19
    torch.testing.assert_close(out, torch.cat([heat, paf], 1))
    assert out.min() < 0  # no ReLU on the outputs
    assert OpenPoseBody.__init__.__defaults__ == (6,)


def test_imagenet_to_openpose_by_hand():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    rgb = torch.tensor([200.0, 100.0, 50.0])  # one pixel, 0-255
    x = ((rgb / 255 - torch.tensor(mean)) / torch.tensor(std)).view(1, 3, 1, 1)
    got = imagenet_to_openpose(x).view(3)
    want = torch.tensor([50.0, 100.0, 200.0]) / 256 - 0.5  # BGR
    torch.testing.assert_close(got, want)
