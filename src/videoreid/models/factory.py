"""Model builders by name: a plain dict, no import-time registration.

``build_model(name, num_classes, **kwargs)``: ``kwargs`` are the config's ``model.args``,
checked against the builder's signature. A builder is a function or, where the model's
constructor takes exactly the config's arguments, the model class itself (its ``__init__``
signature is then the one checked), so no forwarding wrapper repeats the argument list.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

from torch import nn

from videoreid.models.aggregation import AGGREGATIONS, build_aggregation
from videoreid.models.alignnet import build_alignnet
from videoreid.models.backbones.resnet import build_backbone
from videoreid.models.baseline import BaselineModel
from videoreid.models.cmmanet import build_cmmanet
from videoreid.models.gated_attention import build_gated_attention
from videoreid.models.man import build_man
from videoreid.models.rgsa_rgtr import build_rgsa_rgtr
from videoreid.models.stan import build_stan


def build_baseline(
    num_classes: int,
    *,
    backbone: str = "resnet50",
    pretrained: str | None = None,
    last_stride: int = 2,
    aggregation: str = "avg",
    bnneck: bool = True,
    image_size: Sequence[int] = (256, 128),
    attention_hidden: int = 256,
    attention_normalize: str = "softmax",
    rnn_hidden: int = 512,
    channels_last: bool = False,
) -> BaselineModel:
    """Gao & Nevatia baseline: ``aggregation`` ∈ ``avg`` (TP), ``max``, ``attention`` (TA), ``rnn``.

    Args:
        num_classes: training identities.
        backbone: name in :data:`videoreid.models.backbones.BACKBONES`.
        pretrained: local weights file for the backbone, or ``None``.
        last_stride: stride of ``layer4`` (2 as in the paper).
        aggregation: temporal aggregation name.
        bnneck: BNNeck head instead of the paper's plain classifier.
        image_size: ``(H, W)`` of the input frames; sets TA's spatial kernel.
        attention_hidden, attention_normalize: TA's spatial-conv width and score normaliser.
        rnn_hidden: LSTM hidden size.
        channels_last: channels-last backbone.
    """
    if aggregation not in AGGREGATIONS:  # fail before building a large backbone
        raise ValueError(f"unknown aggregation {aggregation!r}; valid: {sorted(AGGREGATIONS)}")
    net = build_backbone(
        backbone, last_stride=last_stride, pretrained=pretrained, channels_last=channels_last
    )
    agg_kwargs: dict = {}
    if aggregation == "attention":
        agg_kwargs = {
            "feature_size": net.feature_size(int(image_size[0]), int(image_size[1])),
            "hidden": attention_hidden,
            "normalize": attention_normalize,
        }
    elif aggregation == "rnn":
        agg_kwargs = {"hidden": rnn_hidden}
    agg = build_aggregation(aggregation, net.out_channels, **agg_kwargs)
    return BaselineModel(net, agg, num_classes, bnneck=bnneck)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "alignnet": build_alignnet,
    "baseline": build_baseline,
    "cmmanet": build_cmmanet,
    "rgsa_rgtr": build_rgsa_rgtr,
    "stan": build_stan,
    "man": build_man,
    "gated_attention": build_gated_attention,
}


def valid_model_args(name: str) -> list[str]:
    """Keyword arguments ``build_model`` accepts for model ``name`` (besides ``num_classes``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {sorted(MODELS)}")
    params = inspect.signature(MODELS[name]).parameters
    return [p for p in params if p != "num_classes"]


def build_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build model ``name`` with ``kwargs`` (the config's ``model.args``).

    Raises:
        ValueError: unknown model name (lists the valid ones).
        TypeError: unknown keyword argument (lists the valid ones for this model).
    """
    valid = valid_model_args(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(f"unknown arguments {unknown} for model {name!r}; valid: {valid}")
    return MODELS[name](num_classes, **kwargs)
