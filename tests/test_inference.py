"""Model packages and the Predictor: self-sufficient packages, the evaluation's own features."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from tiny_models import TINY_MODEL_ARGS, tiny_model

from videoreid.data.decode import decode_image
from videoreid.evaluation.features import FeatureSet
from videoreid.inference.package import (
    PackageError,
    load_model,
    package_from_run,
    read_package,
    write_package,
)
from videoreid.inference.predictor import Predictor
from videoreid.models.factory import build_model

H, W = 64, 32
PRE = {"height": H, "width": W, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3],
       "test_plan": {"name": "all_consecutive", "args": {"length": 4}}}


def batch_for(model: torch.nn.Module, b: int = 2, t: int = 4, seed: int = 0,
              hw: tuple[int, int] = (H, W)) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {"images": torch.randn(b, t, 3, *hw, generator=g),
           "frame_mask": torch.ones(b, t, dtype=torch.bool)}
    if "flow" in getattr(model, "modalities", ()):
        out["flow"] = 2 * torch.randn(b, t, 2, *hw, generator=g)
    return out


@pytest.mark.parametrize("key", sorted(TINY_MODEL_ARGS))
def test_every_model_packages_headless_and_reloads_identically(tmp_path, key):
    """A trained model (with classifier) → package → load_model gives the same embeddings,
    with no classifier weights stored and no num_classes needed."""
    name, args = tiny_model(key)
    hw = (128, 64) if name == "alignnet" else (H, W)
    torch.manual_seed(0)
    trained = build_model(name, 7, **args)
    with torch.no_grad():  # make BN statistics non-trivial, as after training
        for m in trained.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.8, 1.2)
    trained.eval()
    pre = dict(PRE, height=hw[0], width=hw[1])
    pkg = write_package(tmp_path / "pkg", name, args, trained.state_dict(), pre,
                        {"normalize": "after", "metric": "cosine"}, {"note": "test"})
    dropped = pkg.meta["weights"]["dropped"]
    assert dropped and all("classifier" in k for k in dropped), dropped
    from safetensors.torch import load_file

    stored = load_file(str(tmp_path / "pkg" / "model.safetensors"))
    assert not [k for k in stored if "classifier" in k]
    model = load_model(tmp_path / "pkg")
    assert not model.training
    batch = batch_for(trained, hw=hw)
    with torch.no_grad():
        want = trained(batch).embedding
        got = model(batch).embedding
    assert got.shape == (2, pkg.meta["embedding_dim"])
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    meta = json.loads((tmp_path / "pkg" / "model.json").read_text())
    assert meta["preprocessing"]["mean"] == PRE["mean"]
    assert meta["retrieval"] == {"normalize": "after", "metric": "cosine"}


def test_weight_file_arguments_are_not_needed(tmp_path):
    """Paths to initial weights (pretrained, init_from) are cleared: the package's weights
    replace them, and the files need not exist where the package is used."""
    args = {"backbone": "resnet_tiny", "K": 3, "d": 16, "embed_dim": 12, "num_frames": 4,
            "pretrained": None, "init_from": None}
    m = build_model("stan", 3, **args)
    args.update(pretrained="/nonexistent/resnet.pth", init_from="/nonexistent/run.pt")
    pkg = write_package(tmp_path / "p", "stan", args, m.state_dict(), PRE,
                        {"normalize": "none", "metric": "euclidean"})
    assert pkg.meta["model"]["args"]["pretrained"] is None
    assert pkg.meta["model"]["args"]["init_from"] is None
    load_model(tmp_path / "p")


def test_corrupt_or_missing_package_is_refused(tmp_path):
    m = build_model("baseline", 3, backbone="resnet_tiny")
    write_package(tmp_path / "p", "baseline", {"backbone": "resnet_tiny"}, m.state_dict(), PRE,
                  {"normalize": "none", "metric": "euclidean"})
    with pytest.raises(PackageError, match="model.json missing"):
        read_package(tmp_path)
    w = tmp_path / "p" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(PackageError, match="SHA-256"):
        load_model(tmp_path / "p")
    with pytest.raises(PackageError, match="does not fit"):
        other = build_model("baseline", 3, backbone="resnet_tiny", aggregation="rnn")
        write_package(tmp_path / "q", "baseline", {"backbone": "resnet_tiny"},
                      other.state_dict(), PRE, {})


def test_package_from_demo_run_reproduces_the_runs_features(demo_quick_run, tmp_path):
    """Package + Predictor on the run's query/gallery tracklets = the run's own
    features.npz (same preprocessing, clip plan and extraction path)."""
    from videoreid.data.datasets.factory import build_dataset

    run = demo_quick_run / "run_quick"
    pkg = package_from_run(run, tmp_path / "model")
    prov = pkg.meta["provenance"]
    assert prov["training_data"]["dataset"] == "mars" and prov["epoch"] == 2
    assert any(k.endswith("/mAP") for k in prov["metrics"])
    assert len(prov["config_sha256"]) == 64 and prov["git_revision"]
    assert pkg.meta["preprocessing"]["test_plan"] == {"name": "all_consecutive",
                                                      "args": {"length": 4}}
    split = build_dataset("mars", demo_quick_run / "data_quick").split(0)
    tracks = list(split.query) + list(split.gallery)
    predictor = Predictor(tmp_path / "model", device="cpu", batch_size=7)
    feats = predictor.embed(tracks)
    ref = FeatureSet.load(run / "features.npz")
    assert feats.shape == ref.features.shape
    from videoreid.engine.inference import resolve_precision

    # float32 (this project's CPUs): equal to rounding; where "auto" picks bf16 (AVX512-BF16,
    # AMX), batch composition changes bf16 rounding, so the bound is the bf16 one
    atol = 1e-5 if resolve_precision("auto", "cpu")[0] == "fp32" else 5e-2
    np.testing.assert_allclose(feats, ref.features, rtol=0, atol=atol)
    # the same tracklets as a folder, a path list and in-memory RGB frames
    t = tracks[0]
    frames = [decode_image(p) for p in t.frames]
    folder = tmp_path / "crops"
    folder.mkdir()
    for i, f in enumerate(frames[::-1]):  # written in reverse: order comes from the names
        cv2.imwrite(str(folder / f"frame_{len(frames) - 1 - i:04d}.png"),
                    cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    forms = predictor.embed([list(t.frames), frames, np.stack(frames), folder])
    for row in forms:
        np.testing.assert_allclose(row, ref.features[0], rtol=0, atol=atol)


def test_predictor_bad_input_names_the_problem(demo_quick_run, tmp_path):
    package_from_run(demo_quick_run / "run_quick", tmp_path / "model")
    p = Predictor(tmp_path / "model", device="cpu")
    with pytest.raises(ValueError, match="expected H×W×3 uint8"):
        p.embed([[np.zeros((10, 10), np.uint8)]])
    with pytest.raises(ValueError, match="not a folder of crops"):
        p.embed([tmp_path / "nope"])
    assert p.embed([]).shape == (0, p.embedding_dim)


def test_predictor_applies_the_packages_own_preprocessing(tmp_path):
    """Input size, mean/std, clip plan and normalisation come from model.json: the
    predictor's features equal a direct extraction with exactly those settings, and differ
    from one with the default ImageNet statistics."""
    from videoreid.data.temporal import build_plan
    from videoreid.data.tracklet import Tracklet
    from videoreid.data.transforms import ClipTransform
    from videoreid.engine.extract import extract_features

    torch.manual_seed(0)
    model = build_model("baseline", 3, backbone="resnet_tiny").eval()
    pre = dict(PRE, test_plan={"name": "all_consecutive", "args": {"length": 3}})
    write_package(tmp_path / "p", "baseline", {"backbone": "resnet_tiny"}, model.state_dict(),
                  pre, {"normalize": "after", "metric": "cosine"})
    rng = np.random.default_rng(0)
    tracks = []
    for i, n in enumerate((5, 2, 7)):
        d = tmp_path / f"t{i}"
        d.mkdir()
        for j in range(n):  # 100x50 crops: resized to the package's 64x32
            cv2.imwrite(str(d / f"{j:03d}.png"), rng.integers(0, 255, (100, 50, 3), np.uint8))
        tracks.append(d)
    got = Predictor(tmp_path / "p", device="cpu", batch_size=2, precision="fp32").embed(tracks)
    tl = [Tracklet(sorted(d.iterdir()), -1, 0) for d in tracks]
    plan = build_plan("all_consecutive", length=3)
    want = extract_features(model, tl, plan, ClipTransform(H, W, False, mean=PRE["mean"],
                                                           std=PRE["std"]),
                            normalize="after", precision="fp32", progress=False)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # "after"
    imagenet = extract_features(model, tl, plan, ClipTransform(H, W, False), normalize="after",
                                precision="fp32", progress=False)
    assert np.abs(imagenet - got).max() > 1e-3
