"""Config system: precedence, _base_ chains, overrides, validation, resolved-config round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from videoreid.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_to_dict,
    load_config,
    merge,
    save_resolved,
)


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_precedence_defaults_file_overrides(tmp_path):
    defaults = Config()
    f = write(tmp_path / "a.yaml", {"optim": {"lr": 0.01}, "train": {"epochs": 7}})
    cfg = load_config(f, ["train.epochs=3"], check=False)
    assert cfg.optim.lr == 0.01  # file beats default
    assert cfg.train.epochs == 3  # override beats file
    assert cfg.optim.weight_decay == defaults.optim.weight_decay  # untouched default survives
    assert cfg.data.K == defaults.data.K


def test_base_chain_and_replace(tmp_path):
    write(tmp_path / "base.yaml", {"model": {"name": "baseline",
                                             "args": {"backbone": "resnet50", "aggregation": "avg"}},
                                   "data": {"P": 16}})
    (tmp_path / "sub").mkdir()
    child = write(tmp_path / "sub" / "child.yaml",
                  {"_base_": "../base.yaml", "model": {"args": {"aggregation": "attention"}}})
    cfg = load_config(child, check=False)
    # mappings merge key by key across the chain
    assert cfg.model.args == {"backbone": "resnet50", "aggregation": "attention"}
    assert cfg.data.P == 16
    replaced = write(tmp_path / "sub" / "rep.yaml",
                     {"_base_": "../base.yaml", "model": {"args": {"_replace_": True, "x": 1}}})
    assert load_config(replaced, check=False).model.args == {"x": 1}


def test_circular_base_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml", check=False)


def test_override_value_types_and_lists():
    cfg = load_config(None, [
        "optim.lr=1e-3",  # YAML 1.1 reads this as a string; the float field coerces it
        "data.split=all",
        "loss=[{name: ce, label_smoothing: 0.1}, {name: triplet, margin: 0.3}]",
        "optim.param_groups=[{match: backbone., lr_mult: 0.1, freeze_epochs: 2}]",
        "data.synth.ids=12",  # creates the optional section with its defaults
        "train.resume=true",
        "eval.protocol=null",
    ], check=False)
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.data.split == "all"
    assert cfg.loss == [{"name": "ce", "label_smoothing": 0.1}, {"name": "triplet", "margin": 0.3}]
    g = cfg.optim.param_groups[0]
    assert (g.match, g.lr_mult, g.freeze_epochs, g.frozen) == ("backbone.", 0.1, 2, False)
    assert cfg.data.synth is not None and cfg.data.synth.ids == 12
    assert cfg.data.synth.layout == "mars"  # default of the created section
    assert cfg.train.resume is True
    assert cfg.eval.protocol is None
    # list items by index
    cfg2 = load_config(None, ["loss.1.weight=0.5"], check=False)
    assert cfg2.loss[1]["weight"] == 0.5 and cfg2.loss[0] == Config().loss[0]


@pytest.mark.parametrize("override, section_keys", [
    ("optim.lrr=1", ["name", "lr", "weight_decay", "momentum", "param_groups", "grad_clip"]),
    ("data.synth.idz=3", ["layout", "ids", "cameras", "preset", "seed"]),
    ("bogus=1", ["seed", "data", "model", "loss", "optim", "schedule", "train", "eval"]),
])
def test_unknown_key_lists_valid_keys(override, section_keys):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override], check=False)
    msg = str(e.value)
    bad = override.split("=")[0]
    assert repr(bad) in msg
    for k in section_keys:
        assert k in msg


def test_unknown_key_in_file_names_the_file(tmp_path):
    f = write(tmp_path / "bad.yaml", {"train": {"epochz": 3}})
    with pytest.raises(ConfigError) as e:
        load_config(f, check=False)
    assert "bad.yaml" in str(e.value) and "'train.epochz'" in str(e.value)
    assert "did you mean 'epochs'" in str(e.value)


@pytest.mark.parametrize("override, fragment", [
    ("train.epochs=abc", "expected an integer"),
    ("data.P=2.5", "expected an integer"),
    ("optim.lr=fast", "expected a number"),
    ("optim.name=rmsprop", "adam, adamw, sgd"),
    ("eval.normalize=l2", "none, before, after, both"),
    ("data.split=first", "'all'"),
    ("train.amp=fp8", "none, bf16, fp16"),
    ("optim", "key=value"),
    ("train.epochs.x=1", "is a value"),
    ("loss.5.weight=1", "index the list"),
])
def test_bad_values_are_errors(override, fragment):
    with pytest.raises(ConfigError, match=None) as e:
        load_config(None, [override], check=False)
    assert fragment in str(e.value)


def test_model_args_checked_against_builder_signature():
    pytest.importorskip("videoreid.models.factory")
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.args={backbone: resnet_tiny, aggregaton: avg}"])
    msg = str(e.value)
    assert "model.args.aggregaton" in msg and "aggregation" in msg and "backbone" in msg
    with pytest.raises(ConfigError, match="valid"):
        load_config(None, ["model.name=nonexistent"])
    cfg = load_config(None, ["model.args={backbone: resnet_tiny, aggregation: attention}"])
    assert cfg.model.args["aggregation"] == "attention"


def test_loss_specs_and_sampler_args_checked():
    pytest.importorskip("videoreid.losses.objective")
    with pytest.raises(ConfigError) as e:
        load_config(None, ["loss=[{name: triplet, margn: 0.3}]"])
    assert "margn" in str(e.value) and "margin" in str(e.value)
    with pytest.raises(ConfigError, match="loss"):
        load_config(None, ["loss=[{name: not_a_loss}]"])
    with pytest.raises(ConfigError, match="train_sampler"):
        load_config(None, ["data.train_sampler.args={lenght: 4}"])


def test_resolved_config_round_trip(tmp_path):
    cfg = load_config(None, ["optim.lr=2e-4", "data.split=all", "data.synth.ids=5",
                             "optim.param_groups=[{match: head., frozen: true}]"], check=False)
    path = save_resolved(cfg, tmp_path / "run")
    assert path == tmp_path / "run" / "config.yaml"
    again = load_config(path, check=False)
    assert again == cfg
    assert config_to_dict(again) == config_to_dict(cfg)
    assert not list((tmp_path / "run").glob(".*.tmp"))  # atomic write left no temporary


def test_merge_and_apply_overrides_do_not_alias():
    base = {"a": {"b": 1, "c": [1, 2]}}
    out = merge(base, {"a": {"b": 2}})
    assert out == {"a": {"b": 2, "c": [1, 2]}} and base == {"a": {"b": 1, "c": [1, 2]}}
    d = apply_overrides({"x": None}, ["x.y.z=3"])
    assert d == {"x": {"y": {"z": 3}}}


def test_shipped_configs_load():
    root = Path(__file__).resolve().parents[1] / "configs"
    files = [root / "demo.yaml", *sorted((root / "baseline").glob("*.yaml"))]
    assert len(files) == 5
    for f in files:
        cfg = load_config(f)
        assert cfg.model.name == "baseline"
