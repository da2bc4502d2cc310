"""Run configuration: dataclass defaults → YAML file(s) → dotted command-line overrides.

Precedence (later wins), as in dinov2/detectron2 "lazy" configs but with typed dataclasses:

1. the defaults of the dataclasses below;
2. a YAML file, which may name one or more parents with ``_base_: other.yaml`` (paths are
   relative to the file; parents are merged first, in list order);
3. ``key=value`` overrides such as ``optim.lr=1e-3``, ``train.epochs=2``,
   ``loss=[{name: ce}, {name: triplet, margin: 0.3}]`` or ``loss.1.weight=0.5``; values are
   parsed as YAML, so lists and mappings use YAML flow syntax.

Merging: mappings merge key by key, everything else (lists included) is replaced. A mapping
holding ``_replace_: true`` replaces instead of merging (e.g. a child config that switches
``model.name`` and wants none of the parent's ``model.args``).

Validation: an unknown key anywhere is an error that names where it came from and lists the
valid keys of that section (with a close-match suggestion). Types are checked and coerced
(``1e-3``, which YAML 1.1 reads as a string, becomes a float in a float field). Free-form
sections — ``model.args``, the ``loss`` specs, sampler/plan ``args`` — are checked against
the component that consumes them by :func:`check_components` (model builder signature,
``build_objective``, ``build_sampler``/``build_plan``).

The resolved config is written as YAML into the run directory by :func:`save_resolved`;
:func:`load_config` accepts that file back, so a run is reproducible from its own folder.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import logging
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from videoreid.utils.errors import UserError
from videoreid.utils.io import atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "ConfigError",
    "SynthConfig",
    "SamplerSpec",
    "ChunkConfig",
    "AugmentConfig",
    "DataConfig",
    "ModelConfig",
    "ParamGroupConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "EvalConfig",
    "Config",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
    "merge",
    "read_yaml",
    "check_components",
    "save_resolved",
    "dump_yaml",
]


class ConfigError(UserError, ValueError):
    """A config file or override is invalid; the message says where and what is valid."""


# ----------------------------------------------------------------------------- schema


@dataclass
class SynthConfig:
    """Generate a synthetic dataset into ``data.root`` when it is missing.

    Passed to ``videoreid.data.synthetic.generate(layout, root, ids=..., ...)``; ``args`` holds
    any further keyword of the generator (``tracklet_len: [min, max]``, ``keypoints``,
    difficulty knobs ...). ``cameras: null`` = the layout's default.
    """

    layout: str = "mars"
    ids: int = 40
    cameras: int | None = None
    preset: str = "default"
    seed: int = 0
    height: int = 128
    width: int = 64
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class SamplerSpec:
    """A named temporal sampler / test plan with its keyword arguments."""

    name: str = "consecutive"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChunkConfig:
    """Cut training tracklets into overlapping chunks (AlignNet: 15 frames, overlap 5)."""

    length: int = 15
    overlap: int = 5


@dataclass
class AugmentConfig:
    """Clip-consistent training augmentation (see ``videoreid.data.transforms``)."""

    flip: float = 0.5
    pad: int = 10
    erasing: float = 0.0
    color_jitter: float = 0.0


@dataclass
class DataConfig:
    """Dataset, clip sampling and batching.

    Attributes:
        dataset: name in ``videoreid.data.datasets.factory.DATASETS``, or a list of names for
            joint training (``[mars, ilidsvid, prid2011]``; see ``videoreid.data.joint``):
            identities offset so they never collide, each dataset evaluated on its own.
        root: dataset root (the parent folder or the dataset folder itself); for a list of
            datasets either one parent root for all or a mapping ``{name: root}`` naming
            every dataset of the list.
        split: split index, or ``"all"`` to train and evaluate every split of a multi-split
            dataset (iLIDS-VID/PRID2011: 10) and report mean ± std. In joint training it
            selects the split of every multi-split dataset of the list (single-split datasets
            such as MARS take part whole in every split).
        dataset_args: extra keywords for the dataset class (e.g. PRID2011 ``seed``); for a
            list of datasets a mapping ``{name: {keyword: value}}``.
        synth: when set and ``root`` holds no dataset, generate a synthetic one there first
            (one dataset only).
        height, width: network input size.
        train_sampler: temporal sampler for training clips (``build_sampler``).
        test_plan: test-time clip plan (``build_plan``).
        chunk_train: cut training tracklets into chunks first (AlignNet), or ``None``.
        P, K: identities per batch and tracklets per identity; the GLOBAL batch is P×K
            (under DDP each of W ranks draws P/W identities).
        workers: DataLoader worker processes.
        augment: training augmentation.
        modalities: aligned maps the model consumes besides images, e.g. ``["flow"]``.
        modality_args: per-modality keyword arguments for the loaders in
            ``videoreid.engine.builders.MODALITY_LOADERS``.
    """

    dataset: str | list[str] = "mars"
    root: str | dict[str, str] = "data"
    split: int | str = 0
    dataset_args: dict[str, Any] = field(default_factory=dict)
    synth: SynthConfig | None = None
    height: int = 256
    width: int = 128
    train_sampler: SamplerSpec = field(
        default_factory=lambda: SamplerSpec("consecutive", {"length": 4})
    )
    test_plan: SamplerSpec = field(
        default_factory=lambda: SamplerSpec("all_consecutive", {"length": 4})
    )
    chunk_train: ChunkConfig | None = None
    P: int = 8
    K: int = 4
    workers: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    modalities: list[str] = field(default_factory=list)
    modality_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """``videoreid.models.factory.build_model(name, num_classes, **args)``."""

    name: str = "baseline"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParamGroupConfig:
    """Parameters whose qualified name starts with ``match`` (first matching group wins).

    Attributes:
        match: name prefix, e.g. ``"pose_net."`` or ``"backbone."``.
        lr_mult: learning-rate multiplier w.r.t. ``optim.lr``.
        weight_decay: overrides ``optim.weight_decay`` for this group when set.
        frozen: never trained (excluded from the optimiser; BN layers kept in eval mode).
        freeze_epochs: frozen for the first N epochs, then trained (STAN's staged training).
    """

    match: str = ""
    lr_mult: float = 1.0
    weight_decay: float | None = None
    frozen: bool = False
    freeze_epochs: int = 0


@dataclass
class OptimConfig:
    """Optimiser: ``adam``, ``adamw`` or ``sgd``; gradient clipping by global norm."""

    name: str = "adam"
    lr: float = 3e-4
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    param_groups: list[ParamGroupConfig] = field(default_factory=list)
    grad_clip: float | None = None


@dataclass
class ScheduleConfig:
    """Learning-rate schedule in epochs (evaluated per iteration, so warm-up is smooth).

    Attributes:
        name: ``constant``, ``step`` (× gamma every ``step_size`` epochs), ``multistep``
            (× gamma at each of ``milestones``) or ``cosine`` (to ``min_factor`` at the end).
        warmup_epochs: linear warm-up from ``warmup_factor`` × lr to lr over this many epochs.
        patience, threshold, monitor: ``plateau`` (× gamma whenever the epoch's mean training
            loss ``monitor`` has not improved by the relative ``threshold`` for ``patience``
            epochs; ``min_factor`` is its floor; see ``videoreid.engine.plateau``).
    """

    name: str = "step"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    step_size: int = 200
    warmup_epochs: float = 0.0
    warmup_factor: float = 0.01
    min_factor: float = 0.0
    patience: int = 10
    threshold: float = 1e-4
    monitor: str = "loss/total"


@dataclass
class TrainConfig:
    """Training loop.

    Attributes:
        epochs: number of epochs.
        iters_per_epoch: batches per epoch; ``None`` = one pass of the P×K sampler.
        amp: ``none``, ``bf16`` (CPU or CUDA) or ``fp16`` (CUDA, with a GradScaler).
        device: ``auto`` (CUDA when available, under DDP the local rank's GPU), ``cpu``,
            ``cuda``, ``cuda:N``.
        checkpoint_every: save a checkpoint every N epochs (and always at the end).
        keep_last: keep the newest k epoch checkpoints.
        eval_every: evaluate every N epochs (0 = only at the end).
        resume: ``false``; ``true`` = newest intact checkpoint in the run directory (damaged
            ones are skipped and named); or a path.
        progress: tqdm progress bars on the main process (off when not a terminal).
        resume_overrides: on resume, the config keys allowed to differ from the run's saved
            config (e.g. ``[optim.lr, train.epochs]``; a section name covers its keys); they
            are applied from the resumed epoch and recorded. Any other difference is an error.
        activation_checkpointing: recompute backbone activations in the backward pass to
            save memory: ``false``, ``true`` (every stage) or a list of stage names
            (``stem``, ``layer1`` … ``layer4``); see ``engine.memory``.
        threads: torch CPU threads; 0 = the cores left after ``data.workers`` (see
            ``videoreid.engine.threads``; the choice is written to ``run_info.json``).
        sync_bn: under DDP, BatchNorm statistics over every rank's batch (including RGSA's
            pair BN), so W ranks normalise as one process on the global batch would.
        init_from: checkpoint of an earlier stage to start from (tensors whose name and
            shape match); ``{split}`` in the path is replaced by the split index, and a
            multi-split run needs it (see ``videoreid.engine.init_from``).
    """

    epochs: int = 800
    iters_per_epoch: int | None = None
    amp: str = "none"
    device: str = "auto"
    checkpoint_every: int = 10
    keep_last: int = 2
    eval_every: int = 50
    resume: bool | str = False
    progress: bool = True
    resume_overrides: list[str] = field(default_factory=list)
    activation_checkpointing: bool | list[str] = False
    threads: int = 0
    sync_bn: bool = False
    init_from: str | None = None


@dataclass
class EvalConfig:
    """Feature extraction and ranking.

    Attributes:
        protocol: evaluation protocol; ``None`` = the dataset's default (``split.protocol``).
        metric: ``euclidean`` or ``cosine``.
        rerank: k-reciprocal re-ranking.
        score_norm: AlignNet's row/column z-score normalisation of similarities.
        normalize: L2 normalisation of clip features ``before`` averaging, of the tracklet
            feature ``after``, ``both`` or ``none``.
        batch_size: clips per forward pass at test time (bounds memory).
        max_rank: length of the CMC curve computed and stored (rank-k metrics for k up to
            it are reported).
        precision: inference precision: ``auto`` (bf16 autocast where the device computes
            bf16 natively, else fp32), ``fp32``, ``bf16``, ``fp16`` (CUDA).
        channels_last: run convolutions in channels-last memory format at test time.
        compile: ``torch.compile`` the model for extraction (first batch compiles).
        score_norm_mode: how ``score_norm`` combines the row and column statistics:
            ``symmetric`` (default), ``sequential``, ``row`` or ``column``
            (``videoreid.evaluation.normalization``).
    """

    protocol: str | None = None
    metric: str = "euclidean"
    rerank: bool = False
    score_norm: bool = False
    normalize: str = "none"
    batch_size: int = 32
    max_rank: int = 50
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    score_norm_mode: str = "symmetric"


@dataclass
class Config:
    """A whole run. ``output_dir`` receives config, logs, checkpoints and metrics."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: list[dict[str, Any]] = field(
        default_factory=lambda: [{"name": "ce", "weight": 1.0}, {"name": "triplet", "weight": 1.0}]
    )
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: str = "runs/default"


CHOICES: dict[str, tuple[str, ...]] = {
    "optim.name": ("adam", "adamw", "sgd"),
    "schedule.name": ("constant", "step", "multistep", "cosine", "plateau"),
    "train.amp": ("none", "bf16", "fp16"),
    "eval.metric": ("euclidean", "cosine"),
    "eval.normalize": ("none", "before", "after", "both"),
    "eval.precision": ("auto", "fp32", "bf16", "fp16"),
    "eval.score_norm_mode": ("symmetric", "sequential", "row", "column"),
}


# ------------------------------------------------------------------- dict <-> dataclass


def config_to_dict(cfg: Any) -> Any:
    """A dataclass tree as plain dicts/lists (YAML-serialisable)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    return cfg


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _suggest(key: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against type annotation ``tp``; build nested dataclasses."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{where}: null is not allowed (expected {_type_name(tp)})")
        real = [o for o in options if o is not type(None)]
        structured = [o for o in real if dataclasses.is_dataclass(o)]
        if len(real) == 1 or (structured and isinstance(value, Mapping)):
            # one candidate: its own, more precise error (e.g. an unknown key) is the answer
            return _coerce(value, (structured or real)[0], where)
        # try str last so that `1` stays an int in `int | str`
        for opt in sorted(real, key=lambda o: o is str):
            try:
                return _coerce(value, opt, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} does not match {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, where)
    if origin in (list, Sequence, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)[:1] or (Any,)
        return [_coerce(v, item_tp, f"{where}.{i}") for i, v in enumerate(value)]
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): v for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported annotation {tp!r}")  # a schema bug


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        k = unknown[0]
        full = f"{where}.{k}" if where else k
        raise ConfigError(
            f"unknown config key {full!r}{_suggest(k, names)}; "
            f"valid keys{' of ' + where if where else ''}: {', '.join(names)}"
        )
    kwargs = {}
    for name in names:
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], f"{where}.{name}" if where else name)
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Build and validate a :class:`Config` from a (partial) nested dict."""
    cfg = _build(Config, data, "")
    _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    for key, options in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in options:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(options)}")
    d = cfg.data
    if isinstance(d.split, str) and d.split != "all":
        raise ConfigError(f"data.split: expected an integer or 'all', got {d.split!r}")
    _validate_datasets(d, cfg.eval.protocol)
    for key in ("P", "K", "height", "width"):
        if getattr(d, key) < 1:
            raise ConfigError(f"data.{key} must be >= 1, got {getattr(d, key)}")
    if cfg.train.threads < 0:
        raise ConfigError(f"train.threads must be >= 0 (0 = automatic), got {cfg.train.threads}")
    if d.workers < 0:
        raise ConfigError(f"data.workers must be >= 0, got {d.workers}")
    if cfg.train.epochs < 0:
        raise ConfigError(f"train.epochs must be >= 0, got {cfg.train.epochs}")
    if cfg.train.keep_last < 1:
        raise ConfigError(f"train.keep_last must be >= 1, got {cfg.train.keep_last}")
    if cfg.train.checkpoint_every < 1:
        raise ConfigError(f"train.checkpoint_every must be >= 1, got {cfg.train.checkpoint_every}")
    if cfg.eval.batch_size < 1:
        raise ConfigError(f"eval.batch_size must be >= 1, got {cfg.eval.batch_size}")
    for i, spec in enumerate(cfg.loss):
        if not isinstance(spec, Mapping) or "name" not in spec:
            raise ConfigError(f"loss.{i}: each loss spec needs a 'name', got {spec!r}")
    for i, g in enumerate(cfg.optim.param_groups):
        if not g.match:
            raise ConfigError(f"optim.param_groups.{i}.match: a name prefix is required")
    s = cfg.schedule
    if s.name == "plateau":
        if s.patience < 1:
            raise ConfigError(f"schedule.patience must be >= 1, got {s.patience}")
        if s.threshold < 0:
            raise ConfigError(f"schedule.threshold must be >= 0, got {s.threshold}")
        if not 0.0 < s.gamma < 1.0:
            raise ConfigError(f"schedule.gamma must be in (0, 1) for plateau, got {s.gamma}")
        if not s.monitor.startswith("loss/"):
            raise ConfigError(f"schedule.monitor: the plateau schedule watches a training loss "
                              f"('loss/total' or 'loss/<term>'), got {s.monitor!r}")
    if cfg.optim.grad_clip is not None and cfg.optim.grad_clip <= 0:
        raise ConfigError(f"optim.grad_clip must be > 0 or null, got {cfg.optim.grad_clip}")
    _validate_run(cfg)


# Losses that need a second tracklet of the same identity in a batch (a positive).
PAIR_LOSSES = ("triplet", "adaptive_triplet", "margin_ranking")
PROTOCOL_NAMES = ("official", "market", "query_in_gallery", "cross_camera")
# The protocols that are meaningful for each dataset (``folder``: any).
DATASET_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "mars": ("official", "market", "query_in_gallery"),
    "dukev": ("market", "query_in_gallery"),
    "market1501": ("market", "query_in_gallery"),
    "ilidsvid": ("cross_camera", "market"),
    "prid2011": ("cross_camera", "market"),
}


def check_protocol(dataset: str | Sequence[str], protocol: str | None,
                   where: str = "eval.protocol") -> None:
    """Raise :class:`ConfigError` unless ``protocol`` (``None`` = default) suits ``dataset``
    (each of them, for a joint list of datasets)."""
    if protocol is None:
        return
    if not isinstance(dataset, str):
        for name in dataset:
            check_protocol(name, protocol, where)
        return
    if protocol not in PROTOCOL_NAMES:
        raise ConfigError(f"{where}: unknown protocol {protocol!r}{_suggest(protocol, PROTOCOL_NAMES)}; "
                          f"valid: {', '.join(PROTOCOL_NAMES)}")
    valid = DATASET_PROTOCOLS.get(dataset)
    if valid is not None and protocol not in valid:
        raise ConfigError(f"{where}: protocol {protocol!r} does not apply to dataset {dataset!r}; "
                          f"valid for {dataset}: {', '.join(valid)}")


def _validate_run(cfg: Config) -> None:
    """Checks that would otherwise fail (or silently mislead) hours into a run."""
    if not str(cfg.output_dir).strip():
        raise ConfigError("output_dir must name a folder, got an empty string")
    o = cfg.optim
    if o.lr <= 0:
        raise ConfigError(f"optim.lr must be > 0, got {o.lr}")
    if o.weight_decay < 0:
        raise ConfigError(f"optim.weight_decay must be >= 0, got {o.weight_decay}")
    for i, g in enumerate(o.param_groups):
        if g.lr_mult < 0:
            raise ConfigError(f"optim.param_groups.{i}.lr_mult must be >= 0, got {g.lr_mult}")
        if g.weight_decay is not None and g.weight_decay < 0:
            raise ConfigError(f"optim.param_groups.{i}.weight_decay must be >= 0, got "
                              f"{g.weight_decay}")
    if cfg.eval.max_rank < 1:
        raise ConfigError(f"eval.max_rank must be >= 1, got {cfg.eval.max_rank}")
    check_protocol(cfg.data.dataset, cfg.eval.protocol)
    if cfg.data.K < 2:
        pair = [f"loss.{i} ({s['name']})" for i, s in enumerate(cfg.loss)
                if s.get("name") in PAIR_LOSSES and float(s.get("weight", 1.0)) != 0]
        if pair:
            raise ConfigError(f"data.K={cfg.data.K}: {', '.join(pair)} needs at least two "
                              "tracklets per identity in a batch (a positive); set data.K >= 2 "
                              "or remove the loss")


def _validate_datasets(d: DataConfig, eval_protocol: str | None) -> None:
    """One dataset with plain root/args, or a list with matching per-dataset mappings."""
    if not isinstance(d.dataset, list):
        if isinstance(d.root, dict):
            raise ConfigError(f"data.root: a mapping {sorted(d.root)} needs data.dataset to be a "
                              f"list of those datasets, got the single dataset {d.dataset!r}")
        return
    names = d.dataset
    if not names:
        raise ConfigError("data.dataset: an empty list; name at least one dataset")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"data.dataset: {dupes} listed more than once")
    if isinstance(d.root, dict):
        for name, root in d.root.items():
            if not isinstance(root, str):
                raise ConfigError(f"data.root.{name}: expected a path, got {root!r}")
        missing, extra = sorted(set(names) - set(d.root)), sorted(set(d.root) - set(names))
        if missing or extra:
            raise ConfigError(f"data.root: the mapping must name exactly the datasets "
                              f"{names}; missing {missing}, not in data.dataset {extra}")
    extra = sorted(set(d.dataset_args) - set(names))
    if extra:
        raise ConfigError(f"data.dataset_args: with several datasets it maps a dataset name to "
                          f"its options ({{name: {{option: value}}}}); {extra} is not one of "
                          f"{names}")
    for name, args in d.dataset_args.items():
        if not isinstance(args, Mapping):
            raise ConfigError(f"data.dataset_args.{name}: expected a mapping of options, got "
                              f"{args!r}")
    if d.synth is not None:
        raise ConfigError("data.synth generates one dataset; with a list in data.dataset "
                          "generate each with `videoreid synth` and set data.root per dataset")
    if eval_protocol is not None:
        raise ConfigError(f"eval.protocol={eval_protocol!r}: with several datasets each is "
                          "evaluated under its own protocol; leave eval.protocol null")
    if d.modalities:
        raise ConfigError(f"data.modalities {d.modalities}: joint training over several "
                          "datasets reads images only (modality caches are per dataset root)")


# ------------------------------------------------------------------ files and overrides


def packaged_configs() -> Path:
    """The folder of configs shipped inside the package (``videoreid/configs``)."""
    return Path(__file__).resolve().parent / "configs"


def resolve_config_path(name: str | Path) -> Path:
    """A config file path, or a shipped config by name (``stan/mars`` → ``configs/stan/mars.yaml``).

    A path that exists wins; otherwise ``name`` (with or without ``.yaml``, with or without a
    leading ``configs/``) is looked up among the configs shipped with the package.

    Raises:
        ConfigError: neither a file nor a shipped config of that name exists.
    """
    path = Path(name)
    if path.is_file():
        return path
    rel = Path(*path.parts[1:]) if path.parts[:1] == ("configs",) else path
    for candidate in (rel, rel.with_name(rel.name + ".yaml")):
        shipped = packaged_configs() / candidate
        if shipped.is_file():
            return shipped
    raise ConfigError(
        f"config file not found: {name} (neither a file nor a shipped config; shipped configs "
        f"are named like 'stan/mars', see {packaged_configs()})"
    )


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config, resolving ``_base_`` parents (relative to the file)."""
    path = (resolve_config_path(path) if not _seen else Path(path)).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"circular _base_ chain: {chain}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    bases = data.pop("_base_", None)
    if bases is None:
        return data
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else list(bases):
        merged = merge(merged, read_yaml(path.parent / base, (*_seen, path)))
    return merge(merged, data)


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base`` (mappings merge, the rest replaces)."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping):
            v = dict(v)
            replace = bool(v.pop("_replace_", False))
            if not replace and isinstance(out.get(k), Mapping):
                out[k] = merge(out[k], v)
                continue
            out[k] = merge({}, v)  # strips nested _replace_ markers
        else:
            out[k] = v
    return out


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse override value {text!r} as YAML: {e}") from e


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (in place; also returned).

    Integer path components index lists (``loss.0.weight=2``). Missing intermediate
    mappings are created; whether a key is valid is decided by the schema afterwards.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=1e-3)")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key or any(not p for p in key.split(".")):
            raise ConfigError(f"override {item!r}: empty key component")
        value = _parse_value(text)
        node: Any = data
        parts = key.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                try:
                    idx = int(part)
                    node[idx]  # noqa: B018 - bounds check
                except (ValueError, IndexError) as e:
                    raise ConfigError(
                        f"override {item!r}: {where!r} must index the list of "
                        f"{len(node)} items at {'.'.join(parts[:i]) or 'top level'}"
                    ) from e
                if last:
                    node[idx] = value
                else:
                    if node[idx] is None:
                        node[idx] = {}
                    node = node[idx]
            elif isinstance(node, dict):
                if last:
                    if isinstance(value, dict) and isinstance(node.get(part), dict):
                        node[part] = merge(node[part], value)
                    else:
                        node[part] = value
                else:
                    if node.get(part) is None:
                        node[part] = {}
                    node = node[part]
            else:
                raise ConfigError(
                    f"override {item!r}: {'.'.join(parts[:i])!r} is a value ({node!r}), "
                    "not a section"
                )
    return data


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    check: bool = True,
) -> Config:
    """Defaults ← YAML file (with ``_base_``) ← overrides → validated :class:`Config`.

    Args:
        path: YAML config file, or ``None`` for the defaults.
        overrides: ``key=value`` strings (values in YAML syntax).
        check: also validate ``model.args``, ``loss`` specs and sampler/plan arguments
            against the components that consume them (:func:`check_components`).

    Raises:
        ConfigError: naming the file/override, the bad key and the valid keys.
    """
    data = config_to_dict(Config())
    source = "defaults"
    if path is not None:
        source = str(path)
        file_data = read_yaml(path)
        try:
            _build(Config, file_data, "")  # report unknown keys against the file
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        data = merge(data, file_data)
    data = apply_overrides(data, overrides)
    try:
        cfg = config_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{source} + overrides {list(overrides)}: {e}") from None
    if check:
        check_components(cfg)
    return cfg


# ---------------------------------------------------------------- component validation


def _check_kwargs(fn: Any, given: Mapping[str, Any], where: str, skip: Sequence[str] = ()) -> None:
    sig = inspect.signature(fn)
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [
        n for n, p in params.items()
        if n not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    for k in given:
        if k not in valid:
            raise ConfigError(
                f"unknown key {where}.{k}{_suggest(k, valid)}; valid keys: {', '.join(valid)}"
            )


def _optional_import(module: str) -> Any:
    """Import a component module; ``None`` only if that very module does not exist."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            log.warning("config check skipped: %s is not available", module)
            return None
        raise


def check_components(cfg: Config) -> None:
    """Validate the free-form sections against the components that consume them.

    Checks the dataset name, ``model.name``/``model.args`` (against the builder's signature),
    the ``loss`` specs (by building the objective on dummy sizes) and the temporal
    sampler/plan arguments (by building them).

    Raises:
        ConfigError: naming the key and listing the valid ones.
    """
    datasets = _optional_import("videoreid.data.datasets.factory")
    names = cfg.data.dataset if isinstance(cfg.data.dataset, list) else [cfg.data.dataset]
    for name in names if datasets is not None else []:
        if name not in datasets.DATASETS:
            raise ConfigError(
                f"data.dataset: unknown dataset {name!r}{_suggest(name, list(datasets.DATASETS))}; "
                f"valid: {', '.join(sorted(datasets.DATASETS))}"
            )
    factory = _optional_import("videoreid.models.factory")
    if factory is not None:
        if cfg.model.name not in factory.MODELS:
            raise ConfigError(
                f"model.name: unknown model {cfg.model.name!r}{_suggest(cfg.model.name, list(factory.MODELS))}; "
                f"valid: {', '.join(sorted(factory.MODELS))}"
            )
        _check_kwargs(factory.MODELS[cfg.model.name], cfg.model.args, "model.args",
                      skip=("num_classes",))
    temporal = _optional_import("videoreid.data.temporal")
    if temporal is not None:
        for key, build in (("train_sampler", temporal.build_sampler),
                           ("test_plan", temporal.build_plan)):
            spec: SamplerSpec = getattr(cfg.data, key)
            try:
                build(spec.name, **spec.args)
            except (TypeError, ValueError, KeyError) as e:
                raise ConfigError(f"data.{key} ({spec.name}, args {spec.args}): {e}") from None
    if factory is not None and temporal is not None:
        check_clip_lengths(cfg, factory.MODELS[cfg.model.name], temporal)
    objective = _optional_import("videoreid.losses.objective")
    if objective is not None:
        try:
            objective.build_objective([dict(s) for s in cfg.loss], num_classes=4, feat_dim=8)
        except (TypeError, ValueError, KeyError) as e:
            raise ConfigError(f"loss: {e}") from None


def check_clip_lengths(cfg: Config, builder: Any, temporal: Any) -> None:
    """A model with a fixed clip length (``builder.required_clip_length(args)``, e.g. STAN's
    ``num_frames``) must get clips of that length from the sampler and the test plan."""
    required = getattr(builder, "required_clip_length", None)
    need = required(dict(cfg.model.args)) if required is not None else None
    if need is None:
        return
    length, key = need
    for name, build in (("train_sampler", temporal.build_sampler),
                        ("test_plan", temporal.build_plan)):
        spec: SamplerSpec = getattr(cfg.data, name)
        got = build(spec.name, **spec.args).length
        if got != length:
            raise ConfigError(
                f"{key}={length} but data.{name} ({spec.name}) gives clips of {got} frames "
                f"(data.{name}.args.length): model {cfg.model.name!r} needs clips of exactly "
                f"{key} frames; set {key}, data.train_sampler.args.length and "
                f"data.test_plan.args.length to the same value"
            )


# ----------------------------------------------------------------------------- saving


def dump_yaml(cfg: Config) -> str:
    """The resolved config as YAML text (loadable by :func:`load_config`)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)


def save_resolved(cfg: Config, run_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config atomically into ``run_dir``; returns the path."""
    path = Path(run_dir) / name
    atomic_write_text(path, dump_yaml(cfg))
    return path
