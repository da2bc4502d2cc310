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
