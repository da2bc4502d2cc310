"""The OpenPose COCO body network (Cao et al., CVPR 2017) in PyTorch, and its weight loader.

Architecture (the caffe ``pose_deploy_linevec.prototxt`` of the COCO body model, as
converted by pytorch-openpose, Hzzone): a VGG-19 front (``conv1_1`` … ``conv4_2``, three 2×2
max-pools: stride 8) with two CPM layers (``conv4_3_CPM`` 512→256, ``conv4_4_CPM`` 256→128)
giving the 128-channel feature ``F``; stage 1 has two branches of three 3×3 convs, a 1×1 conv
to 512 and a 1×1 output conv (``conv5_*_CPM_L1`` → 38 PAFs, ``conv5_*_CPM_L2`` → 19
heatmaps); stages 2–6 take ``[PAFs, heatmaps, F]`` (38 + 19 + 128 = 185 channels) into two
branches of five 7×7 convs, a 1×1 conv and a 1×1 output conv (``Mconv1..7_stageN_L1/L2``).
Every conv has a bias and is followed by a ReLU except the output convs. (The paper counts
"7 stages": the VGG front plus the six CPM stages.)

Module names follow pytorch-openpose's ``bodypose_model`` (``model0``, ``model1_1`` …
``model6_2``, layers named as in caffe), so its state dicts load unchanged. The widely
distributed converted weights ``body_pose_model.pth`` have the *flat* caffe layer names
(``conv1_1.weight``, ``conv5_5_CPM_L2.bias``, ``Mconv7_stage6_L1.weight``);
:func:`map_openpose_keys` maps those to module names (pytorch-openpose does the same with
``util.transfer``), and :func:`load_openpose_weights` loads a local file, checking every
shape and reporting missing and unexpected keys.

Differences from pytorch-openpose: its ``no_relu_layers`` list names ``Mconv7_stage6_L1``
twice and misses ``Mconv7_stage6_L2``, so it applies a ReLU to the final heatmaps; the caffe
model does not, and neither does this one.

Input/output. :class:`OpenPoseBody` takes OpenPose's own input normalisation (BGR, ``x/256 −
0.5``); :func:`imagenet_to_openpose` converts the project's ImageNet-normalised RGB frames.
``forward`` returns the 57 maps in the project's channel order (19 heatmaps then 38 PAFs,
:mod:`videoreid.modalities.pose.layout`); :meth:`OpenPoseBody.forward_branches` returns
``(pafs, heatmaps)`` like pytorch-openpose.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

__all__ = ["OPENPOSE_LAYERS", "OpenPoseBody", "LoadResult", "map_openpose_keys",
           "load_openpose_weights", "imagenet_to_openpose", "openpose_layer_shapes"]

# (name, in, out, kernel, stride, padding); "pool" entries are 2x2/2 max-pools.
_FRONT: tuple[tuple, ...] = (
    ("conv1_1", 3, 64, 3, 1, 1), ("conv1_2", 64, 64, 3, 1, 1), ("pool1_stage1",),
    ("conv2_1", 64, 128, 3, 1, 1), ("conv2_2", 128, 128, 3, 1, 1), ("pool2_stage1",),
    ("conv3_1", 128, 256, 3, 1, 1), ("conv3_2", 256, 256, 3, 1, 1),
    ("conv3_3", 256, 256, 3, 1, 1), ("conv3_4", 256, 256, 3, 1, 1), ("pool3_stage1",),
    ("conv4_1", 256, 512, 3, 1, 1), ("conv4_2", 512, 512, 3, 1, 1),
    ("conv4_3_CPM", 512, 256, 3, 1, 1), ("conv4_4_CPM", 256, 128, 3, 1, 1),
)
_BRANCH_OUT = {1: 38, 2: 19}  # L1: PAFs, L2: heatmaps
_FEATURE = 128
_STAGE_IN = 38 + 19 + _FEATURE  # 185


def _stage1(branch: int) -> tuple[tuple, ...]:
    o = _BRANCH_OUT[branch]
    return (
        (f"conv5_1_CPM_L{branch}", 128, 128, 3, 1, 1), (f"conv5_2_CPM_L{branch}", 128, 128, 3, 1, 1),
        (f"conv5_3_CPM_L{branch}", 128, 128, 3, 1, 1), (f"conv5_4_CPM_L{branch}", 128, 512, 1, 1, 0),
        (f"conv5_5_CPM_L{branch}", 512, o, 1, 1, 0),
    )


def _stage(n: int, branch: int) -> tuple[tuple, ...]:
    o = _BRANCH_OUT[branch]
    convs = [(f"Mconv1_stage{n}_L{branch}", _STAGE_IN, 128, 7, 1, 3)]
    convs += [(f"Mconv{k}_stage{n}_L{branch}", 128, 128, 7, 1, 3) for k in range(2, 6)]
    convs += [(f"Mconv6_stage{n}_L{branch}", 128, 128, 1, 1, 0),
              (f"Mconv7_stage{n}_L{branch}", 128, o, 1, 1, 0)]
    return tuple(convs)


# module name → its layer specs, in pytorch-openpose's naming
OPENPOSE_LAYERS: dict[str, tuple[tuple, ...]] = {"model0": _FRONT}
for _b in (1, 2):
    OPENPOSE_LAYERS[f"model1_{_b}"] = _stage1(_b)
for _n in range(2, 7):
    for _b in (1, 2):
        OPENPOSE_LAYERS[f"model{_n}_{_b}"] = _stage(_n, _b)
_OUTPUT_LAYERS = {specs[-1][0] for name, specs in OPENPOSE_LAYERS.items() if name != "model0"}


def openpose_layer_shapes() -> dict[str, tuple[int, ...]]:
    """Flat caffe name → weight shape of every conv (``conv1_1`` → ``(64, 3, 3, 3)``)."""
    return {s[0]: (s[2], s[1], s[3], s[3])
            for specs in OPENPOSE_LAYERS.values() for s in specs if len(s) > 1}


def _make(specs: Sequence[tuple], relu_last: bool) -> nn.Sequential:
    layers: list[tuple[str, nn.Module]] = []
    for s in specs:
        if len(s) == 1:
            layers.append((s[0], nn.MaxPool2d(kernel_size=2, stride=2, padding=0)))
            continue
        name, cin, cout, k, stride, pad = s
        layers.append((name, nn.Conv2d(cin, cout, k, stride, pad)))
        if name not in _OUTPUT_LAYERS or relu_last:
            layers.append((f"relu_{name}", nn.ReLU(inplace=True)))
    return nn.Sequential(OrderedDict(layers))


class OpenPoseBody(nn.Module):
    """OpenPose COCO body network: VGG-19 front + 6 two-branch CPM stages, stride 8.

    Args:
        stages: number of CPM stages to build and run (1–6; the published model has 6).
            Fewer stages give the intermediate-stage outputs (which the original training
            supervises too) at a fraction of the cost; weight files then load partially
            (the later stages' tensors are reported as unexpected).

    ``forward(x)``: ``x`` ``(N, 3, H, W)`` in OpenPose's input normalisation (BGR, ``/256 −
    0.5``) → ``(N, 57, H/8, W/8)`` (19 heatmaps, then 38 PAFs; floor for sizes not divisible
    by 8).
    """

    def __init__(self, stages: int = 6) -> None:
        super().__init__()
        if not 1 <= stages <= 6:
            raise ValueError(f"OpenPose has 6 stages; got stages={stages}")
        self.stages = stages
        for name, specs in OPENPOSE_LAYERS.items():
            if name == "model0" or int(name[5]) <= stages:
                setattr(self, name, _make(specs, relu_last=False))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # variance-preserving, so an untrained network (tests, or no weight file) still
                # passes signal and gradients through its 40-odd layers; real use loads weights
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward_branches(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(pafs (N, 38, h, w), heatmaps (N, 19, h, w))`` of the last stage run."""
        feat = self.model0(x)
        paf, heat = self.model1_1(feat), self.model1_2(feat)
        for n in range(2, self.stages + 1):
            z = torch.cat([paf, heat, feat], 1)
            paf = getattr(self, f"model{n}_1")(z)
            heat = getattr(self, f"model{n}_2")(z)
        return paf, heat

    def forward(self, x: Tensor) -> Tensor:
        paf, heat = self.forward_branches(x)
        return torch.cat([heat, paf], 1)


def imagenet_to_openpose(
    x: Tensor, mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
) -> Tensor:
    """ImageNet-normalised RGB ``(N, 3, H, W)`` → OpenPose input (BGR 0–255 values ``/256 −
    0.5``), i.e. ``((x·std + mean)·255)/256 − 0.5`` with the channels reversed."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    rgb255 = (x * s + m) * 255.0
    return rgb255.flip(1) / 256.0 - 0.5


class LoadResult(NamedTuple):
    """Module keys the file lacked, and file keys the module does not have."""

    missing: list[str]
    unexpected: list[str]


def map_openpose_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename converted-weight keys to :class:`OpenPoseBody` names.

    ``conv5_5_CPM_L2.weight`` → ``model1_2.conv5_5_CPM_L2.weight`` (flat caffe names, as in
    ``body_pose_model.pth``); keys already in module form (``model0.conv1_1.weight``) and a
    DDP ``module.`` prefix are accepted; anything else is returned unchanged (and will be
    reported as unexpected).
    """
    where = {s[0]: name for name, specs in OPENPOSE_LAYERS.items() for s in specs}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        layer = key.split(".")[0]
        if layer in where:
            key = f"{where[layer]}.{key}"
        out[key] = value
    return out


def load_openpose_weights(
    model: OpenPoseBody, source: str | os.PathLike[str] | Mapping[str, Tensor], strict: bool = True
) -> LoadResult:
    """Load converted OpenPose weights (``body_pose_model.pth``) from a local file or a dict.

    Args:
        model: the network.
        source: ``"coco"`` (the published file, downloaded once into the torch hub cache and
            verified: ``videoreid.models.backbones.weights``), path of a ``torch.save`` d
            state dict (flat caffe names or module names), or the state dict itself.
        strict: raise when a module key is missing from the file.
    Returns:
        :class:`LoadResult`; unexpected keys are logged as a warning. What was loaded
        (source, path, SHA-256) is recorded in ``model.pretrained_weights``.
    Raises:
        FileNotFoundError / ValueError naming the file: unreadable file, shape mismatch,
            missing keys with ``strict``; ``WeightsError`` when ``"coco"`` cannot be fetched.
    """
    if isinstance(source, Mapping):
        state, where = dict(source), "<state dict>"
    else:
        from videoreid.models.backbones.pretrained import read_state_dict
        from videoreid.models.backbones.weights import resolve_weights

        info = resolve_weights("openpose_body", source)
        if info["path"] is None:  # "none": random initialisation on purpose
            model.pretrained_weights = info
            return LoadResult([], [])
        where = info["path"]
        state = read_state_dict(where)
        model.pretrained_weights = info
    state = map_openpose_keys(state)
    own = model.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise ValueError(f"cannot load OpenPose weights {where}: {key!r} has shape "
                             f"{tuple(value.shape)} in the file but {tuple(own[key].shape)} "
                             "in the network")
    result = model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    missing = list(result.missing_keys)
    unexpected = [k for k in state if k not in own]
    if missing and strict:
        raise ValueError(f"OpenPose weights {where} lack {len(missing)} tensors of the COCO "
                         f"body model, e.g. {missing[:6]} (is it the COCO body model "
                         "body_pose_model.pth?)")
    if missing:
        log.warning("%s: %d OpenPose tensors missing: %s", where, len(missing), missing)
    if unexpected:
        log.warning("%s: %d unexpected keys ignored: %s", where, len(unexpected), unexpected[:10])
    log.info("loaded OpenPose weights from %s (%d tensors)", where, len(own) - len(missing))
    return LoadResult(missing, unexpected)
