"""Start-up validation and errors for people: one line, exit code 2, no traceback."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from faultlib import run_cli

from videoreid.cli.main import main
from videoreid.config import ConfigError, load_config


@pytest.mark.parametrize("override,key", [
    ("optim.lr=0", "optim.lr"),
    ("optim.lr=-1e-3", "optim.lr"),
    ("optim.weight_decay=-5e-4", "optim.weight_decay"),
    ("optim.param_groups=[{match: backbone., lr_mult: -1}]", "optim.param_groups.0.lr_mult"),
    ("data.K=1", "data.K=1: loss.1 (triplet)"),
    ("eval.protocol=cross_camera", "eval.protocol"),
    ("eval.protocol=markett", "did you mean 'market'"),
    ("eval.max_rank=0", "eval.max_rank"),
    ("output_dir=", "output_dir"),
])
def test_bad_values_are_config_errors_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("(", r"\(")
                       .replace(")", r"\)")):
        load_config(None, ["loss=[{name: ce}, {name: triplet}]", override])


def test_valid_edges_still_load():
    load_config(None, ["optim.weight_decay=0", "data.K=1", "loss=[{name: ce}]"])
    for ds, protocol in (("ilidsvid", "cross_camera"), ("mars", "official"),
                         ("dukev", "query_in_gallery")):
        load_config(None, [f"data.dataset={ds}", f"eval.protocol={protocol}"])


def test_user_errors_print_one_line_and_exit_2(tiny_cfg, tmp_path, capsys):
    cases = [
        (["train", str(tmp_path / "missing.yaml")], "missing.yaml"),
        (["train", str(tiny_cfg), "optim.lr=-1"], "optim.lr must be > 0"),
        (["train", str(tiny_cfg), "train.epochz=3"], "did you mean 'epochs'"),
        (["evaluate", str(tiny_cfg), "--checkpoint", str(tmp_path / "nope.pt")], "nope.pt"),
        (["evaluate-features", str(tmp_path / "none.npz")], "none.npz"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, (argv, err)
    with pytest.raises(FileNotFoundError):  # --debug anywhere: the traceback instead
        main(["evaluate", str(tiny_cfg), "--checkpoint", str(tmp_path / "nope.pt"), "--debug"])


def test_exit_code_and_stderr_of_the_real_command(tiny_cfg, tmp_path):
    proc = run_cli("evaluate", str(tiny_cfg), "--checkpoint", str(tmp_path / "nope.pt"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "nope.pt" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("videoreid evaluate: error: ")
    proc = run_cli("--debug", "evaluate", str(tiny_cfg), "--checkpoint", str(tmp_path / "x.pt"))
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_overrides_anywhere_max_rank_used_and_protocol_checked_first(tiny_cfg, reference,
                                                                     tmp_path, capsys,
                                                                     monkeypatch):
    out = tmp_path / "eval.json"
    ckpt = str(reference / "checkpoints" / "epoch_0003.pt")
    assert main(["evaluate", str(tiny_cfg), "--checkpoint", ckpt, "eval.max_rank=7",
                 "--out", str(out), "eval.metric=cosine"]) == 0
    res = json.loads(out.read_text())["results"][0]
    assert len(res["cmc"]) == 7 and res["metric"] == "cosine"
    import videoreid.engine.builders as builders

    def no_extraction(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("features extracted before --protocol was checked")

    monkeypatch.setattr(builders, "evaluate_model", no_extraction)
    assert main(["evaluate", str(tiny_cfg), "--checkpoint", ckpt,
                 "--protocol", "cross_camera"]) == 2
    assert "does not apply to dataset 'mars'" in capsys.readouterr().err


def test_evaluate_features_refuses_duplicates_mixed_datasets_and_damage(reference, tmp_path,
                                                                        capsys):
    from videoreid.evaluation.features import FeatureSet

    a = reference / "features.npz"
    assert main(["evaluate-features", str(a), str(a)]) == 2
    assert "given twice" in capsys.readouterr().err
    copy = tmp_path / "copy.npz"
    copy.write_bytes(a.read_bytes())
    assert main(["evaluate-features", str(a), str(copy)]) == 2
    assert "same dataset split" in capsys.readouterr().err
    fs = FeatureSet.load(a)
    fs.dataset = "dukev"
    other = fs.save(tmp_path / "duke.npz")
    assert main(["evaluate-features", str(a), str(other)]) == 2
    assert "different datasets" in capsys.readouterr().err
    for name, data in (("cut.npz", a.read_bytes()[:500]), ("zero.npz", bytes(2000))):
        (tmp_path / name).write_bytes(data)
        assert main(["evaluate-features", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert name in err and "Traceback" not in err
    assert main(["evaluate-features", str(a), "--protocol", "official"]) == 0
    assert np.isfinite(FeatureSet.load(a).features).all()
    assert sys.exc_info() == (None, None, None)
