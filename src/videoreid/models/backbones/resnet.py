"""ResNet-18/34/50/101, SE-ResNet-50 and tiny test networks from one class.

Parameter and buffer names follow torchvision (``conv1``, ``bn1``, ``layerX.Y.conv1``,
``downsample.0/1``) so its checkpoints load without renaming; the SE blocks use Cadene's
``pretrainedmodels`` names (``se_module.fc1/fc2``). The stem is *not* a submodule:
:attr:`ResNet.stem` is a property returning a view of ``conv1, bn1, relu, maxpool`` so the
state-dict keys stay top-level, as in torchvision.

SE-ResNet-50 follows Cadene's ``SENet`` (``se_resnet50``): the torchvision-like 7×7 stem, but a
max pool with ``padding=0, ceil_mode=True``; the stride of a bottleneck sits on its first 1×1
conv (Caffe style) rather than on the 3×3 conv; 1×1 downsample convs; SE reduction 16 with
1×1 convs (with bias) as the two fully connected layers.

``in_chans != 3`` (e.g. the 2-channel optical-flow stream) changes only ``conv1``; pretrained
RGB weights are adapted by :func:`videoreid.models.backbones.pretrained.adapt_input_conv`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from videoreid.models.backbones.base import STAGES, Backbone, FeatureInfo
from videoreid.models.backbones.pretrained import load_pretrained
from videoreid.models.backbones.weights import resolve_weights


class SEModule(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018) with 1×1 convs as FC layers (Cadene layout).

    Args:
        channels: input/output channels ``C``.
        reduction: hidden size is ``C // reduction``.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` → same shape, channels rescaled by a gate in ``(0, 1)``."""
        s = x.mean((2, 3), keepdim=True)
        s = torch.sigmoid(self.fc2(self.relu(self.fc1(s))))
        return x * s


class BasicBlock(nn.Module):
    """Two 3×3 convs with an identity/projection shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        se_reduction: int | None = None,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        del stride_in_1x1  # no 1×1 conv in a basic block
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se_module = SEModule(planes, se_reduction) if se_reduction else None
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se_module is not None:
            out = self.se_module(out)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 → 3×3 → 1×1 bottleneck (ResNet-50/101), optionally with an SE gate.

    Args:
        stride_in_1x1: put the stride on ``conv1`` (Caffe / Cadene SE-ResNet) instead of
            ``conv2`` (torchvision "ResNet v1.5").
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        se_reduction: int | None = None,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=s1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=s3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.se_module = SEModule(out, se_reduction) if se_reduction else None
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se_module is not None:
            out = self.se_module(out)
        return self.relu(out + identity)


BLOCKS: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(Backbone):
    """Residual network without its classifier; stages ``stem``, ``layer1`` … ``layer4``.

    Args:
        block: ``"basic"`` or ``"bottleneck"``.
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
        widths: bottleneck/basic widths ("planes") per stage; stage output channels are
            ``width * expansion``.
        stem_width: output channels of ``conv1``.
        last_stride: stride of ``layer4`` (1 doubles its resolution, common in re-id).
        in_chans: input channels (3 for RGB, 2 for optical flow).
        se_reduction: add an SE gate with this reduction to every block (``None``: plain).
        stride_in_1x1: Caffe-style stride placement in bottlenecks (SE-ResNet).
        cadene_pool: stem max pool with ``padding=0, ceil_mode=True`` as in Cadene's SENet
            (torchvision uses ``padding=1``).
        channels_last: keep weights (and the input of the stem) in channels-last memory format.

    Input ``(N, in_chans, H, W)``; ``layer4`` output ``(N, C, H/32, W/32)`` (``H/16`` with
    ``last_stride=1``).
    """

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        last_stride: int = 2,
        in_chans: int = 3,
        se_reduction: int | None = None,
        stride_in_1x1: bool = False,
        cadene_pool: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; valid: {sorted(BLOCKS)}")
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError(f"need 4 stages, got layers={tuple(layers)} widths={tuple(widths)}")
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        block_cls = BLOCKS[block]
        self.block = block
        self.in_chans = in_chans
        self.last_stride = last_stride
        self.channels_last = channels_last
        self.conv1 = nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        if cadene_pool:
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)
        else:
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        inplanes = stem_width
        strides = (1, 2, 2, last_stride)
        info = {"stem": FeatureInfo(stem_width, 4)}
        total = 4
        for i, (n, width, stride) in enumerate(zip(layers, widths, strides, strict=True)):
            stage, inplanes = self._make_layer(
                block_cls, inplanes, width, n, stride, se_reduction, stride_in_1x1, i > 0
            )
            setattr(self, f"layer{i + 1}", stage)
            total *= stride
            info[f"layer{i + 1}"] = FeatureInfo(inplanes, total)
        self.feature_info = info
        self._init_weights()
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @staticmethod
    def _make_layer(
        block_cls: type[nn.Module],
        inplanes: int,
        planes: int,
        blocks: int,
        stride: int,
        se_reduction: int | None,
        stride_in_1x1: bool,
        has_projection: bool,
    ) -> tuple[nn.Sequential, int]:
        out = planes * block_cls.expansion
        downsample = None
        # Stages 2-4 always get a projection, whatever last_stride says, so last_stride never
        # changes the parameter set (and pretrained files load into either setting).
        if stride != 1 or inplanes != out or has_projection:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )
        mods = [block_cls(inplanes, planes, stride, downsample, se_reduction, stride_in_1x1)]
        mods += [
            block_cls(out, planes, 1, None, se_reduction, stride_in_1x1) for _ in range(blocks - 1)
        ]
        return nn.Sequential(*mods), out

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def stem(self) -> nn.Sequential:
        """``conv1 → bn1 → relu → maxpool`` as one module (a view; owns no parameters)."""
        return nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool)

    def forward_stages(self, x: Tensor, start: str | None = None, end: str | None = None) -> Tensor:
        """See :meth:`Backbone.forward_stages`; converts an image to channels-last if asked."""
        if self.channels_last and (start is None or start == STAGES[0]):
            x = x.contiguous(memory_format=torch.channels_last)
        return super().forward_stages(x, start, end)

    def feature_size(self, height: int, width: int, stage: str = "layer4") -> tuple[int, int]:
        """Spatial size of ``stage``'s output for an ``height × width`` input (no forward).

        Used by modules whose kernel spans the whole map (Gao & Nevatia's temporal attention).
        """
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; valid: {list(STAGES)}")

        def conv(n: int, k: int, s: int, p: int, ceil: bool = False) -> int:
            v = (n + 2 * p - k) / s
            return (math.ceil(v) if ceil else math.floor(v)) + 1

        def pool(n: int) -> int:
            mp = self.maxpool
            return conv(n, mp.kernel_size, mp.stride, mp.padding, mp.ceil_mode)

        size = [pool(conv(n, 7, 2, 3)) for n in (height, width)]
        for name in STAGES[1 : STAGES.index(stage) + 1]:
            first = getattr(self, name)[0]
            # Every strided conv here is 3×3/pad 1 or 1×1/pad 0: both give ceil(n / s).
            stride = first.downsample[0].stride[0] if first.downsample is not None else 1
            size = [conv(n, 1, stride, 0) for n in size]
        return size[0], size[1]


def _build(arch: str, pretrained: str | None, **kw) -> ResNet:
    """``ResNet(**kw)`` with weights per ``pretrained`` (``models.backbones.weights``).

    The model records ``arch`` and what initialised it in ``pretrained_weights`` (source,
    path, SHA-256), which the trainer writes into the run info.
    """
    model = ResNet(**kw)
    info = resolve_weights(arch, pretrained)
    if info["path"]:
        load_pretrained(model, info["path"])
    model.arch = arch
    model.pretrained_weights = info
    return model


def resnet18(
    *,
    last_stride: int = 2,
    in_chans: int = 3,
    pretrained: str | None = None,
    channels_last: bool = False,
) -> ResNet:
    """ResNet-18 (11.2 M parameters without fc); layer4: 512 channels."""
    return _build(
        "resnet18",
        pretrained,
        block="basic",
        layers=(2, 2, 2, 2),
        last_stride=last_stride,
        in_chans=in_chans,
        channels_last=channels_last,
    )


def resnet34(
    *,
    last_stride: int = 2,
    in_chans: int = 3,
    pretrained: str | None = None,
    channels_last: bool = False,
) -> ResNet:
    """ResNet-34; layer4: 512 channels."""
    return _build(
        "resnet34",
        pretrained,
        block="basic",
        layers=(3, 4, 6, 3),
        last_stride=last_stride,
        in_chans=in_chans,
        channels_last=channels_last,
    )


def resnet50(
    *,
    last_stride: int = 2,
    in_chans: int = 3,
    pretrained: str | None = None,
    channels_last: bool = False,
) -> ResNet:
    """ResNet-50 (23.5 M parameters without fc); layer4: 2048 channels."""
    return _build(
        "resnet50",
        pretrained,
        block="bottleneck",
        layers=(3, 4, 6, 3),
        last_stride=last_stride,
        in_chans=in_chans,
        channels_last=channels_last,
    )


def resnet101(
    *,
    last_stride: int = 2,
    in_chans: int = 3,
    pretrained: str | None = None,
    channels_last: bool = False,
) -> ResNet:
    """ResNet-101; layer4: 2048 channels."""
    return _build(
        "resnet101",
        pretrained,
        block="bottleneck",
        layers=(3, 4, 23, 3),
        last_stride=last_stride,
        in_chans=in_chans,
        channels_last=channels_last,
    )


def se_resnet50(
    *,
    last_stride: int = 2,
    in_chans: int = 3,
    pretrained: str | None = None,
    channels_last: bool = False,
) -> ResNet:
    """SE-ResNet-50 in Cadene's layout (see module docstring); layer4: 2048 channels."""
    return _build(
        "se_resnet50",
        pretrained,
        block="bottleneck",
        layers=(3, 4, 6, 3),
        last_stride=last_stride,
        in_chans=in_chans,
        channels_last=channels_last,
        se_reduction=16,
        stride_in_1x1=True,
        cadene_pool=True,
    )


def resnet_tiny(
    *,
    last_stride: int = 2,
    in_chans: int = 3,
    pretrained: str | None = None,
    channels_last: bool = False,
) -> ResNet:
    """Test network: bottlenecks, one per stage, stem 8, widths 8/8/16/16 → 32/32/64/64 channels."""
    return _build(
        "resnet_tiny",
        pretrained,
        block="bottleneck",
        layers=(1, 1, 1, 1),
        widths=(8, 8, 16, 16),
        stem_width=8,
        last_stride=last_stride,
        in_chans=in_chans,
        channels_last=channels_last,
    )


def se_resnet_tiny(
    *,
    last_stride: int = 2,
    in_chans: int = 3,
    pretrained: str | None = None,
    channels_last: bool = False,
) -> ResNet:
    """Test network with SE-ResNet-50's block and stem layout at :func:`resnet_tiny`'s size."""
    return _build(
        "se_resnet_tiny",
        pretrained,
        block="bottleneck",
        layers=(1, 1, 1, 1),
        widths=(8, 8, 16, 16),
        stem_width=8,
        last_stride=last_stride,
        in_chans=in_chans,
        channels_last=channels_last,
        se_reduction=4,
        stride_in_1x1=True,
        cadene_pool=True,
    )


BACKBONES: dict[str, Callable[..., ResNet]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "se_resnet50": se_resnet50,
    "resnet_tiny": resnet_tiny,
    "se_resnet_tiny": se_resnet_tiny,
}


def build_backbone(name: str, **kwargs) -> ResNet:
    """Build a backbone by name; ``kwargs`` are the builder's (``last_stride``, ``in_chans``,
    ``pretrained``, ``channels_last``). Unknown names or arguments raise an error listing the
    valid ones. ``pretrained``: ``"imagenet"`` (the published file, fetched once into the
    torch hub cache and verified), a local file path, ``"none"`` or ``None`` (random)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid: {sorted(BACKBONES)}")
    builder = BACKBONES[name]
    valid = list(inspect.signature(builder).parameters)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(f"unknown arguments {unknown} for backbone {name!r}; valid: {valid}")
    return builder(**kwargs)
