"""Self-describing model packages: ``model.safetensors`` + ``model.json``.

A package holds everything needed to apply a trained model to new footage, and nothing
tied to its training set:

- ``model.safetensors``: the inference weights only. The model is rebuilt head-less
  (``num_classes=0``: every model in :data:`videoreid.models.factory.MODELS` then has no
  identity classifier), and exactly that model's ``state_dict`` is stored; the classifier
  weights of the checkpoint are dropped (their names are listed in ``model.json``).
- ``model.json`` (format 1)::

    {"format": "videoreid-model", "format_version": 1,
     "model": {"name": "baseline", "args": {...}},      # build_model(name, 0, **args)
     "embedding_dim": 512, "modalities": ["images"],
     "preprocessing": {"height": 128, "width": 64, "mean": [...], "std": [...],
                       "color": "RGB", "test_plan": {"name": ..., "args": {...}}},
     "retrieval": {"normalize": "none", "metric": "euclidean"},
     "weights": {"file": "model.safetensors", "sha256": "...", "dropped": [...]},
     "provenance": {"config_sha256": ..., "git_revision": ..., "training_data": {...},
                    "metrics": {...}, "checkpoint": ..., "epoch": ..., "videoreid": ...}}

The package's identity (:func:`package_hash`) is the SHA-256 of its weight file: feature
stores and indices carry it, so features of different models are never compared.

Arguments naming weight files (``pretrained``, ``pose_weights``, ``init_from``) only matter
for initialising a training run; they are stored as ``null`` since the package's weights
replace them.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "WEIGHT_FILE_ARGS",
    "PackageError",
    "ModelPackage",
    "build_headless",
    "inference_state_dict",
    "write_package",
    "package_from_run",
    "read_package",
    "load_model",
    "package_hash",
    "sha256_file",
]

FORMAT = "videoreid-model"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
META_NAME = "model.json"
# model arguments that point at weight files used only to initialise training
WEIGHT_FILE_ARGS = ("pretrained", "pose_weights", "init_from")


class PackageError(ValueError):
    """A model package (or the run it is made from) is missing or malformed; names the file."""


@dataclass
class ModelPackage:
    """A package read from disk: its folder, its ``model.json`` and its hash."""

    directory: Path
    meta: dict[str, Any]
    sha256: str

    @property
    def name(self) -> str:
        return str(self.meta["model"]["name"])

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.meta["preprocessing"]

    @property
    def retrieval(self) -> dict[str, Any]:
        return self.meta["retrieval"]

    @property
    def embedding_dim(self) -> int:
        return int(self.meta["embedding_dim"])

    @property
    def modalities(self) -> list[str]:
        return list(self.meta.get("modalities", ["images"]))


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def package_hash(model_dir: str | os.PathLike[str]) -> str:
    """The package's identity: SHA-256 of its ``model.safetensors``."""
    return sha256_file(Path(model_dir) / WEIGHTS_NAME)


def _clean_args(args: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in args.items():
        if k in WEIGHT_FILE_ARGS:
            v = None
        elif isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out


def build_headless(name: str, args: Mapping[str, Any]) -> nn.Module:
    """``build_model(name, num_classes=0, **args)`` with weight-file arguments cleared."""
    from videoreid.models.factory import build_model

    # a rebuilt AlignNet warns that its OpenPose net is untrained: the package's weights
    # are loaded right after, so the warning would be wrong here
    quiet = logging.getLogger("videoreid.models.alignnet")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return build_model(name, 0, **_clean_args(args))
    finally:
        quiet.setLevel(level)


def inference_state_dict(
    model: nn.Module, weights: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The entries of ``weights`` a head-less ``model`` needs, and the names left out.

    Raises:
        PackageError: ``weights`` lacks an entry of ``model`` or has it with another shape.
    """
    want = model.state_dict()
    missing = [k for k in want if k not in weights]
    wrong = [f"{k} {tuple(weights[k].shape)} != {tuple(v.shape)}"
             for k, v in want.items() if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    if missing or wrong:
        raise PackageError(f"{source} does not fit the model: missing {missing[:8]}, "
                           f"shape mismatch {wrong[:8]}")
    kept = {k: weights[k].detach().cpu().contiguous().clone() for k in want}
    dropped = sorted(k for k in weights if k not in want)
    return kept, dropped


def _embedding_dim(model: nn.Module, height: int, width: int, modalities: list[str],
                   length: int) -> int:
    """Size of ``ReIDOutput.embedding`` from a dummy forward pass (batch of 1)."""
    batch: dict[str, torch.Tensor] = {
        "images": torch.zeros(1, length, 3, height, width),
        "frame_mask": torch.ones(1, length, dtype=torch.bool),
    }
    dummy = _dummy_modalities(model, height, width, length)
    batch.update({k: v for k, v in dummy.items() if k in modalities})
    was = model.training
    model.eval()
    with torch.inference_mode():
        out = model(batch)
    model.train(was)
    return int(out.embedding.shape[1])


def _dummy_modalities(model: nn.Module, height: int, width: int, length: int
                      ) -> dict[str, torch.Tensor]:
    """Zero maps for the aligned modalities a model may consume (flow: 2 ch, pose: 57 ch)."""
    out = {}
    if "flow" in getattr(model, "modalities", ()):
        out["flow"] = torch.zeros(1, length, 2, height, width)
    if "pose" in getattr(model, "modalities", ()):
        from videoreid.modalities.pose.layout import NUM_MAPS

        out["pose"] = torch.zeros(1, length, NUM_MAPS, height, width)
    return out


def write_package(
    out_dir: str | os.PathLike[str],
    name: str,
    args: Mapping[str, Any],
    weights: Mapping[str, torch.Tensor],
    preprocessing: Mapping[str, Any],
    retrieval: Mapping[str, Any],
    provenance: Mapping[str, Any] | None = None,
    source: str = "checkpoint",
) -> ModelPackage:
    """Write ``model.safetensors`` and ``model.json`` into ``out_dir`` (both atomically).

    Args:
        out_dir: package folder (created).
        name, args: model name and ``model.args`` (as in a config).
        weights: a trained state dict (classifier entries are dropped).
        preprocessing: ``height``, ``width``, ``mean``, ``std``, ``test_plan`` ``{name, args}``.
        retrieval: ``normalize`` (see ``engine.extract``) and ``metric``.
        provenance: free-form record (config hash, git revision, data, metrics, ...).
        source: what ``weights`` came from, for messages.
    """
    from safetensors.torch import save_file

    from videoreid.utils.io import atomic_path, atomic_write_json

    clean = _clean_args(args)
    model = build_headless(name, clean)
    kept, dropped = inference_state_dict(model, weights, source)
    model.load_state_dict(kept, strict=True)
    pre = dict(preprocessing)
    pre.setdefault("color", "RGB")
    pre["mean"] = [float(m) for m in pre["mean"]]
    pre["std"] = [float(s) for s in pre["std"]]
    modalities = list(getattr(model, "modalities", ("images",)))
    length = int(pre["test_plan"].get("args", {}).get("length", 4))
    dim = _embedding_dim(model, int(pre["height"]), int(pre["width"]), modalities, length)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_file(kept, str(tmp), metadata={"format": FORMAT, "model": name})
    digest = package_hash(out)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": {"name": name, "args": clean},
        "embedding_dim": dim,
        "modalities": modalities,
        "preprocessing": pre,
        "retrieval": {"normalize": str(retrieval.get("normalize", "none")),
                      "metric": str(retrieval.get("metric", "euclidean"))},
        "weights": {"file": WEIGHTS_NAME, "sha256": digest, "tensors": len(kept),
                    "dropped": dropped},
        "provenance": dict(provenance or {}),
    }
    atomic_write_json(out / META_NAME, meta)
    log.info("wrote model package %s (%s, dim %d, %d tensors, dropped %d)", out, name, dim,
             len(kept), len(dropped))
    return ModelPackage(out, meta, digest)


def _find_checkpoint(run_dir: Path) -> Path:
    from videoreid.engine.checkpoint import CheckpointManager

    latest = CheckpointManager(run_dir / "checkpoints").latest()
    if latest is not None:
        return latest
    for name in ("model_final.pt", "checkpoints/model_final.pt"):
        if (run_dir / name).is_file():
            return run_dir / name
    raise PackageError(f"{run_dir}: no checkpoint found (looked for checkpoints/epoch_*.pt and "
                       "model_final.pt); pass the checkpoint file instead")


def package_from_run(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: str | os.PathLike[str] | None = None,
) -> ModelPackage:
    """Package a training run folder (its ``config.yaml`` + newest checkpoint) or a checkpoint.

    Args:
        source: run directory (``output_dir`` of ``videoreid train``), or a checkpoint file
            (its config is looked for in the run directory above ``checkpoints/``).
        out_dir: package folder.
        config: config file to use instead of the run's ``config.yaml``.

    Raises:
        PackageError: no run/checkpoint/config there, or the checkpoint does not fit.
    """
    from videoreid.config import ConfigError, load_config
    from videoreid.engine.builders import build_transforms, git_revision
    from videoreid.engine.checkpoint import load_checkpoint
    from videoreid.models.factory import MODELS

    src = Path(source)
    if src.is_dir():
        run_dir, ckpt = src, _find_checkpoint(src)
    elif src.is_file():
        ckpt = src
        run_dir = src.parent.parent if src.parent.name == "checkpoints" else src.parent
    else:
        raise PackageError(f"{src}: neither a run directory nor a checkpoint file")
    cfg_path = Path(config) if config else run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise PackageError(f"{cfg_path}: config not found (a run directory holds config.yaml; "
                           "pass --config for a bare checkpoint)")
    try:
        cfg = load_config(cfg_path, check=False)
    except ConfigError as e:
        raise PackageError(f"{cfg_path}: {e}") from e
    state = load_checkpoint(ckpt, map_location="cpu")
    weights = state.get("model", state)
    if not isinstance(weights, Mapping) or not all(isinstance(v, torch.Tensor)
                                                   for v in weights.values()):
        raise PackageError(f"{ckpt}: expected a videoreid checkpoint with a 'model' state dict")
    _, test_tf = build_transforms(cfg)
    args = dict(cfg.model.args)
    if cfg.model.name in MODELS and "image_size" in inspect.signature(
            MODELS[cfg.model.name]).parameters:
        args.setdefault("image_size", [cfg.data.height, cfg.data.width])
    metrics: dict[str, Any] = {}
    if (run_dir / "metrics.json").is_file():
        try:
            metrics = json.loads((run_dir / "metrics.json").read_text()).get("metrics", {})
        except (json.JSONDecodeError, AttributeError):
            log.warning("%s: unreadable metrics.json, not recorded", run_dir)
    info: dict[str, Any] = {}
    if (run_dir / "run_info.json").is_file():
        try:
            info = json.loads((run_dir / "run_info.json").read_text())
        except json.JSONDecodeError:
            info = {}
    from videoreid import __version__

    synth = cfg.data.synth
    provenance = {
        "config_sha256": sha256_file(cfg_path),
        "config_file": str(cfg_path),
        "git_revision": info.get("git_revision") or git_revision(),
        "training_data": {"dataset": cfg.data.dataset, "root": str(cfg.data.root),
                          "split": cfg.data.split,
                          "synthetic": synth is not None},
        "metrics": metrics,
        "checkpoint": str(ckpt),
        "epoch": state.get("epoch"),
        "videoreid": __version__,
        "torch": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    plan = {"name": cfg.data.test_plan.name, "args": dict(cfg.data.test_plan.args)}
    pre = {"height": cfg.data.height, "width": cfg.data.width, "mean": list(test_tf.mean),
           "std": list(test_tf.std), "test_plan": plan}
    flow_args = dict(cfg.data.modality_args.get("flow", {}))
    if "flow" in cfg.data.modalities:  # how flow was estimated (not where it was cached)
        pre["modality_args"] = {"flow": {k: flow_args[k] for k in
                                         ("estimator", "estimator_args", "scale") if k in flow_args}}
    ret = {"normalize": cfg.eval.normalize, "metric": cfg.eval.metric}
    return write_package(out_dir, cfg.model.name, args, weights, pre, ret, provenance,
                         source=str(ckpt))


def read_package(model_dir: str | os.PathLike[str], verify: bool = True) -> ModelPackage:
    """Read and check ``model.json`` (and, with ``verify``, the weight file's SHA-256).

    Raises:
        PackageError: missing files, unknown format, missing keys or a hash mismatch.
    """
    d = Path(model_dir)
    meta_path, weights_path = d / META_NAME, d / WEIGHTS_NAME
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise PackageError(f"{d}: not a model package ({p.name} missing; make one with "
                               "`videoreid package RUN_DIR --out DIR`)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise PackageError(f"{meta_path}: not valid JSON ({e})") from e
    if meta.get("format") != FORMAT or int(meta.get("format_version", -1)) != FORMAT_VERSION:
        raise PackageError(f"{meta_path}: format {meta.get('format')!r} version "
                           f"{meta.get('format_version')!r}; this version reads {FORMAT!r} "
                           f"{FORMAT_VERSION}")
    for key in ("model", "embedding_dim", "preprocessing", "retrieval", "weights"):
        if key not in meta:
            raise PackageError(f"{meta_path}: missing key {key!r}")
    for key in ("height", "width", "mean", "std", "test_plan"):
        if key not in meta["preprocessing"]:
            raise PackageError(f"{meta_path}: missing key 'preprocessing.{key}'")
    digest = sha256_file(weights_path) if verify else str(meta["weights"].get("sha256", ""))
    if verify and digest != meta["weights"].get("sha256"):
        raise PackageError(f"{weights_path}: SHA-256 {digest[:12]}… does not match model.json's "
                           f"{str(meta['weights'].get('sha256'))[:12]}… (file changed or corrupt)")
    return ModelPackage(d, meta, digest)


def load_model(model_dir: str | os.PathLike[str], device: str | torch.device = "cpu",
               verify: bool = True) -> nn.Module:
    """Rebuild a packaged model from the package alone, in eval mode.

    No config file, dataset or classifier is needed: the model is built head-less from
    ``model.json`` and loaded strictly from ``model.safetensors``. The returned module has a
    ``package`` attribute (:class:`ModelPackage`).
    """
    from safetensors.torch import load_file

    pkg = read_package(model_dir, verify=verify)
    model = build_headless(pkg.name, pkg.meta["model"].get("args", {}))
    weights = load_file(str(pkg.directory / WEIGHTS_NAME), device="cpu")
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise PackageError(f"{pkg.directory / WEIGHTS_NAME}: weights do not fit model "
                           f"{pkg.name}: {e}") from e
    model.package = pkg  # type: ignore[attr-defined]
    return model.to(device).eval()
