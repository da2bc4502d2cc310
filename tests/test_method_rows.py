"""Paper-table rows of STAN, CMMANet and RGSA/RGTR as config files.

Every file ``configs/<method>/ablation/<table>/NN_row.yaml`` opens with two comment lines::

    # switches: model.args.temporal=avg, loss=[{name: oim, ...}]
    # paper: table 1 SpaAtn, mars: mAP 59.3 / R1 74.5

and names its base with ``_base_``. tests/test_ablation_configs.py checks for every row that
the resolved difference from its base is exactly the declared switch set, and
tests/test_every_config.py that it builds and takes a training step. These tests add what is
specific to the three papers: every table is there, rows equal to their base are the full
models, and each row is what its file name says (so two rows cannot swap contents unnoticed,
which a self-consistent switch line would not reveal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from videoreid.config import load_config
from videoreid.engine.ablate import read_row_annotations

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "videoreid" / "configs"
METHODS = ("stan", "cmmanet", "rgsa_rgtr")
ROWS = sorted(p for m in METHODS for p in (CONFIGS / m / "ablation").glob("*/*.yaml"))
TABLES = sorted({p.parent for p in ROWS})


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


def test_rows_that_equal_their_base_are_the_full_models():
    """A row without switches must be the paper's full model (or the table's default)."""
    empty = {rel(p) for p in ROWS if not read_row_annotations(p)["switches"]}
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
