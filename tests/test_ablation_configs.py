"""Every ablation row config differs from its ``_base_`` by exactly its declared switches.

Convention (``configs/<method>/ablation/<table>/NN_row.yaml``): each row names its parent
with ``_base_:`` and carries ``# switches: key.path=value, ...`` listing every dotted key
whose resolved value differs from the parent's (``# switches:`` alone for none) and
``# paper: <table/row>, <dataset>: mAP X / R1 Y``. ``output_dir`` is bookkeeping and never a
switch; a key absent on one side reads as ``null``. A declared key may name a section (``model.args={...}``): it then covers its
children and its value replaces the whole section.

The check: resolving the parent, replacing each declared key by its declared value and
resolving again must give exactly the row's resolved config; every key that differs is
covered by a declared switch, and every declared switch changes something. So two rows can
never silently swap, drift from their parent, or declare a switch they do not make.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from videoreid.config import config_from_dict, config_to_dict, load_config, packaged_configs
from videoreid.engine.ablate import config_diff, read_row_annotations

ROWS = sorted(p for p in packaged_configs().glob("*/ablation/*/*.yaml")
              if not p.name.startswith("_"))


NUM = r"(\d+(\.\d+)?|-)"
PAPER = re.compile(rf".+, [\w-]+: mAP {NUM} / R1 {NUM}")


def _set_path(d: dict, key: str, value) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        if not isinstance(d.get(p), dict):
            d[p] = {}
        d = d[p]
    d[parts[-1]] = copy.deepcopy(value)


def _parent(row: Path) -> Path:
    raw = yaml.safe_load(row.read_text()) or {}
    base = raw.get("_base_")
    assert base is not None, f"{row}: an ablation row needs a _base_"
    assert isinstance(base, str), f"{row}: use one _base_ (the row it differs from)"
    return (row.parent / base).resolve()


def _rel(p: Path) -> str:
    return str(p.relative_to(packaged_configs()))


def test_there_are_ablation_rows():
    assert len(ROWS) >= 2


@pytest.mark.parametrize("row", ROWS, ids=_rel)
def test_row_differs_from_its_base_by_exactly_its_switches(row: Path):
    notes = read_row_annotations(row)
    assert notes["switches"] is not None, f"{_rel(row)}: missing '# switches:' comment line"
    assert notes["paper"], f"{_rel(row)}: missing '# paper: <row>, <dataset>: mAP X / R1 Y'"
    assert PAPER.fullmatch(notes["paper"]), f"{_rel(row)}: '# paper: {notes['paper']}' is not " \
        "'<table/row>, <dataset>: mAP X / R1 Y' (X or Y '-' when the paper gives none)"
    declared = notes["switches"]
    assert "output_dir" not in declared, f"{_rel(row)}: output_dir is not a switch"
    base = config_to_dict(load_config(_parent(row), check=False))
    got = config_to_dict(load_config(row, check=False))
    diff = config_diff(base, got)

    def covered(key: str) -> bool:
        return any(key == k or key.startswith(k + ".") for k in declared)

    undeclared = {k: v for k, v in diff.items() if not covered(k)}
    assert not undeclared, f"{_rel(row)}: differs from its base in undeclared keys {undeclared}"
    noop = [k for k in declared if not any(d == k or d.startswith(k + ".") for d in diff)]
    assert not noop, f"{_rel(row)}: declared switches {noop} change nothing w.r.t. its base"
    expected = copy.deepcopy(base)
    for k, v in declared.items():
        _set_path(expected, k, v)
    expected["output_dir"] = got["output_dir"]
    want = config_to_dict(config_from_dict(expected))
    wrong = config_diff(want, got, ignore=())
    assert not wrong, f"{_rel(row)}: declared values differ from the resolved row: {wrong}"


@pytest.mark.parametrize("table", sorted({p.parent for p in ROWS}), ids=_rel)
def test_table_rows_are_distinct(table: Path):
    """No two rows of a table resolve to the same config (a copy-paste would hide a row)."""
    rows = sorted(p for p in table.glob("*.yaml") if not p.name.startswith("_"))
    seen: dict[str, str] = {}
    for r in rows:
        d = config_to_dict(load_config(r, check=False))
        d.pop("output_dir")
        key = yaml.safe_dump(d, sort_keys=True)
        assert key not in seen, f"{_rel(r)} resolves to the same config as {seen[key]}"
        seen[key] = _rel(r)


# ------------------------------------------ every MAN / AlignNet row builds and trains a step

STEP_METHODS = ("man", "alignnet")  # STAN/CMMANet/RGSA rows: tests/test_method_rows.py
# Tiny stand-ins for the paper-size networks (optional overrides: only where the row has the
# key); everything else, param groups and losses included, is the row's own config.
TINY = ["data.height=64", "data.width=32", "?model.args.backbone=resnet_tiny",
        "?model.args.pretrained=null", "?model.args.embed_hidden=16", "?model.args.rnn_hidden=16",
        "?model.args.attention_hidden=16", "?model.args.flow_channels=[8, 8, 8, 8, 8]",
        "?model.args.tap_hidden=8", "?model.args.pose_stages=1", "?model.args.pose_weights=null",
        "?model.args.init_from=null"]


def _step_rows() -> list[Path]:
    """One row per distinct model + loss + optimiser recipe of STEP_METHODS (rows that
    differ only in dataset, clip length, initial weights or evaluation share a recipe)."""
    seen, out = set(), []
    for p in ROWS:
        if _rel(p).split("/")[0] not in STEP_METHODS:
            continue
        cfg = load_config(p, TINY_KEYS, check=False)
        key = yaml.safe_dump([config_to_dict(cfg.model), cfg.loss, config_to_dict(cfg.optim),
                              cfg.data.modalities])
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


TINY_KEYS = ["model.args.init_from=null"]
STEP_ROWS = _step_rows()


def test_every_man_and_alignnet_table_is_present():
    tables = {_rel(p.parent) for p in ROWS if _rel(p).split("/")[0] in STEP_METHODS}
    assert tables == {
        *(f"man/ablation/{t}" for t in ("table1_mars", "table2_mars", "table3_mars", "table4_mars",
                                        "table4_dukev", "table5_ilidsvid")),
        *(f"alignnet/ablation/table1a_{d}" for d in ("ilidsvid", "prid2011")),
        *(f"alignnet/ablation/table{t}_{d}" for t in ("1b", "2") for d in
          ("mars", "ilidsvid", "prid2011")),
    }
    assert len(STEP_ROWS) >= 12


@pytest.mark.parametrize("row", STEP_ROWS, ids=_rel)
def test_row_builds_and_takes_a_training_step(row: Path):
    import torch

    from videoreid.config import config_to_dict as to_dict
    from videoreid.engine import builders
    from videoreid.engine.ablate import load_row_config

    torch.manual_seed(0)
    cfg = load_row_config(row, TINY)
    n_ids, k = 4, 2
    model = builders.build_model_from_config(cfg, n_ids)
    objective = builders.build_objective_from_config(cfg, model, n_ids)
    o = cfg.optim
    opt, _ = builders.build_optimizer(model, objective, name=o.name, lr=o.lr,
                                      weight_decay=o.weight_decay, momentum=o.momentum,
                                      param_groups=[to_dict(g) for g in o.param_groups])
    t = int(cfg.data.train_sampler.args.get("length", 4))
    b, h, w = n_ids * k, cfg.data.height, cfg.data.width
    batch = {"images": torch.randn(b, t, 3, h, w), "pids": torch.arange(n_ids).repeat_interleave(k),
             "camids": torch.zeros(b, dtype=torch.long),
             "frame_mask": torch.ones(b, t, dtype=torch.bool)}
    if "flow" in cfg.data.modalities:
        batch["flow"] = torch.randn(b, t, 2, h, w)
    if "pose" in cfg.data.modalities:
        batch["pose"] = torch.rand(b, t, 57, h // 8, w // 8)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.train()
    losses = objective(model(batch), batch)
    assert torch.isfinite(losses["total"]), losses
    opt.zero_grad()
    losses["total"].backward()
    opt.step()
    moved = [n for n, p in model.named_parameters() if n in before and not torch.equal(p, before[n])]
    assert len(moved) > len(before) // 2, f"{_rel(row)}: only {len(moved)}/{len(before)} moved"
