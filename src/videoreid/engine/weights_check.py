"""Which weights a run starts from: refuse silent random initialisation, record what loaded.

The papers all start their ResNets from ImageNet. A config that leaves
``model.args.pretrained`` unset (``null``) would quietly train a full-size backbone from
random weights, so ``videoreid train`` refuses it at start-up, before any data is read,
unless the config says ``pretrained: none`` (random on purpose) or initialises the whole model
from a checkpoint (``model.args.init_from``). Tiny test backbones (``resnet_tiny`` …) are
exempt: they have no published weights.

After the model is built, :func:`weights_report` lists every module that records what
initialised it (backbones and the OpenPose network set ``pretrained_weights``: source,
path, SHA-256, URL); the trainer writes it into ``run_info.json`` under ``"weights"``.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from videoreid.config import ConfigError
from videoreid.models.backbones.weights import PUBLISHED
from videoreid.utils.io import atomic_write_json

__all__ = ["FULL_SIZE_BACKBONES", "check_pretrained_choice", "refuse_random_backbones",
           "weights_report", "record_weights"]

# Backbones with published ImageNet weights are the full-size ones (ResNet-18 and up).
FULL_SIZE_BACKBONES: frozenset[str] = frozenset(n for n, d in PUBLISHED if d == "imagenet")


def _refusal(model_name: str, backbones: list[str]) -> ConfigError:
    names = ", ".join(sorted(set(backbones)))
    return ConfigError(
        f"model.args.pretrained is not set, so the {names} backbone of model {model_name!r} "
        "would train from random weights (the papers start from ImageNet). Set "
        "model.args.pretrained=imagenet (the published file, downloaded once into the torch "
        "hub cache), a local weight file, or model.args.pretrained=none to train from "
        "scratch on purpose"
    )


def check_pretrained_choice(model_name: str, args: Mapping[str, Any]) -> None:
    """Refuse, from the config alone, a full-size ``backbone`` with ``pretrained`` unset.

    Uses the model builder's signature for defaults, so it runs before any data is read.

    Raises:
        ConfigError: naming the backbone and the three valid choices.
    """
    from videoreid.models.factory import MODELS

    if model_name not in MODELS:
        return  # reported elsewhere, with the valid names
    params = inspect.signature(MODELS[model_name]).parameters

    def value(key: str) -> Any:
        if key in args:
            return args[key]
        default = params[key].default if key in params else None
        return None if default is inspect.Parameter.empty else default

    if "pretrained" not in params or value("pretrained") is not None or value("init_from"):
        return
    backbone = value("backbone")
    if isinstance(backbone, str) and backbone in FULL_SIZE_BACKBONES:
        raise _refusal(model_name, [backbone])


def weights_report(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{module name: pretrained_weights}`` for every module that records its weights."""
    out = {}
    for name, m in model.named_modules():
        info = getattr(m, "pretrained_weights", None)
        if isinstance(info, dict):
            out[name or "<model>"] = dict(info)
    return out


def refuse_random_backbones(model: nn.Module, model_name: str, args: Mapping[str, Any]) -> None:
    """The same refusal on the built model: any full-size backbone whose weights are unset.

    Catches models whose backbone argument is not called ``backbone``.
    """
    if args.get("init_from"):
        return
    unset = [info["network"] for info in weights_report(model).values()
             if info.get("source") == "unset" and info.get("network") in FULL_SIZE_BACKBONES]
    if unset:
        raise _refusal(model_name, unset)


def record_weights(run_dir: str | os.PathLike[str], report: Mapping[str, Any],
                   key: str = "weights") -> None:
    """Add ``report`` under ``key`` to ``run_dir/run_info.json`` (created if absent)."""
    path = Path(run_dir) / "run_info.json"
    info = json.loads(path.read_text()) if path.is_file() else {}
    info[key] = dict(report)
    atomic_write_json(path, info)
