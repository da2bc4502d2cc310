"""Starting a run from an earlier stage's checkpoint: ``train.init_from`` (any model).

Paper recipes chain stages: STAN pre-trains on image data, then trains on video; AlignNet
pre-trains on synthetic data, then fine-tunes; staged schedules split one recipe into runs.
``train.init_from: PATH`` copies every tensor of the checkpoint whose name and shape match
the freshly built model (``load_matching``: a trainer checkpoint or a plain state dict;
what does not match — typically the classifier of other identities — is reported), after
``model.args.pretrained`` and before training. The older per-model
``model.args.init_from`` (STAN, AlignNet) keeps working and obeys the same rules.

Multi-split datasets (iLIDS-VID, PRID2011: 10 random identity splits). Split k's test
identities are training identities of other splits, so a stage-2 run over ``data.split=all``
must start split k from split k's own stage 1. Write the path with a ``{split}``
placeholder: ``runs/stage1/split{split}/checkpoints/epoch_0100.pt``; each split gets its own
file. A multi-split run whose ``init_from`` has no placeholder is refused — every split would
start from one checkpoint whose training set holds most of the other splits' test
identities — unless the earlier run's resolved ``config.yaml`` (found next to the
checkpoint's ``checkpoints/`` folder) shows it trained on other data (another dataset or
another ``data.root``, e.g. synthetic or image pre-training).
"""

from __future__ import annotations

import logging
import string
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from videoreid.config import Config, ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "PLACEHOLDER",
    "init_sources",
    "format_init",
    "config_for_split",
    "check_init_from",
    "load_init",
]

PLACEHOLDER = "split"


def init_sources(cfg: Config) -> list[tuple[str, str]]:
    """``(config key, path template)`` for every ``init_from`` the config sets."""
    out = []
    if cfg.train.init_from:
        out.append(("train.init_from", cfg.train.init_from))
    model_init = cfg.model.args.get("init_from")
    if model_init:
        out.append(("model.args.init_from", str(model_init)))
    return out


def _fields(template: str, key: str) -> list[str]:
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ConfigError(f"{key}: {template!r} is not a valid path template ({e}); the only "
                          "placeholder is {split}") from None
    bad = [n for n in names if n != PLACEHOLDER]
    if bad:
        raise ConfigError(f"{key}: unknown placeholder(s) {['{' + b + '}' for b in bad]} in "
                          f"{template!r}; the only placeholder is {{split}}")
    return names


def format_init(template: str, split_index: int, key: str = "init_from") -> str:
    """``template`` with ``{split}`` replaced by ``split_index``."""
    _fields(template, key)
    return template.format(split=split_index)


def config_for_split(cfg: Config, split_index: int) -> Config:
    """``cfg`` with its ``init_from`` paths resolved for split ``split_index``."""
    sources = dict(init_sources(cfg))
    if not sources:
        return cfg
    train = cfg.train
    model = cfg.model
    if "train.init_from" in sources:
        train = replace(train, init_from=format_init(sources["train.init_from"], split_index,
                                                     "train.init_from"))
    if "model.args.init_from" in sources:
        args = dict(model.args)
        args["init_from"] = format_init(sources["model.args.init_from"], split_index,
                                        "model.args.init_from")
        model = replace(model, args=args)
    return replace(cfg, train=train, model=model)


def _earlier_config(path: Path) -> Path | None:
    """The resolved config of the run that wrote checkpoint ``path``, if it is there."""
    # RUN/checkpoints/x.pt, RUN/split<k>/checkpoints/x.pt (config.yaml at RUN), RUN/x.pt
    for folder in (path.parent.parent, path.parent.parent.parent, path.parent):
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    return None


def _data_sources(data: Any) -> set[tuple[str, str]]:
    """``(dataset, resolved root)`` pairs a config's data section reads."""
    names = data.dataset if isinstance(data.dataset, list) else [data.dataset]
    roots = data.root if isinstance(data.root, dict) else {n: data.root for n in names}
    return {(n, str(Path(roots[n]).expanduser().resolve())) for n in names}


def check_init_from(cfg: Config, multi_split: Sequence[str], num_splits: int) -> None:
    """Refuse an ``init_from`` that would leak test identities into a multi-split run.

    Args:
        cfg: the run's config.
        multi_split: the config's datasets that have several splits.
        num_splits: splits this run trains (``data.split=all`` → all of them).
    Raises:
        ConfigError: explaining the leak and the ``{split}`` placeholder.
    """
    for key, template in init_sources(cfg):
        has_placeholder = bool(_fields(template, key))
        if has_placeholder or num_splits <= 1 or not multi_split:
            continue
        earlier = _earlier_config(Path(template))
        if earlier is not None:
            from videoreid.config import load_config

            theirs = _data_sources(load_config(earlier, check=False).data)
            ours = {s for s in _data_sources(cfg.data) if s[0] in multi_split}
            if not theirs & ours:
                log.info("%s: %s was trained on %s, none of this run's multi-split data; every "
                         "split starts from it", key, template, sorted(theirs))
                continue
        raise ConfigError(
            f"{key}={template!r}: this run trains {num_splits} splits of {list(multi_split)} "
            "from one checkpoint, but each split's test identities are training identities of "
            "the other splits, so that checkpoint has seen them in training. Start each split "
            "from its own earlier stage with a {split} placeholder, e.g. "
            f"{key}=runs/stage1/split{{split}}/checkpoints/epoch_0100.pt" + (
                "" if earlier is None else f" (its run config {earlier} trains on this data)"))


def load_init(model: nn.Module, path: str) -> dict[str, list[str]]:
    """Copy the matching tensors of checkpoint ``path`` into ``model`` (``train.init_from``)."""
    from videoreid.models.backbones.pretrained import load_matching

    if not Path(path).is_file():
        raise ConfigError(f"train.init_from: checkpoint {path} not found")
    report = load_matching(model, path)
    log.info("train.init_from: %d tensors from %s (%d not loaded)", len(report["loaded"]), path,
             sum(len(report[k]) for k in ("shape_mismatch", "missing")))
    return report
