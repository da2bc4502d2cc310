"""Paper-table rows of STAN, CMMANet and RGSA/RGTR as config files.

Every file ``configs/<method>/ablation/<table>/NN_row.yaml`` opens with two comment lines::

    # switches: model.args.temporal=avg, loss=[{name: oim, ...}]
    # paper: table 1 SpaAtn, mars: mAP 59.3 / R1 74.5

and names its base with ``_base_``. The switches are the dotted keys (lists compared whole, a
key absent on one side reads as ``null``) whose resolved values differ between the row and
its base, with the row's values in YAML. These tests recompute that difference, so two rows
can never silently swap or drift, and check that every row builds and takes a training step.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from videoreid.config import config_to_dict, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "videoreid" / "configs"
METHODS = ("stan", "cmmanet", "rgsa_rgtr")
ROWS = sorted(p for m in METHODS for p in (CONFIGS / m / "ablation").glob("*/*.yaml"))
TABLES = sorted({p.parent for p in ROWS})
_SPLIT = re.compile(r",\s+(?=[A-Za-z_][\w./-]*=)")


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings → ``{"a.b.c": leaf}``; lists and scalars are leaves."""
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def resolved(path: Path) -> dict[str, Any]:
    return flatten(config_to_dict(load_config(path, check=False)))


def base_of(path: Path) -> Path:
    text = path.read_text(encoding="utf-8")
    base = yaml.safe_load(text)["_base_"]
    return (path.parent / base).resolve()


def resolved_switches(path: Path) -> dict[str, Any]:
    """Dotted keys whose resolved values differ from the row's ``_base_`` (row's values)."""
    row, base = resolved(path), resolved(base_of(path))
    return {k: row.get(k) for k in sorted(set(row) | set(base)) if row.get(k) != base.get(k)}


def format_switches(switches: dict[str, Any]) -> str:
    parts = []
    for k, v in switches.items():
        text = yaml.safe_dump([v], default_flow_style=True, width=10**6).strip()[1:-1]
        parts.append(f"{k}={text}")
    return ", ".join(parts)


def parse_switches(path: Path) -> dict[str, Any]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# switches:"), f"{path}: first line must be '# switches: ...'"
    body = first[len("# switches:"):].strip()
    out = {}
    for item in _SPLIT.split(body) if body else []:
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def rel(p: Path) -> str:
    return str(p.relative_to(CONFIGS))


def test_every_table_of_the_three_papers_is_present():
    names = {rel(t) for t in TABLES}
    expected = {f"stan/ablation/table{t}_{d}" for t in (1, 2) for d in ("mars", "ilidsvid", "prid2011")}
    expected |= {"cmmanet/ablation/table3_mars", "cmmanet/ablation/table3_ilidsvid",
                 "cmmanet/ablation/table4_mars", "cmmanet/ablation/table5_ilidsvid"}
    expected |= {f"rgsa_rgtr/ablation/table{t}_{d}" for t in (1, 2, 3) for d in ("mars", "dukev")}
    assert names == expected
    sizes = {rel(t): len(list(t.glob("*.yaml"))) for t in TABLES}
    assert sizes["stan/ablation/table1_mars"] == 7 and sizes["stan/ablation/table2_prid2011"] == 5
    assert sizes["cmmanet/ablation/table4_mars"] == 5 and sizes["cmmanet/ablation/table3_mars"] == 2
    assert sizes["rgsa_rgtr/ablation/table1_dukev"] == 7
    assert sizes["rgsa_rgtr/ablation/table2_mars"] == sizes["rgsa_rgtr/ablation/table3_mars"] == 4
    for t in TABLES:  # rows numbered 00, 01, ... without gaps; 00 is the table's baseline
        assert [p.name[:3] for p in sorted(t.glob("*.yaml"))] == [
            f"{i:02d}_" for i in range(sizes[rel(t)])]


@pytest.mark.parametrize("path", ROWS, ids=[rel(p) for p in ROWS])
def test_row_differs_from_its_base_by_exactly_its_switches(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert re.fullmatch(r"# paper: .+, \w+: mAP (\d+\.\d|-) / R1 \d+(\.\d)?", lines[1]), lines[1]
    assert parse_switches(path) == resolved_switches(path)
    assert load_config(path).model.name in METHODS  # validates every component


def test_rows_that_equal_their_base_are_the_full_models():
    """A row without switches must be the paper's full model (or the table's default)."""
    empty = {rel(p) for p in ROWS if not parse_switches(p)}
    assert empty == {
        *(f"stan/ablation/table1_{d}/06_spaatn_q_tematn_ind.yaml" for d in ("mars", "ilidsvid", "prid2011")),
        *(f"stan/ablation/table2_{d}/03_k6.yaml" for d in ("mars", "ilidsvid", "prid2011")),
        "cmmanet/ablation/table3_mars/01_random_interval_sampling.yaml",
        "cmmanet/ablation/table3_ilidsvid/01_random_interval_sampling.yaml",
        "cmmanet/ablation/table4_mars/04_multi_mam_con.yaml",
        "cmmanet/ablation/table5_ilidsvid/04_multi_mam_con.yaml",
        *(f"rgsa_rgtr/ablation/table{t}_{d}/{r}.yaml" for d in ("mars", "dukev")
          for t, r in ((1, "06_rgsa_rgtr_total"), (2, "03_r1_32_r2_256"), (3, "03_t8"))),
    }


# Tiny stand-ins for the paper-size networks; everything else is the row's own config.
TINY = {
    "stan": {"backbone": "resnet_tiny", "d": 8, "embed_dim": 16},
    "cmmanet": {"backbone": "resnet_tiny", "hidden": 8},
    "rgsa_rgtr": {"backbone": "resnet_tiny", "r1": 4, "r2": 8, "image_size": (64, 32)},
}
# CMMANet's concentration loss needs at least K = 4 rows in the layer4 map.
SIZE = {"stan": (64, 32), "cmmanet": (128, 64), "rgsa_rgtr": (64, 32)}


def _unique_recipes() -> list[Path]:
    """One row per distinct (model, loss, optimiser, clip length) recipe: datasets share them."""
    seen, out = set(), []
    for p in ROWS:
        cfg = load_config(p, check=False)
        key = yaml.safe_dump([config_to_dict(cfg.model), config_to_dict(cfg.loss),
                              config_to_dict(cfg.optim), cfg.data.train_sampler.args])
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


RECIPES = _unique_recipes()


@pytest.mark.parametrize("path", RECIPES, ids=[rel(p) for p in RECIPES])
def test_row_builds_and_takes_a_training_step(path):
    """The row's model, loss list and optimiser groups, with a tiny backbone on small frames."""
    from videoreid.engine.builders import (build_model_from_config, build_objective_from_config,
                                           build_optimizer)
    from videoreid.models.output import ReIDOutput

    cfg = load_config(path)
    method = cfg.model.name
    cfg.model.args.update(TINY[method], pretrained=None)
    if method == "stan":
        cfg.model.args["init_from"] = None
    h, w = cfg.data.height, cfg.data.width = SIZE[method]
    torch.manual_seed(0)
    model = build_model_from_config(cfg, num_classes=4)
    objective = build_objective_from_config(cfg, model, num_classes=4)
    o = cfg.optim
    opt, _ = build_optimizer(model, objective, name=o.name, lr=o.lr, weight_decay=o.weight_decay,
                             momentum=o.momentum, nesterov=o.nesterov, betas=o.betas,
                             param_groups=[config_to_dict(g) for g in o.param_groups])
    t = int(cfg.data.train_sampler.args["length"])
    batch = {"images": torch.randn(8, t, 3, h, w), "pids": torch.arange(4).repeat_interleave(2),
             "camids": torch.zeros(8, dtype=torch.long), "frame_mask": torch.ones(8, t, dtype=torch.bool)}
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    out = model(batch)
    assert isinstance(out, ReIDOutput)
    losses = objective(out, batch)
    assert torch.isfinite(losses["total"]) and losses["total"] > 0
    opt.zero_grad()
    losses["total"].backward()
    opt.step()
    moved = [n for n, p in model.named_parameters() if n in before and not torch.equal(p, before[n])]
    assert moved, "the step changed no parameter"
    frozen = [g for g in cfg.optim.param_groups if g.frozen]
    for g in frozen:  # a frozen CNN stays exactly as it was
        assert not any(n.startswith(g.match) for n in moved)


def _loss_names(cfg) -> list[tuple[str, Any]]:
    return sorted((s["name"], s.get("variant")) for s in cfg.loss)


@pytest.mark.parametrize("path", [p for p in ROWS if "/stan/" in str(p)], ids=rel)
def test_stan_rows_say_what_their_name_says(path):
    cfg = load_config(path)
    a, name, table = cfg.model.args, path.stem[3:], path.parent.name
    groups = [(g.match, g.frozen, g.freeze_epochs) for g in cfg.optim.param_groups]
    if table.startswith("table2_"):
        assert a["K"] == int(name[1:]) and a["temporal"] == "softmax"
        assert groups == [("backbone.", True, 0)]
        return
    assert a.get("K", 6) == 6
    if name == "baseline":
        assert (a["spatial"], a["enhancement"], a["temporal"]) == (False, "identity", "avg")
        assert _loss_names(cfg) == [("oim", None)] and groups == [("backbone.", False, 0)]
        return
    assert a["spatial"] and a["enhancement"] == "second_order"
    div = "q_prime" if "qprime" in name else "hellinger" if "_q" in name else None
    assert _loss_names(cfg) == sorted([("oim", None)] + ([("diversity", div)] if div else []))
    assert a["temporal"] == ("max" if "maxpool" in name else "softmax" if "tematn" in name else "avg")
    if name.endswith("_ind"):  # fine-tuned as a whole after the frozen stage
        assert len(groups) == 1 and not groups[0][1] and groups[0][2] > 0
    else:  # the CNN stays fixed (sec. 4.2)
        assert groups == [("backbone.", True, 0)]


@pytest.mark.parametrize("path", [p for p in ROWS if "/rgsa_rgtr/" in str(p)], ids=rel)
def test_rgsa_rgtr_rows_say_what_their_name_says(path):
    cfg = load_config(path)
    a, name, table = cfg.model.args, path.stem[3:], path.parent.name
    terms = sorted(s["name"] for s in cfg.loss)
    if table.startswith("table1_"):
        assert a["rgsa"] == ("rgsa" in name) and a["rgtr"] == ("rgtr" in name)
        assert a["relation"] == ("inner_product" if "_ip_" in name else "difference")
        total = ["adaptive_triplet", "ce", "frame_ce"]
        assert terms == (["ce", "frame_ce"] if name.endswith("_ce") else total)
    elif table.startswith("table2_"):
        _, r1, _, r2 = name.split("_")
        assert (a["r1"], a["r2"]) == (int(r1), int(r2)) and a["seq_len"] == 8
    else:
        t = int(name[1:])
        assert a["seq_len"] == cfg.data.train_sampler.args["length"] == t
        assert cfg.data.test_plan.args == {"length": t, "stride": t // 2}
    if not table.startswith("table3_"):
        assert a["seq_len"] == 8
