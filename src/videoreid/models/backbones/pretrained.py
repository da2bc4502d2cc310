"""Load ImageNet weights into :class:`~videoreid.models.backbones.resnet.ResNet` from a local file.

Accepted layouts (after unwrapping ``{"state_dict": ...}`` / ``{"model": ...}`` and stripping
a DDP ``module.`` prefix):

- torchvision ResNet: ``conv1.weight``, ``bn1.*``, ``layerX.Y.{conv,bn}N.*``,
  ``layerX.Y.downsample.{0,1}.*`` — the model's own names, loaded as they are.
- Cadene ``pretrainedmodels`` SE-ResNet-50: ``layer0.conv1.*`` / ``layer0.bn1.*`` are renamed to
  ``conv1.*`` / ``bn1.*``; ``layerX.Y.se_module.fc1/fc2.*`` and ``downsample.{0,1}`` already match.

Classifier weights (``fc.*``, ``last_linear.*``) are ignored (counted in the log). Files saved
before PyTorch 0.4 (torchvision's and Cadene's releases) have no ``num_batches_tracked``
buffers; those are not reported as missing since the model's value (0) is the right one.

A 3-channel ``conv1.weight`` loaded into a model with ``in_chans != 3`` is adapted by
:func:`adapt_input_conv`. Any other shape mismatch is an error naming key, file and shapes.
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model")
IGNORED_PREFIXES: tuple[str, ...] = ("fc.", "last_linear.")
RENAMES: tuple[tuple[str, str], ...] = (("layer0.conv1.", "conv1."), ("layer0.bn1.", "bn1."))


class LoadResult(NamedTuple):
    """Keys the model expected but the file lacked, and file keys the model does not have."""

    missing: list[str]
    unexpected: list[str]


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a checkpoint file and return its flat ``name → tensor`` dict, wrappers removed."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        raise ValueError(
            f"cannot read {path} as a tensor-only checkpoint ({type(e).__name__}: {e}); "
            "re-save it with torch.save(model.state_dict(), path)"
        ) from e
    while isinstance(obj, dict):
        wrapper = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if wrapper is None:
            break
        obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict (name → tensor), got {type(obj).__name__}")
    tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise ValueError(f"{path}: no tensors found (keys: {list(obj)[:10]})")
    if len(tensors) < len(obj):
        log.warning("%s: skipping %d non-tensor entries", path, len(obj) - len(tensors))
    return {k.removeprefix("module."): v for k, v in tensors.items()}


def map_keys(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Rename release keys to the model's names; return (renamed dict, ignored classifier keys)."""
    out: dict[str, Tensor] = {}
    ignored: list[str] = []
    for key, value in state.items():
        if key.startswith(IGNORED_PREFIXES):
            ignored.append(key)
            continue
        for old, new in RENAMES:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out, ignored


def adapt_input_conv(weight: Tensor, in_chans: int) -> Tensor:
    """Turn an RGB first-conv kernel ``(O, 3, k, k)`` into one for ``in_chans`` inputs.

    Each new input channel gets the mean of the RGB kernels times ``3 / in_chans``. The
    rescale keeps the response magnitude: for an input whose channels all equal ``x``, the
    RGB conv gives ``Σ_c w_c x = 3·mean(w)·x`` and the adapted one ``in_chans·mean(w)·(3 /
    in_chans)·x``, the same value. (The same rule as timm's ``adapt_input_conv`` for
    ``in_chans == 1``, where it sums.)
    """
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise ValueError(f"expected an RGB conv kernel (O, 3, k, k), got {tuple(weight.shape)}")
    mean = weight.float().mean(dim=1, keepdim=True)
    return (mean.expand(-1, in_chans, -1, -1) * (3.0 / in_chans)).to(weight.dtype).contiguous()


def load_pretrained(model: nn.Module, path: str | os.PathLike[str]) -> LoadResult:
    """Load weights from ``path`` into ``model`` (non-strict), checking every shape.

    Returns:
        :class:`LoadResult` ``(missing, unexpected)``; both are also logged as warnings.
    Raises:
        ValueError: a key exists in both with different shapes (other than the RGB →
            ``in_chans`` first-conv adaptation).
    """
    path = os.fspath(path)
    state, ignored = map_keys(read_state_dict(path))
    own = model.state_dict()
    for key, value in list(state.items()):
        if key not in own or own[key].shape == value.shape:
            continue
        target = own[key].shape
        if (
            key == "conv1.weight"
            and value.dim() == 4
            and value.shape[1] == 3
            and (target[0] == value.shape[0] and target[2:] == value.shape[2:])
        ):
            log.info("%s: adapting conv1.weight from 3 to %d input channels", path, target[1])
            state[key] = adapt_input_conv(value, target[1])
            continue
        raise ValueError(
            f"cannot load {path}: key {key!r} has shape {tuple(value.shape)} in the file "
            f"but {tuple(target)} in the model ({type(model).__name__})"
        )
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    unexpected = list(result.unexpected_keys)
    if ignored:
        log.info("%s: ignored %d classifier keys (%s…)", path, len(ignored), ignored[0])
    if missing:
        log.warning("%s: %d keys missing from the file: %s", path, len(missing), missing)
    if unexpected:
        log.warning("%s: %d unexpected keys in the file: %s", path, len(unexpected), unexpected)
    log.info("%s: loaded %d tensors", path, len(state) - len(unexpected))
    return LoadResult(missing, unexpected)


def load_matching(model: nn.Module, path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Copy every tensor of the checkpoint at ``path`` whose name and shape match ``model``'s.

    Accepts a plain state dict or a trainer checkpoint (``{"model": state_dict, ...}``).

    Returns:
        ``{"loaded": [...], "shape_mismatch": [...], "missing": [...], "unexpected": [...]}``;
        everything not loaded is also logged as a warning.
    Raises:
        ValueError: nothing in the file matches the model (wrong file).
    """
    state = read_state_dict(path)
    own = model.state_dict()
    loaded = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    report = {
        "loaded": loaded,
        "shape_mismatch": [k for k, v in state.items() if k in own and own[k].shape != v.shape],
        "missing": [k for k in own if k not in state and not k.endswith("num_batches_tracked")],
        "unexpected": [k for k in state if k not in own],
    }
    if not loaded:
        raise ValueError(f"{os.fspath(path)}: no tensor matches {type(model).__name__} "
                         f"(file keys: {list(state)[:5]}...)")
    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    for what in ("shape_mismatch", "missing", "unexpected"):
        if report[what]:
            log.warning("%s: %d %s keys not loaded: %s", os.fspath(path), len(report[what]),
                        what.replace("_", " "), report[what])
    log.info("%s: loaded %d tensors into %s", os.fspath(path), len(loaded), type(model).__name__)
    return report
