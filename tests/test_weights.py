"""Published weights (models.backbones.weights) and the random-initialisation refusal.

Offline only: the download function is replaced in every test, files are crafted in a
temporary TORCH_HOME and the table entry points at them with a hash computed here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from videoreid.config import ConfigError
from videoreid.models.backbones import build_backbone
from videoreid.models.backbones import weights as W
from videoreid.models.backbones.weights import PUBLISHED, PublishedWeights, WeightsError


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """A private TORCH_HOME and a download function that fails the test if called."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls: list[str] = []

    def no_network(url, dst):
        calls.append(url)
        raise URLError("network disabled in tests")

    monkeypatch.setattr(W, "_download", no_network)
    return calls


def _crafted_tiny(tmp_path: Path, seed: int = 1) -> tuple[bytes, dict[str, torch.Tensor]]:
    """The bytes of a saved resnet_tiny state dict (with an ImageNet-style ``fc``), and it."""
    torch.manual_seed(seed)
    state = build_backbone("resnet_tiny", pretrained="none").state_dict()
    state["fc.weight"] = torch.randn(10, 64)
    path = tmp_path / f"crafted{seed}.pth"
    torch.save(state, path)
    return path.read_bytes(), state


def _entry_for(data: bytes, **kw) -> PublishedWeights:
    prefix = W.hashlib.sha256(data).hexdigest()[:8]
    return PublishedWeights("resnet_tiny", "imagenet",
                            f"https://weights.invalid/models/resnet_tiny-{prefix}.pth",
                            kw.pop("hash_prefix", prefix), "test file", **kw)


def test_table_prefixes_are_the_ones_in_the_published_file_names():
    for (network, dataset), e in PUBLISHED.items():
        assert e.network == network and e.dataset == dataset
        m = re.fullmatch(r".*-([0-9a-f]{8})\.pth", e.filename)
        if e.hash_prefix is None:
            assert e.size_range is not None and m is None, e
        else:
            assert m and m.group(1) == e.hash_prefix, e
    assert {n for n, d in PUBLISHED if d == "imagenet"} == {
        "resnet18", "resnet34", "resnet50", "resnet101", "se_resnet50"}


def test_openpose_size_bounds_are_the_float32_payload_of_the_coco_body_model():
    from videoreid.models.openpose import OpenPoseBody

    with torch.device("meta"):
        n = sum(p.numel() for p in OpenPoseBody(stages=6).parameters())
    lo, hi = PUBLISHED[("openpose_body", "coco")].size_range
    assert lo == 4 * n and hi == lo + 2**20


def test_file_at_the_announced_cache_path_is_used_without_network(tmp_path, monkeypatch, hub):
    data, state = _crafted_tiny(tmp_path)
    entry = _entry_for(data)
    monkeypatch.setitem(PUBLISHED, ("resnet_tiny", "imagenet"), entry)
    # first: no file there -> the error names URL, expected hash and the exact path
    with pytest.raises(WeightsError) as e:
        build_backbone("resnet_tiny", pretrained="imagenet")
    where = Path(torch.hub.get_dir()) / "checkpoints" / entry.filename
    assert str(tmp_path / "torch") in str(where)
    for part in (entry.url, entry.hash_prefix, str(where)):
        assert part in str(e.value)
    assert hub == [entry.url] and not where.exists()
    # the user places the file by hand: it loads, with no network
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_bytes(data)
    m = build_backbone("resnet_tiny", pretrained="imagenet")
    assert len(hub) == 1
    for k, v in m.state_dict().items():
        assert torch.equal(v, state[k]), k
    info = m.pretrained_weights
    assert info["source"] == "published" and info["path"] == str(where)
    assert info["sha256"] == W.hashlib.sha256(data).hexdigest() and info["url"] == entry.url


def test_wrong_file_is_rejected_by_hash(tmp_path, monkeypatch, hub):
    data, _ = _crafted_tiny(tmp_path, seed=1)
    other, _ = _crafted_tiny(tmp_path, seed=2)
    entry = _entry_for(data)
    monkeypatch.setitem(PUBLISHED, ("resnet_tiny", "imagenet"), entry)
    where = W.cache_dir() / entry.filename
    where.parent.mkdir(parents=True)
    where.write_bytes(other)
    with pytest.raises(WeightsError) as e:
        build_backbone("resnet_tiny", pretrained="imagenet")
    msg = str(e.value)
    assert entry.hash_prefix in msg and str(where) in msg and entry.url in msg
    assert W.hashlib.sha256(other).hexdigest() in msg
    assert where.read_bytes() == other  # a file the user placed is not deleted behind their back


def test_download_is_verified_and_a_bad_download_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    data, state = _crafted_tiny(tmp_path, seed=1)
    entry = _entry_for(data)
    monkeypatch.setitem(PUBLISHED, ("resnet_tiny", "imagenet"), entry)
    payload = {"bytes": b"corrupted" + data[9:]}

    def fake_download(url, dst):
        assert url == entry.url
        Path(dst).write_bytes(payload["bytes"])

    monkeypatch.setattr(W, "_download", fake_download)
    with pytest.raises(WeightsError, match=entry.hash_prefix):
        build_backbone("resnet_tiny", pretrained="imagenet")
    assert not (W.cache_dir() / entry.filename).exists()
    payload["bytes"] = data
    m = build_backbone("resnet_tiny", pretrained="imagenet")
    assert torch.equal(m.conv1.weight, state["conv1.weight"])
    assert (W.cache_dir() / entry.filename).read_bytes() == data


def test_size_pinned_entry_without_a_published_hash(tmp_path, monkeypatch, hub):
    data, _ = _crafted_tiny(tmp_path)
    entry = _entry_for(data, hash_prefix=None, size_range=(len(data) + 1, len(data) + 10))
    monkeypatch.setitem(PUBLISHED, ("resnet_tiny", "imagenet"), entry)
    where = W.cache_dir() / entry.filename
    where.parent.mkdir(parents=True)
    where.write_bytes(data)
    with pytest.raises(WeightsError, match="size"):
        build_backbone("resnet_tiny", pretrained="imagenet")
    monkeypatch.setitem(PUBLISHED, ("resnet_tiny", "imagenet"),
                        _entry_for(data, hash_prefix=None, size_range=(len(data), len(data))))
    m = build_backbone("resnet_tiny", pretrained="imagenet")
    assert m.pretrained_weights["sha256"] == W.hashlib.sha256(data).hexdigest()


def test_openpose_coco_alias_uses_the_table(tmp_path, monkeypatch, hub):
    from videoreid.models.openpose import OpenPoseBody, load_openpose_weights

    torch.manual_seed(0)
    src = OpenPoseBody(stages=1)
    path = tmp_path / "body.pth"
    torch.save(src.state_dict(), path)
    data = path.read_bytes()
    entry = PublishedWeights("openpose_body", "coco", "https://weights.invalid/body_pose_model.pth",
                             None, "test", size_range=(len(data), len(data)))
    monkeypatch.setitem(PUBLISHED, ("openpose_body", "coco"), entry)
    (W.cache_dir()).mkdir(parents=True)
    (W.cache_dir() / "body_pose_model.pth").write_bytes(data)
    net = OpenPoseBody(stages=1)
    load_openpose_weights(net, "coco")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                  src.state_dict().values(), strict=True))
    assert net.pretrained_weights["source"] == "published" and not hub


def test_none_unset_path_and_unknown_alias(tmp_path, hub):
    assert build_backbone("resnet_tiny").pretrained_weights["source"] == "unset"
    assert build_backbone("resnet_tiny", pretrained="none").pretrained_weights["source"] == "none"
    data, _ = _crafted_tiny(tmp_path)
    m = build_backbone("resnet_tiny", pretrained=str(tmp_path / "crafted1.pth"))
    assert m.pretrained_weights["source"] == "file"
    assert m.pretrained_weights["sha256"] == W.hashlib.sha256(data).hexdigest()
    with pytest.raises(WeightsError, match="no published imagenet weights for 'resnet_tiny'"):
        build_backbone("resnet_tiny", pretrained="imagenet")
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        build_backbone("resnet_tiny", pretrained=str(tmp_path / "nothere.pth"))
    assert not hub


# ----------------------------------------------------------------------------- refusal


def test_full_size_backbone_with_unset_weights_is_refused():
    from videoreid.engine.weights_check import check_pretrained_choice, refuse_random_backbones

    with pytest.raises(ConfigError, match="resnet50.*pretrained=none"):
        check_pretrained_choice("baseline", {"backbone": "resnet50"})
    with pytest.raises(ConfigError, match="resnet50"):  # the builder's default backbone
        check_pretrained_choice("stan", {})
    for ok in ({"backbone": "resnet50", "pretrained": "none"},
               {"backbone": "resnet50", "pretrained": "imagenet"},
               {"backbone": "resnet_tiny"},
               {"backbone": "resnet50", "init_from": "run/checkpoints/epoch_0010.pt"}):
        check_pretrained_choice("stan", ok)

    class Holder(torch.nn.Module):  # a backbone under a name the config check cannot see
        def __init__(self) -> None:
            super().__init__()
            with torch.device("meta"):
                self.net = build_backbone("resnet18")

    with pytest.raises(ConfigError, match="resnet18"):
        refuse_random_backbones(Holder(), "custom", {})
    refuse_random_backbones(Holder(), "custom", {"init_from": "x.pt"})


def test_train_refuses_before_reading_any_data(tmp_path, capsys):
    from videoreid.cli.main import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{dataset: mars, root: {tmp_path / 'no_data_here'}}}\n"
                   "model: {name: baseline, args: {backbone: resnet50}}\n"
                   f"output_dir: {tmp_path / 'run'}\n")
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "model.args.pretrained is not set" in err and "pretrained=none" in err
    assert not (tmp_path / "run").exists()


def test_every_shipped_paper_config_starts_from_published_weights():
    from videoreid.config import load_config, packaged_configs

    for path in sorted(packaged_configs().glob("*/**/*.yaml")):
        cfg = load_config(path)
        args = cfg.model.args
        if args.get("backbone", "resnet50").endswith("_tiny"):
            assert cfg.data.synth is not None, path  # CPU benchmarks on synthetic data only
            continue
        assert args.get("pretrained") == "imagenet", path
        if args.get("pose_source") == "openpose":
            assert args.get("pose_weights") == "coco", path


def test_evaluation_model_needs_no_published_weights():
    from videoreid.config import load_config
    from videoreid.engine.builders import _without_published_weights

    cfg = _without_published_weights(load_config("alignnet/mars"))
    assert cfg.model.args["pretrained"] == "none" and cfg.model.args["pose_weights"] == "none"


def test_run_info_records_the_weights_loaded(tmp_path, monkeypatch):
    from videoreid.config import load_config
    from videoreid.engine.builders import train_from_config

    _crafted_tiny(tmp_path)
    weights = tmp_path / "crafted1.pth"
    cfg = load_config("demo", [
        f"data.root={tmp_path / 'data'}", f"output_dir={tmp_path / 'run'}",
        "data.synth.ids=6", "data.synth.cameras=2", "data.synth.args.tracklet_len=[4, 6]",
        "data.P=2", "data.K=2", "data.workers=0", f"model.args.pretrained={weights}",
        "train.epochs=1", "train.iters_per_epoch=1", "train.progress=false",
        "train.checkpoint_every=1",
    ])
    train_from_config(cfg)
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    rec = info["weights"]["backbone"]
    assert rec["source"] == "file" and rec["path"] == str(weights)
    assert rec["sha256"] == W.file_sha256(weights) and rec["network"] == "resnet_tiny"
    assert "git_revision" in info  # the rest of the run info is kept
