"""Backbones: ResNet family built from one class, published/local pretrained-weight loading."""

from videoreid.models.backbones.base import STAGES, Backbone, FeatureInfo
from videoreid.models.backbones.pretrained import LoadResult, adapt_input_conv, load_pretrained
from videoreid.models.backbones.resnet import BACKBONES, ResNet, build_backbone
from videoreid.models.backbones.weights import PUBLISHED, WeightsError, resolve_weights

__all__ = [
    "BACKBONES",
    "PUBLISHED",
    "STAGES",
    "WeightsError",
    "Backbone",
    "FeatureInfo",
    "LoadResult",
    "ResNet",
    "adapt_input_conv",
    "build_backbone",
    "load_pretrained",
    "resolve_weights",
]
