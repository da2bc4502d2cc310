"""From a :class:`~videoreid.config.Config` to the objects a run needs, and the run itself.

Builders (config → object): :func:`prepare_data_root` (generate a synthetic dataset when
asked), :func:`build_splits`, :func:`build_transforms`, :func:`build_modalities`,
:func:`build_train_loader`, :func:`build_model_from_config`, :func:`build_objective_from_config`,
:func:`build_optimizer`, :func:`build_hooks`. Runs: :func:`train_from_config` (one split or
all splits of a multi-split dataset, with the run-directory files), :func:`evaluate_model`.

Run directory (``output_dir``)::

    config.yaml        resolved config (loadable with ``videoreid train config.yaml``)
    run_info.json      git revision, torch/python versions, device, world size, command line
    metrics.json       final metrics (per split, and mean ± std over splits)
    log.csv            one row per epoch (losses, lr, throughput, evaluation metrics)
    features.npz       final query+gallery features (``FeatureSet``)
    checkpoints/       epoch_NNNN.pt (newest ``train.keep_last``), nan_stop.pt on a NaN stop
    tensorboard/       when tensorboard is installed
    splitK/            the above per split when ``data.split=all``

Batch size under DDP: ``data.P × data.K`` is the global batch; each of W ranks draws
``P / W`` identities × K tracklets (P must be divisible by W).
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import platform
import random
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from videoreid.config import Config, ConfigError, config_to_dict
from videoreid.data.joint import eval_parts, join_splits
from videoreid.data.tracklet import ReIDSplit, Tracklet
from videoreid.engine.checkpoint import (
    CheckpointManager,
    CheckpointNotFoundError,
    check_training_state,
    load_checkpoint,
)
from videoreid.engine.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    get_dist_info,
    init_distributed,
)
from videoreid.engine.extract import extract_split
from videoreid.engine.hooks import (
    CheckpointHook,
    CSVLogHook,
    EvalHook,
    FreezeSpec,
    HookBase,
    LRScheduleHook,
    ParamFreezeHook,
    PreEvalCheckpointHook,
    TensorBoardHook,
)
from videoreid.engine.init_from import check_init_from, config_for_split, load_init
from videoreid.engine.memory import apply_activation_checkpointing
from videoreid.engine.run_dir import (
    ResumeNoteHook,
    RunFolder,
    apply_optimizer_overrides,
    check_run_folder,
)
from videoreid.engine.threads import apply_thread_plan, plan_threads
from videoreid.engine.trainer import Trainer
from videoreid.engine.weights_check import (
    check_pretrained_choice,
    record_weights,
    refuse_random_backbones,
    weights_report,
)
from videoreid.models.backbones.weights import describe_weights
from videoreid.utils.errors import CheckpointError, DatasetError, UserError
from videoreid.utils.io import atomic_write_json

log = logging.getLogger(__name__)

__all__ = [
    "MODALITY_LOADERS",
    "seed_everything",
    "git_revision",
    "write_run_info",
    "collect_run_info",
    "inference_options",
    "prepare_data_root",
    "generate_in_subprocess",
    "build_splits",
    "build_transforms",
    "build_modalities",
    "build_train_loader",
    "build_model_from_config",
    "build_objective_from_config",
    "build_optimizer",
    "build_hooks",
    "evaluate_model",
    "metric_names",
    "train_split",
    "train_from_config",
    "load_model_from_checkpoint",
    "to_jsonable",
    "apply_sync_bn",
    "exclude_unused_parameters",
]

# Aligned maps a model can consume besides the images: name → "module:function".
# The function is called as ``fn(root=Path, height=int, width=int, **data.modality_args[name])``
# and returns ``loader(tracklet, frame_indices (T,)) -> np.ndarray (T, C, h, w) float32``
# (the modality callables of ``videoreid.data.clips``). Modules are imported only when a
# config asks for the modality.
MODALITY_LOADERS: dict[str, str] = {
    "flow": "videoreid.modalities.flow:build_loader",
    "pose": "videoreid.modalities.pose:build_loader",
}


# ------------------------------------------------------------------ run bookkeeping


def seed_everything(seed: int) -> None:
    """Seed ``random``, ``numpy`` and ``torch`` (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_revision(path: str | Path | None = None) -> str:
    """``git rev-parse HEAD`` of the checkout holding ``path`` (+ ``-dirty``), else "unknown"."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd, capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_run_info(run_dir: str | Path, device: torch.device, dist: DistInfo,
                   threads: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``run_info.json`` (git revision, versions, device, threads, command line)."""
    info = collect_run_info(device, dist, threads)
    atomic_write_json(Path(run_dir) / "run_info.json", info)
    return info


def collect_run_info(device: torch.device, dist: DistInfo,
                     threads: dict[str, Any] | None = None) -> dict[str, Any]:
    """The content of ``run_info.json``: git revision, versions, device, threads, command
    line."""
    info = {
        "git_revision": git_revision(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or "cpu"),
        "torch_threads": torch.get_num_threads(),
        "world_size": dist.world_size,
        "argv": sys.argv,
    }
    if threads is not None:
        info["threads"] = threads
    return info


# -------------------------------------------------------------------------- data


def prepare_data_root(cfg: Config) -> Path:
    """The dataset root; with ``data.synth`` set, generate a synthetic dataset there first.

    Generation happens only when the root holds nothing yet. A root generated earlier is
    reused when its recorded parameters (``synth_config.json``) equal the requested ones;
    otherwise it is an error (silently training on other data would be worse). Under DDP
    only rank 0 generates; the others wait.
    """
    synth = cfg.data.synth
    if synth is None:
        return Path(cfg.data.root)  # one dataset: a str (a mapping goes with a list, no synth)
    root = Path(cfg.data.root)
    wanted = config_to_dict(synth)
    stamp = root / "synth_config.json"
    if get_dist_info().is_main:
        if stamp.is_file():
            have = json.loads(stamp.read_text())
            if have != wanted:
                raise ConfigError(
                    f"{root} holds a synthetic dataset generated with {have}, but the config "
                    f"asks for {wanted}; delete the folder or choose another data.root"
                )
            log.info("reusing synthetic dataset in %s", root)
        elif root.exists() and any(root.iterdir()):
            raise ConfigError(
                f"data.root {root} is not empty and has no {stamp.name}; refusing to generate a "
                "synthetic dataset into it (set data.synth=null to use the data there)"
            )
        else:
            log.info("generating synthetic %s dataset (%d ids, %s cameras, preset %s) in %s",
                     synth.layout, synth.ids, synth.cameras or "default", synth.preset, root)
            generate_in_subprocess(synth.layout, root, ids=synth.ids, cameras=synth.cameras,
                                   seed=synth.seed, height=synth.height, width=synth.width,
                                   preset=synth.preset, **synth.args)
            atomic_write_json(stamp, wanted)  # written last: marks a complete dataset
    barrier()
    return root


def generate_in_subprocess(layout: str, root: str | Path, **kwargs: Any) -> None:
    """``videoreid.data.synthetic.generate`` in a fresh Python process.

    Why: the renderer uses OpenCV's thread pool; a process that has used it and then forks
    DataLoader workers can deadlock in the workers (OpenCV's pool does not survive
    ``fork``: ``cv2.setNumThreads`` called in a forked child hangs).
    Rendering in another process keeps the training process's OpenCV state untouched. A
    plain subprocess (not ``multiprocessing`` spawn) also works from unguarded scripts.

    Raises:
        RuntimeError: the generator failed; the message holds the end of its error output.
    """
    kwargs.setdefault("progress", False)
    payload = json.dumps({"layout": layout, "root": str(root), "kwargs": kwargs})
    code = ("import json, sys; from videoreid.data.synthetic import generate; "
            "a = json.loads(sys.argv[1]); generate(a['layout'], a['root'], **a['kwargs'])")
    proc = subprocess.run([sys.executable, "-c", code, payload], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"synthetic data generation into {root} failed "
                           f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def build_splits(cfg: Config) -> list[ReIDSplit]:
    """The split(s) to run: ``data.split`` (an index) or all of them (``"all"``).

    ``data.chunk_train`` cuts the training tracklets into overlapping chunks.
    """
    from videoreid.data.datasets.factory import build_dataset

    if isinstance(cfg.data.dataset, list):
        splits = _joint_splits(cfg)
    else:
        root = prepare_data_root(cfg)
        try:
            ds = build_dataset(cfg.data.dataset, root, **cfg.data.dataset_args)
        except (ValueError, FileNotFoundError, NotADirectoryError) as e:
            if isinstance(e, UserError):
                raise
            raise DatasetError(str(e)) from e  # the loaders' messages name file and layout
        if cfg.data.split == "all":
            splits = ds.splits()
        else:
            k = int(cfg.data.split)
            if not 0 <= k < ds.num_splits:
                raise ConfigError(f"data.split={k} but {cfg.data.dataset} has {ds.num_splits} "
                                  f"split(s) (0..{ds.num_splits - 1}, or 'all')")
            splits = [ds.split(k)]
        check_init_from(cfg, [cfg.data.dataset] if ds.num_splits > 1 else [], len(splits))
    if cfg.data.chunk_train is not None:
        from videoreid.data.temporal import split_into_chunks

        c = cfg.data.chunk_train
        splits = [replace(s, train=split_into_chunks(s.train, c.length, c.overlap)) for s in splits]
    return splits


def _joint_splits(cfg: Config) -> list[ReIDSplit]:
    """``data.dataset`` as a list: one :class:`~videoreid.data.joint.JointSplit` per split index.

    ``data.split`` selects the split of every multi-split dataset (``all``: each index in
    turn); single-split datasets take part whole in every joint split.
    """
    from videoreid.data.datasets.factory import build_dataset

    d = cfg.data
    datasets = {}
    for name in d.dataset:
        root = d.root[name] if isinstance(d.root, dict) else d.root
        try:
            datasets[name] = build_dataset(name, root, **d.dataset_args.get(name, {}))
        except ValueError as e:
            raise ConfigError(f"data.dataset {name} (root {root}): {e}") from None
    counts = {n: ds.num_splits for n, ds in datasets.items() if ds.num_splits > 1}
    if len(set(counts.values())) > 1:
        raise ConfigError(f"data.dataset: the multi-split datasets have different numbers of "
                          f"splits {counts}; split k of each is joined, so they must agree")
    num = next(iter(counts.values()), 1)
    if d.split == "all":
        indices = list(range(num))
    else:
        if not 0 <= int(d.split) < num:
            raise ConfigError(f"data.split={d.split} but the multi-split datasets of "
                              f"{d.dataset} have {num} split(s) (0..{num - 1}, or 'all')"
                              if counts else f"data.split={d.split}: none of {d.dataset} has "
                              "more than one split; use data.split=0")
        indices = [int(d.split)]
    check_init_from(cfg, sorted(counts), len(indices))
    splits: list[ReIDSplit] = []
    for k in indices:
        parts = [replace(ds.split(k if n in counts else 0), name=n)
                 for n, ds in datasets.items()]
        splits.append(join_splits(parts))
    return splits


def build_transforms(cfg: Config) -> tuple[Any, Any]:
    """``(train_transform, test_transform)``: ``ClipTransform`` s at ``data.height × width``."""
    from videoreid.data.transforms import ClipTransform

    d, a = cfg.data, cfg.data.augment
    flip_rules = {}
    if "pose" in d.modalities:
        # a mirrored person swaps left/right joints and limbs, and PAF x components change sign
        from videoreid.modalities.pose import FLIP_PERMUTATION, FLIP_SIGN

        flip_rules["pose"] = (FLIP_PERMUTATION, FLIP_SIGN)
    # uint8 clips from the workers; colour, normalisation and erasing run batched on the
    # training device (the Trainer applies train.finish_batch to each batch)
    train = ClipTransform(d.height, d.width, train=True, flip_p=a.flip, pad=a.pad,
                          erasing_p=a.erasing, color_jitter=a.color_jitter,
                          flip_rules=flip_rules, output="uint8")
    test = ClipTransform(d.height, d.width, train=False)
    return train, test


def build_modalities(cfg: Config) -> dict[str, Callable[[Tracklet, np.ndarray], np.ndarray]]:
    """Loaders for ``data.modalities`` via :data:`MODALITY_LOADERS` (imported lazily)."""
    out = {}
    for name in cfg.data.modalities:
        if name not in MODALITY_LOADERS:
            raise ConfigError(f"data.modalities: unknown modality {name!r}; "
                              f"valid: {', '.join(sorted(MODALITY_LOADERS))}")
        module_name, fn_name = MODALITY_LOADERS[name].split(":")
        try:
            fn = getattr(importlib.import_module(module_name), fn_name)
        except (ImportError, AttributeError) as e:
            raise NotImplementedError(
                f"modality {name!r} needs {module_name}.{fn_name}(root, height, width, **args) "
                f"returning a per-clip map loader, which is not available in this version ({e}); "
                f"see MODALITY_LOADERS in {__name__}"
            ) from e
        args = dict(cfg.data.modality_args.get(name, {}))
        out[name] = fn(root=Path(cfg.data.root), height=cfg.data.height, width=cfg.data.width,
                       **args)
    unknown_args = sorted(set(cfg.data.modality_args) - set(cfg.data.modalities))
    if unknown_args:
        raise ConfigError(f"data.modality_args has entries {unknown_args} for modalities not in "
                          f"data.modalities={cfg.data.modalities}")
    return out


def build_train_loader(
    cfg: Config,
    tracklets: Sequence[Tracklet],
    transform: Any,
    modalities: Mapping[str, Callable] | None = None,
    dist: DistInfo | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """P×K clip loader over ``tracklets``, sharded by rank under DDP.

    Workers are not persistent: each data pass forks fresh ones, so every pass draws one seed
    from the torch RNG in both an uninterrupted and a resumed run (exact resume). Clip
    randomness itself comes from ``(seed, data_pass, index)`` (see ``ClipDataset``).
    """
    from videoreid.data.clips import ClipDataset, collate_clips
    from videoreid.data.samplers import PKSampler
    from videoreid.data.temporal import SAMPLERS, build_sampler

    dist = dist or get_dist_info()
    d = cfg.data
    if d.P % dist.world_size:
        raise ConfigError(f"data.P={d.P} is the global number of identities per batch and must "
                          f"be divisible by the world size {dist.world_size}")
    sampler_args = dict(d.train_sampler.args)
    if "seed" in inspect.signature(SAMPLERS[d.train_sampler.name]).parameters:
        # samplers with their own per-epoch draws (RIS) follow the run's seed unless pinned
        sampler_args.setdefault("seed", cfg.seed)
    sampler = build_sampler(d.train_sampler.name, **sampler_args)
    dataset = ClipDataset(tracklets, sampler, transform, seed=cfg.seed, modalities=modalities)
    batch_sampler = PKSampler(dataset.pids, d.P // dist.world_size, d.K, seed=cfg.seed,
                              rank=dist.rank, world_size=dist.world_size, repeat_offset=True)
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=d.workers,
                      collate_fn=collate_clips, pin_memory=pin_memory)


# ------------------------------------------------------------------- model and loss


def build_model_from_config(cfg: Config, num_classes: int) -> nn.Module:
    """``build_model(model.name, num_classes, **model.args)``; ``image_size`` defaults to
    ``(data.height, data.width)`` for builders that take it. Checks that the model's declared
    ``modalities`` are provided by ``data.modalities``."""
    from videoreid.models.factory import MODELS, build_model

    if cfg.model.name not in MODELS:
        raise ConfigError(f"model.name: unknown model {cfg.model.name!r}; "
                          f"valid: {', '.join(sorted(MODELS))}")
    args = dict(cfg.model.args)
    if "image_size" in inspect.signature(MODELS[cfg.model.name]).parameters:
        args.setdefault("image_size", (cfg.data.height, cfg.data.width))
    try:
        model = build_model(cfg.model.name, num_classes, **args)
    except TypeError as e:
        raise ConfigError(f"model.args: {e}") from e
    needed = [m for m in getattr(model, "modalities", ("images",)) if m != "images"]
    missing = [m for m in needed if m not in cfg.data.modalities]
    if missing:
        raise ConfigError(f"model {cfg.model.name!r} consumes {list(needed)} besides images; "
                          f"add {missing} to data.modalities")
    return model


def _feature_dim(model: nn.Module, cfg: Config) -> int:
    """Size of ``metric_feature``: the model's ``feat_dim``, else from a dummy forward."""
    dim = getattr(model, "feat_dim", None)
    if isinstance(dim, int):
        return dim
    t = int(cfg.data.train_sampler.args.get("length", 4))
    batch = {"images": torch.zeros(2, t, 3, cfg.data.height, cfg.data.width),
             "frame_mask": torch.ones(2, t, dtype=torch.bool)}
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(batch)
    model.train(was)
    return int(out.metric_feature.shape[1])


def build_objective_from_config(cfg: Config, model: nn.Module, num_classes: int) -> nn.Module:
    """``build_objective(loss, num_classes, feat_dim)`` with ``feat_dim`` from the model."""
    from videoreid.losses.objective import build_objective

    try:
        return build_objective([dict(s) for s in cfg.loss], num_classes=num_classes,
                               feat_dim=_feature_dim(model, cfg))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"loss: {e}") from e


def build_optimizer(
    model: nn.Module,
    objective: nn.Module | None,
    *,
    name: str = "adam",
    lr: float = 3e-4,
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
    nesterov: bool = False,
    betas: Sequence[float] = (0.9, 0.999),
    param_groups: Sequence[Mapping[str, Any]] = (),
) -> tuple[torch.optim.Optimizer, list[FreezeSpec]]:
    """Optimiser over the trainable parameters, with per-prefix groups.

    Each parameter goes to the first group whose ``match`` prefix its qualified name starts
    with (list specific prefixes first), else to the default group. Groups carry
    ``base_lr = lr × lr_mult`` for the schedule. ``frozen`` groups are left out of the
    optimiser with ``requires_grad=False``; ``freeze_epochs`` groups are in it and frozen
    for the first epochs. Both come back as :class:`FreezeSpec` s: use them with
    :class:`ParamFreezeHook`, which also keeps the groups' BatchNorm layers in eval mode
    while frozen (else their running statistics would keep moving). Parameters of ``objective`` (if any) are named
    ``objective.<name>``. Parameters that already have ``requires_grad=False`` (e.g. a BNNeck
    shift) are left alone.

    A group that matches nothing is skipped with a warning when the model variant
    legitimately lacks the module it names: the prefix's first component is an attribute
    that the model (or ``objective.`` + the objective) set to ``None`` (e.g. AlignNet's
    ``pose_net`` without the OpenPose source, ``tap_`` without TAP), so one recipe serves
    every row of a table.

    Raises:
        ConfigError: a group matches no parameter and names no absent module (a typo; lists
            the top-level module names).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if objective is not None:
        named += [(f"objective.{n}", p) for n, p in objective.named_parameters()
                  if p.requires_grad]
    groups = [dict(g) for g in param_groups]
    members: list[list[torch.nn.Parameter]] = [[] for _ in groups]
    default: list[torch.nn.Parameter] = []
    for n, p in named:
        for gi, g in enumerate(groups):
            if n.startswith(g["match"]):
                members[gi].append(p)
                break
        else:
            default.append(p)
    tops = sorted({n.split(".")[0] for n, _ in named})
    torch_groups: list[dict[str, Any]] = []
    specs: list[FreezeSpec] = []
    for g, params in zip(groups, members, strict=True):
        if not params and _absent_module(model, objective, g["match"]):
            log.warning("optim.param_groups: match %r selects no parameter because this model "
                        "variant has no such module (%s); group skipped", g["match"],
                        _absent_module(model, objective, g["match"]))
            continue
        if not params:
            raise ConfigError(f"optim.param_groups: match {g['match']!r} selects no trainable "
                              f"parameter (earlier groups take precedence); top-level modules: "
                              f"{tops}")
        if g.get("frozen", False):
            for p in params:
                p.requires_grad_(False)
            log.info("param group %r: %d tensors frozen", g["match"], len(params))
            # the spec keeps the group's BatchNorm statistics fixed too (ParamFreezeHook)
            specs.append(FreezeSpec(g["match"], frozen=True))
            continue
        group_lr = lr * float(g.get("lr_mult", 1.0))
        wd = g.get("weight_decay")
        torch_groups.append({"params": params, "lr": group_lr, "base_lr": group_lr,
                             "weight_decay": weight_decay if wd is None else float(wd),
                             "name": g["match"]})
        if int(g.get("freeze_epochs", 0)) > 0:
            specs.append(FreezeSpec(g["match"], freeze_epochs=int(g["freeze_epochs"])))
    if default:
        torch_groups.insert(0, {"params": default, "lr": lr, "base_lr": lr,
                                "weight_decay": weight_decay, "name": "default"})
    if not torch_groups:
        raise ConfigError("optim: no trainable parameters left (every group is frozen)")
    if name == "adam":
        opt = torch.optim.Adam(torch_groups, lr=lr, betas=tuple(betas),
                               weight_decay=weight_decay)
    elif name == "adamw":
        opt = torch.optim.AdamW(torch_groups, lr=lr, betas=tuple(betas),
                                weight_decay=weight_decay)
    elif name == "sgd":
        opt = torch.optim.SGD(torch_groups, lr=lr, momentum=momentum, nesterov=nesterov,
                              weight_decay=weight_decay)
    else:
        raise ConfigError(f"optim.name: unknown optimiser {name!r}; choose adam, adamw, sgd")
    return opt, specs


def _absent_module(model: nn.Module, objective: nn.Module | None, match: str) -> str | None:
    """The attribute a param-group prefix names when the module holds it as ``None``.

    ``"pose_net."`` names exactly ``pose_net``; a prefix without a dot (``"tap_"``) names
    every module slot (submodule or ``None`` attribute) starting with it, all of which must
    be ``None``. ``"objective."``
    prefixes are looked up on the objective.
    """
    owner: Any = model
    if match.startswith("objective."):
        owner, match = objective, match[len("objective."):]
    if owner is None:
        return None
    top, dotted = match.split(".")[0], "." in match
    # module slots only: None or a module (settings such as AlignNet.tap_pooling don't count)
    attrs = {**{k: v for k, v in vars(owner).items() if not k.startswith("_") and v is None},
             **owner._modules}
    names = [k for k in attrs if (k == top if dotted else k.startswith(top))]
    if names and all(attrs[k] is None for k in names):
        return ", ".join(f"{type(owner).__name__}.{k} is None" for k in sorted(names))
    return None


# ---------------------------------------------------------------------- evaluation


def metric_names(dataset: str, split_index: int, protocol: str) -> str:
    """Prefix of metric names: ``"<dataset>/split<k>/<protocol>"``."""
    return f"{dataset}/split{split_index}/{protocol}"


def _summarise(result: Mapping[str, Any], prefix: str) -> dict[str, float]:
    cmc = np.asarray(result["cmc"], dtype=np.float64)
    out = {f"{prefix}/mAP": float(result["mAP"])}
    for r in (1, 5, 10, 20):
        if r <= cmc.size:
            out[f"{prefix}/rank{r}"] = float(cmc[r - 1])
    if "mINP" in result:
        out[f"{prefix}/mINP"] = float(result["mINP"])
    return out


def inference_options(cfg: Config) -> dict[str, Any]:
    """``extract_features`` keyword arguments from ``cfg.eval`` (precision, layout, compile)."""
    e = cfg.eval
    return {"precision": e.precision, "channels_last": e.channels_last, "compile": e.compile}


def evaluate_model(
    model: nn.Module,
    split: ReIDSplit,
    cfg: Config,
    device: torch.device | str,
    *,
    modalities: Mapping[str, Callable] | None = None,
    protocol: str | None = None,
    rerank: bool | None = None,
    score_norm: bool | None = None,
) -> tuple[dict[str, Any], Any]:
    """Extract query/gallery features of ``split`` and evaluate them.

    Returns:
        ``(result, feature_set)``: the evaluation module's result dict (``cmc``, ``mAP``,
        ``protocol``, ...) plus ``metrics`` (flat ``{"<dataset>/split<k>/<protocol>/mAP": ..}``)
        and the ``FeatureSet``.
    """
    from videoreid.data.temporal import build_plan
    from videoreid.evaluation.protocol import evaluate_features

    _, test_tf = build_transforms(cfg)
    plan = build_plan(cfg.data.test_plan.name, **cfg.data.test_plan.args)
    e = cfg.eval
    fs = extract_split(model, split, plan, test_tf, batch_size=e.batch_size, device=device,
                       normalize=e.normalize, workers=cfg.data.workers, modalities=modalities,
                       amp=cfg.train.amp, progress=cfg.train.progress,
                       **inference_options(cfg))
    protocol = protocol or e.protocol or split.protocol
    result = dict(evaluate_features(
        fs, protocol, e.metric,
        rerank=e.rerank if rerank is None else rerank,
        score_norm=e.score_norm if score_norm is None else score_norm,
        max_rank=e.max_rank,
        score_norm_mode=e.score_norm_mode,
    ))
    result.setdefault("protocol", protocol)
    result["metrics"] = _summarise(result, metric_names(split.name, split.split_index, protocol))
    return result, fs


# ------------------------------------------------------------------------- training


def build_hooks(
    cfg: Config,
    run_dir: Path,
    freeze_specs: Sequence[FreezeSpec],
    eval_fn: Callable[[Trainer], Mapping[str, float]] | None,
) -> list[HookBase]:
    """The standard hook list, in the order that makes resume exact (checkpoint last)."""
    s = cfg.schedule
    if s.name == "plateau":
        from videoreid.engine.plateau import PlateauLRHook

        schedule: HookBase = PlateauLRHook(
            monitor=s.monitor, patience=s.patience, threshold=s.threshold, gamma=s.gamma,
            min_factor=s.min_factor, warmup_epochs=s.warmup_epochs,
            warmup_factor=s.warmup_factor)
    else:
        schedule = LRScheduleHook(name=s.name, milestones=list(s.milestones), gamma=s.gamma,
                                  step_size=s.step_size, warmup_epochs=s.warmup_epochs,
                                  warmup_factor=s.warmup_factor, min_factor=s.min_factor)
    hooks: list[HookBase] = [schedule]
    if freeze_specs:
        hooks.append(ParamFreezeHook(freeze_specs))
    if eval_fn is not None:
        # the epoch is on disk before its evaluation runs (a failing evaluation loses nothing)
        hooks.append(PreEvalCheckpointHook(
            CheckpointManager(run_dir / "checkpoints", cfg.train.keep_last),
            cfg.train.checkpoint_every, cfg.train.eval_every))
        hooks.append(EvalHook(cfg.train.eval_every, eval_fn))
    hooks.append(CSVLogHook(run_dir / "log.csv"))
    if TensorBoardHook.available():
        hooks.append(TensorBoardHook(run_dir / "tensorboard"))
    hooks.append(CheckpointHook(CheckpointManager(run_dir / "checkpoints", cfg.train.keep_last),
                                cfg.train.checkpoint_every))
    return hooks


def _resume_state(cfg: Config, run_dir: Path, device: torch.device,
                  ) -> tuple[Path, dict[str, Any], list[tuple[Path, str]]] | None:
    """``(path, state, skipped)`` of the checkpoint to resume from, or ``None``.

    ``train.resume=true`` takes the newest intact checkpoint (damaged ones are skipped,
    logged and returned); a path must load and be a training checkpoint.
    """
    r = cfg.train.resume
    if r is False:
        return None
    if r is True:
        found = CheckpointManager(run_dir / "checkpoints").latest_intact(device)
        if found is None:
            log.info("train.resume=true but %s has no checkpoint; starting fresh",
                     run_dir / "checkpoints")
        return found
    path = Path(r)
    if not path.is_file():
        raise CheckpointNotFoundError(f"train.resume: checkpoint {path} not found")
    state = load_checkpoint(path, map_location=device)
    check_training_state(state, path)
    return path, state, []


def train_split(
    cfg: Config,
    split: ReIDSplit,
    run_dir: str | Path,
    device: torch.device,
    *,
    extra_hooks: Sequence[HookBase] = (),
    run_folder: RunFolder | None = None,
) -> dict[str, Any]:
    """Train on one split, evaluate, write ``log.csv``, checkpoints and ``features.npz``.

    ``run_folder`` (a :class:`~videoreid.engine.run_dir.RunFolder`) records a resume.

    A joint split (several datasets) is evaluated per dataset, its features written as
    ``features_<dataset>.npz``.

    Returns:
        ``{"metrics": {...}, "result": evaluation result, "features": FeatureSet | None,
        "parts": {dataset: (result, FeatureSet)}, "trainer": Trainer}`` (metrics and features
        on the main process; ``result``/``features`` only for a single dataset).
    """
    run_dir = Path(run_dir)
    dist = get_dist_info()
    seed_everything(cfg.seed)
    modalities = build_modalities(cfg)
    train_tf, _ = build_transforms(cfg)
    num_classes = split.num_train_pids
    cfg = config_for_split(cfg, split.split_index)  # {split} in init_from paths
    if not dist.is_main:
        barrier()  # rank 0 builds first: it downloads any published weights, once
    model = build_model_from_config(cfg, num_classes)
    if dist.is_main:
        barrier()
    if cfg.train.init_from:
        load_init(model, cfg.train.init_from)
    _check_and_record_weights(cfg, model, split)
    if cfg.train.sync_bn:
        model = apply_sync_bn(model, device, dist)
    apply_activation_checkpointing(model, cfg.train.activation_checkpointing)
    objective = build_objective_from_config(cfg, model, num_classes)
    loader = build_train_loader(cfg, split.train, train_tf, modalities, dist,
                                pin_memory=device.type == "cuda")
    if dist.enabled:
        exclude_unused_parameters(model, objective, loader.dataset, device)
    o = cfg.optim
    optimizer, freeze_specs = build_optimizer(
        model, objective, name=o.name, lr=o.lr, weight_decay=o.weight_decay,
        momentum=o.momentum, nesterov=o.nesterov, betas=o.betas,
        param_groups=[config_to_dict(g) for g in o.param_groups])
    fresh_groups = [{k: v for k, v in g.items() if k != "params"}
                    for g in optimizer.param_groups]  # the config's values, for a resume
    if freeze_specs and dist.enabled:
        log.info("DDP: find_unused_parameters=True (fallback) because %s are frozen for the "
                 "first epochs only", ", ".join(repr(s.prefix) for s in freeze_specs))
    last: dict[str, Any] = {}

    parts = eval_parts(split)  # a joint split: every dataset under its own protocol

    def eval_fn(trainer: Trainer) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for part in parts:
            result, fs = evaluate_model(trainer.module, part, cfg, device, modalities=modalities)
            last.setdefault("parts", {})[part.name] = (result, fs)
            metrics.update(result["metrics"])
        if len(parts) == 1:
            last.update(result=result, features=fs)
        return metrics

    hooks = build_hooks(cfg, run_dir, freeze_specs, eval_fn) + list(extra_hooks)
    trainer = Trainer(model, objective, optimizer, loader, device=device,
                      epochs=cfg.train.epochs, iters_per_epoch=cfg.train.iters_per_epoch,
                      amp=cfg.train.amp, grad_clip=o.grad_clip, hooks=hooks, run_dir=run_dir,
                      progress=cfg.train.progress,
                      find_unused_parameters=bool(freeze_specs) and dist.enabled)
    resume = _resume_state(cfg, run_dir, device)
    stale = CheckpointManager(run_dir / "checkpoints").latest()
    if resume is None and stale is not None:
        raise ConfigError(f"{run_dir} already holds checkpoints ({stale.name}); set "
                          "train.resume=true to continue that run, or choose another output_dir")
    if resume is not None:
        _resume_trainer(trainer, cfg, resume, fresh_groups, run_folder)
    log.info("training %s on %s: %d train tracklets, %d ids, %d steps/epoch, %d epochs",
             cfg.model.name, split.describe(), len(split.train), num_classes,
             trainer.iters_per_epoch, cfg.train.epochs)
    trainer.train()
    if dist.is_main and "parts" not in last:  # resumed after the end, or epochs=0
        eval_fn(trainer)
    if dist.is_main:
        for name, (_, fs) in last["parts"].items():
            fs.save(run_dir / ("features.npz" if len(parts) == 1 else f"features_{name}.npz"))
    barrier()
    metrics = broadcast_object({k: v for r, _ in last.get("parts", {}).values()
                                for k, v in r["metrics"].items()})
    return {"metrics": metrics, "result": last.get("result"), "features": last.get("features"),
            "parts": last.get("parts", {}), "trainer": trainer}


def apply_sync_bn(model: nn.Module, device: torch.device, dist: DistInfo) -> nn.Module:
    """``train.sync_bn``: BatchNorm statistics over every rank's batch (no-op with one rank).

    torch's fused ``SyncBatchNorm`` serves plain BN layers on CUDA; on CPU (gloo) and for the
    models' own BN subclasses, :mod:`videoreid.models.sync_bn`.
    """
    if not dist.enabled:
        log.info("train.sync_bn=true has no effect in a single process (BN already sees the "
                 "whole batch)")
        return model
    from videoreid.models.sync_bn import convert_sync_batchnorm

    try:
        return convert_sync_batchnorm(model, native=device.type == "cuda")
    except ValueError as e:
        raise ConfigError(str(e)) from None


def exclude_unused_parameters(model: nn.Module, objective: nn.Module, dataset: Any,
                              device: torch.device) -> list[str]:
    """Probe one small training batch; parameters without a gradient stop requiring one.

    Every rank probes the same batch (the probe's synchronised BN and OIM gather are
    collectives, so all ranks must take part); the answers must agree, or the DDP reducers
    would not (see :mod:`videoreid.engine.unused`).
    """
    from videoreid.data.clips import collate_clips
    from videoreid.engine.unused import exclude_parameters, find_unused_parameters, probe_indices

    batch = collate_clips([dataset[i] for i in probe_indices(dataset.pids)])
    finish = getattr(getattr(dataset, "transform", None), "finish_batch", None)
    names = find_unused_parameters(model, objective, batch, device, finish)
    main = broadcast_object(names)
    if main != names:
        raise RuntimeError(f"ranks disagree on the parameters without a gradient: rank 0 "
                           f"{main}, rank {get_dist_info().rank} {names}")
    exclude_parameters(model, names)
    return names


def _weights_args(cfg: Config) -> dict[str, Any]:
    """``model.args`` as the weights checks see them: ``train.init_from`` also supplies weights."""
    args = dict(cfg.model.args)
    if cfg.train.init_from:
        args["init_from"] = cfg.train.init_from
    return args


def _resume_trainer(trainer: Trainer, cfg: Config,
                    resume: tuple[Path, dict[str, Any], list[tuple[Path, str]]],
                    fresh_groups: Sequence[Mapping[str, Any]],
                    run_folder: RunFolder | None) -> None:
    """Load a checkpoint into ``trainer``; apply and record ``train.resume_overrides``."""
    path, state, skipped = resume
    trainer.load_state_dict(state)
    changed = []
    if any(n == "optim" or n.startswith("optim.") for n in cfg.train.resume_overrides):
        changed = apply_optimizer_overrides(trainer.optimizer, fresh_groups)
    log.info("resumed from %s at epoch %d (step %d)%s", path, trainer.start_epoch, trainer.iter,
             f"; optimiser changes: {', '.join(changed)}" if changed else "")
    if run_folder is not None and get_dist_info().is_main:
        note = run_folder.note_resume(trainer.start_epoch, path, skipped, changed)
        if run_folder.changes or skipped:
            trainer.register_hooks([ResumeNoteHook(note, trainer.start_epoch)])


def _check_and_record_weights(cfg: Config, model: nn.Module, split: ReIDSplit) -> None:
    """Refuse unset weights on a full-size backbone; log and record what initialised it."""
    refuse_random_backbones(model, cfg.model.name, _weights_args(cfg))
    report = weights_report(model)
    for name, info in report.items():
        log.info("weights of %s: %s", name, describe_weights(info))
    if get_dist_info().is_main:
        key = "weights" if cfg.data.split != "all" else f"weights_split{split.split_index}"
        record_weights(cfg.output_dir, report, key)


def to_jsonable(x: Any) -> Any:
    """numpy arrays/scalars inside ``x`` as lists/Python numbers (for ``json``)."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    return x


def train_from_config(cfg: Config) -> dict[str, Any]:
    """Train (and evaluate) as the config says; write the run directory.

    With ``data.split="all"`` every split is trained in ``<output_dir>/split<k>`` and the
    final features are combined by ``evaluation.protocol.evaluate_splits`` (mean ± std).

    Returns:
        the content of ``metrics.json`` (on every rank) plus ``table``, the results table
        of ``evaluation.protocol.format_table`` (per split and mean ± std for ``"all"``).
    """
    check_pretrained_choice(cfg.model.name, _weights_args(cfg))  # before any data is read
    dist, device = init_distributed(cfg.train.device)
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    thread_plan = plan_threads(cfg.data.workers, cfg.train.threads,
                               local_world_size=local_ranks)
    threads_before = torch.get_num_threads()
    apply_thread_plan(thread_plan)  # restored on return: a library call leaves no trace
    log.info("threads: %s", thread_plan.note)
    try:
        return _train_from_config(cfg, dist, device, thread_plan)
    finally:
        torch.set_num_threads(threads_before)


def _train_from_config(cfg: Config, dist: DistInfo, device: torch.device,
                       thread_plan: Any) -> dict[str, Any]:
    run_dir = Path(cfg.output_dir)
    # writes nothing: lock, occupancy, resume config diff (rank 0 only: other ranks would
    # race with its lock)
    changes = check_run_folder(cfg) if dist.is_main else {}
    splits = build_splits(cfg)
    if dist.is_main:  # rank 0 alone: it fetches any published weights first (train_split)
        _check_model(cfg, splits[0])
    with RunFolder(cfg, changes) as folder:
        if dist.is_main:  # every start-up check passed: lock and write the run files
            folder.start(collect_run_info(device, dist, threads=thread_plan.as_dict()))
        barrier()
        return _train_splits(cfg, splits, run_dir, device, dist, folder)


def _check_model(cfg: Config, split: ReIDSplit) -> None:
    """Build model, objective and optimiser once, so their config errors come before any
    file is written (not after the run folder was set up)."""
    try:
        model = build_model_from_config(cfg, split.num_train_pids)
        refuse_random_backbones(model, cfg.model.name, _weights_args(cfg))
        objective = build_objective_from_config(cfg, model, split.num_train_pids)
        o = cfg.optim
        build_optimizer(model, objective, name=o.name, lr=o.lr, weight_decay=o.weight_decay,
                        momentum=o.momentum, nesterov=o.nesterov, betas=o.betas,
                        param_groups=[config_to_dict(g) for g in o.param_groups])
    except (TypeError, ValueError, KeyError) as e:
        if isinstance(e, UserError):
            raise
        raise ConfigError(f"model {cfg.model.name!r} {cfg.model.args}: {e}") from e


def _train_splits(cfg: Config, splits: Sequence[ReIDSplit], run_dir: Path,
                  device: torch.device, dist: DistInfo, folder: RunFolder) -> dict[str, Any]:
    per_split, feature_sets, results = [], [], []
    by_dataset: dict[str, list[tuple[Any, Any]]] = {}  # joint training: per dataset
    for split in splits:
        split_dir = run_dir if cfg.data.split != "all" else run_dir / f"split{split.split_index}"
        out = train_split(cfg, split, split_dir, device, run_folder=folder)
        per_split.append(out["metrics"])
        feature_sets.append(out["features"])
        results.append(out["result"])
        for name, (result, fs) in out["parts"].items():
            by_dataset.setdefault(name, []).append((result, fs))
        del out  # the trainer (model, loader) of this split is no longer needed
    summary: dict[str, Any] = {"dataset": splits[0].name, "model": cfg.model.name,
                               "splits": [s.split_index for s in splits],
                               "metrics": per_split[0] if len(per_split) == 1 else per_split}
    table = ""
    if dist.is_main:
        from videoreid.evaluation.protocol import evaluate_splits, format_table

        if len(by_dataset) > 1:  # joint training: each dataset under its own protocol
            summary["datasets"] = sorted(by_dataset)
            table = _joint_summary(cfg, by_dataset, summary)
        elif len(splits) > 1:
            protocol = cfg.eval.protocol or splits[0].protocol
            agg = evaluate_splits(feature_sets, protocol=protocol, metric=cfg.eval.metric,
                                  rerank=cfg.eval.rerank, score_norm=cfg.eval.score_norm,
                                  max_rank=cfg.eval.max_rank,
                                  score_norm_mode=cfg.eval.score_norm_mode)
            summary["protocol"] = protocol
            summary["mean"] = to_jsonable(agg.get("mean"))
            summary["std"] = to_jsonable(agg.get("std"))
            table = format_table(agg)
        else:
            table = format_table(results[0])
        atomic_write_json(run_dir / "metrics.json", to_jsonable(summary))
    summary["table"] = table
    return broadcast_object(to_jsonable(summary))


def _joint_summary(cfg: Config, by_dataset: Mapping[str, list[tuple[Any, Any]]],
                   summary: dict[str, Any]) -> str:
    """Per-dataset results (mean ± std over splits when several) into ``summary``; the table."""
    from videoreid.evaluation.protocol import evaluate_splits, format_table

    rows: list[dict[str, Any]] = []
    if len(next(iter(by_dataset.values()))) > 1:
        summary["mean"], summary["std"], summary["protocol"] = {}, {}, {}
        for name, runs in by_dataset.items():
            protocol = runs[0][0]["protocol"]
            agg = evaluate_splits([fs for _, fs in runs], protocol=protocol,
                                  metric=cfg.eval.metric, rerank=cfg.eval.rerank,
                                  score_norm=cfg.eval.score_norm,
                                  score_norm_mode=cfg.eval.score_norm_mode)
            summary["mean"][name] = to_jsonable(agg.get("mean"))
            summary["std"][name] = to_jsonable(agg.get("std"))
            summary["protocol"][name] = protocol
            rows.append(agg)
    else:
        rows = [runs[0][0] for runs in by_dataset.values()]
        summary["protocol"] = {name: runs[0][0]["protocol"] for name, runs in by_dataset.items()}
    return format_table(rows)


def _without_published_weights(cfg: Config) -> Config:
    """``cfg`` with ``pretrained``/``pose_weights`` set to ``none``: a checkpoint replaces every
    tensor anyway, so nothing needs downloading (evaluation works offline)."""
    from videoreid.models.factory import MODELS

    params = inspect.signature(MODELS[cfg.model.name]).parameters if cfg.model.name in MODELS \
        else {}
    args = dict(cfg.model.args)
    for key in ("pretrained", "pose_weights"):
        if key in params and args.get(key) is not None:
            args[key] = "none"
    return replace(cfg, model=replace(cfg.model, args=args))


def load_model_from_checkpoint(cfg: Config, checkpoint: str | Path, num_classes: int,
                               device: torch.device) -> nn.Module:
    """Build the config's model and load the ``model`` weights of a checkpoint."""
    state = load_checkpoint(checkpoint, map_location="cpu")
    weights = state.get("model", state)
    model = build_model_from_config(_without_published_weights(cfg), num_classes)
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except (RuntimeError, TypeError, AttributeError) as e:  # shape mismatch, not tensors
        raise CheckpointError(f"checkpoint {checkpoint} does not fit model {cfg.model.name} "
                              f"{cfg.model.args}: {str(e).splitlines()[0][:300]}") from e
    if unexpected or missing:
        raise CheckpointError(f"checkpoint {checkpoint} does not fit model {cfg.model.name} "
                          f"{cfg.model.args}: missing {list(missing)[:8]}, unexpected "
                          f"{list(unexpected)[:8]}")
    return model.to(device)

