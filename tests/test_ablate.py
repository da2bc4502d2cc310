"""`videoreid ablate`: a two-row table × 2 seeds, statistics by hand, resumability."""

from __future__ import annotations

import json
import math

import pytest

from videoreid.engine import ablate as ab

ROW0 = """# Reference row: temporal average pooling.
# switches:
# paper: test table row 1, synthetic: mAP 1.0 / R1 2.0
seed: 0
data:
  dataset: mars
  root: {root}
  synth: {{layout: mars, ids: 12, cameras: 2, preset: easy, seed: 0, height: 32, width: 16,
          args: {{keypoints: false, tracklet_len: [6, 10]}}}}
  height: 32
  width: 16
  P: 4
  K: 2
  workers: 0
  augment: {{pad: 2}}
model:
  name: baseline
  args: {{backbone: resnet_tiny, aggregation: avg}}
optim: {{lr: 3.0e-3}}
schedule: {{name: constant}}
train: {{epochs: 1, iters_per_epoch: 2, device: cpu, checkpoint_every: 1, eval_every: 0}}
eval: {{protocol: market}}
"""
ROW1 = """# Max pooling instead.
_base_: 00_avg.yaml
# switches: model.args.aggregation=max
# paper: test table row 2, synthetic: mAP 3.0 / R1 4.0
model:
  args: {aggregation: max}
"""


def test_t_quantile_and_interval_by_hand():
    assert ab.t_quantile_975(1) == 12.706 and ab.t_quantile_975(4) == 2.776
    assert ab.t_quantile_975(40) == pytest.approx(2.0211, abs=2e-4)
    assert ab.t_quantile_975(120) == pytest.approx(1.9799, abs=2e-4)
    # values 1, 2, 3: mean 2, s = 1, half-width t(2) * 1 / sqrt(3)
    mean, hw, n = ab.mean_interval([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3) and hw == pytest.approx(4.303 / math.sqrt(3))
    assert math.isnan(ab.mean_interval([5.0])[1])


def test_switch_parsing_and_diff():
    got = ab.parse_switches("a.b=null, loss=[{name: ce}, {name: triplet, margin: 0.3}], c='x,y'")
    assert got == {"a.b": None, "loss": [{"name": "ce"}, {"name": "triplet", "margin": 0.3}],
                   "c": "x,y"}
    with pytest.raises(ab.AblationError, match="twice"):
        ab.parse_switches("a=1, a=2")
    base = {"model": {"args": {"x": 1, "y": 2}}, "output_dir": "a", "loss": [1]}
    row = {"model": {"args": {"x": 1, "y": 3, "z": 0}}, "output_dir": "b", "loss": [1, 2]}
    assert ab.config_diff(base, row) == {"model.args.y": 3, "model.args.z": 0, "loss": [1, 2]}
    assert ab.config_diff(row, base) == {"model.args.y": 2, "model.args.z": None, "loss": [1]}
    assert ab.config_diff({"a": 1}, {"a": 1.0}) == {"a": 1.0}  # int vs float is a change


def test_summary_paired_differences_by_hand():
    def run(row, seed, m_ap, r1):
        r = ab.RowRun(row, seed, None, None, paper=None)
        r.result = {"metric_prefix": "mars/split0/market", "mAP": m_ap, "rank1": r1}
        return r

    runs = [run("00_a", 0, 0.50, 0.6), run("00_a", 1, 0.60, 0.7),
            run("01_b", 0, 0.55, 0.6), run("01_b", 1, 0.75, 0.9)]
    s = ab.summarise(runs)
    a, b = s["rows"]
    assert a["mAP"][0] == pytest.approx(0.55) and a["delta_mAP"][0] == 0.0
    # paired: differences 0.05 and 0.15 → mean 0.10, s = 0.0707, hw = 12.706 * s / sqrt(2)
    assert b["delta_mAP"][0] == pytest.approx(0.10)
    assert b["delta_mAP"][1] == pytest.approx(12.706 * math.sqrt(0.005) / math.sqrt(2))
    assert b["delta_rank1"][0] == pytest.approx(0.10)
    text = ab.format_markdown(s)
    assert "mars/split0/market/mAP" in text and "+10.0" in text


def test_ablate_cli_two_rows_is_resumable(tmp_path, monkeypatch, capsys):
    from videoreid.cli.main import main
    from videoreid.engine import builders

    table = tmp_path / "table"
    table.mkdir()
    (table / "00_avg.yaml").write_text(ROW0.format(root=tmp_path / "data"))
    (table / "01_max.yaml").write_text(ROW1)
    out = tmp_path / "out"
    calls = []
    real = builders.train_from_config

    def counting(cfg):
        calls.append((cfg.output_dir, cfg.seed))
        return real(cfg)

    monkeypatch.setattr(builders, "train_from_config", counting)
    argv = ["ablate", str(table), "--seeds", "2", "--out", str(out), "optim.lr=2e-3"]
    assert main(argv) == 0
    assert len(calls) == 4
    assert {c[1] for c in calls} == {0, 1}
    md = (out / "table.md").read_text()
    assert "| 00_avg |" in md and "| 01_max |" in md and "ref." in md
    assert "mars/split0/market/mAP" in md and "chance level" in md
    assert "test table row 2, synthetic: mAP 3.0 / R1 4.0" in md
    assert (out / "ablation.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert [r["seeds"] for r in summary["rows"]] == [[0, 1], [0, 1]]
    res = json.loads((out / "01_max" / "seed1" / ab.RESULT_FILE).read_text())
    assert res["config"]["model"]["args"]["aggregation"] == "max"
    assert res["config"]["optim"]["lr"] == 2e-3 and res["seed"] == 1
    assert 0.0 <= res["mAP"] <= 1.0 and res["metric_prefix"] == "mars/split0/market"

    # rerun: nothing trains, the same table comes out
    calls.clear()
    assert main(argv) == 0
    assert calls == [] and (out / "table.md").read_text() == md
    # one finished result removed (as if killed before the end): only that run reruns
    (out / "00_avg" / "seed1" / ab.RESULT_FILE).unlink()
    assert main(argv) == 0
    assert [c[1] for c in calls] == [1] and calls[0][0].endswith("seed1")
    # other overrides than the recorded runs: refused, never mixed
    capsys.readouterr()
    assert main(["ablate", str(table), "--seeds", "2", "--out", str(out), "optim.lr=1e-3"]) == 2
    assert "another config" in capsys.readouterr().err
