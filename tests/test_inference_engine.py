"""Fast inference path (engine/inference.py): every fast setting gives the plain path's features.

Tolerances (float32 features of tiny nets, values O(1)):
- inference mode vs ``no_grad``: bit-identical.
- channels-last vs default layout (fp32): ``rtol=1e-4, atol=1e-5`` (summation order only).
- bf16 autocast vs fp32: per feature, cosine similarity > 0.99 and relative error
  ``|f_bf16 - f_fp32| / |f_fp32| < 0.03`` (bf16 keeps 8 mantissa bits).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videoreid.engine import inference as inf
from videoreid.models.factory import build_model

H, W, T = 64, 32, 3


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(name: str):
    args = {
        "baseline": dict(backbone="resnet_tiny"),
        "stan": dict(backbone="resnet_tiny", K=2, d=8, embed_dim=8),
        "cmmanet": dict(backbone="resnet_tiny", K=2, hidden=8),
        "rgsa_rgtr": dict(backbone="resnet_tiny", r1=4, r2=16, image_size=(H, W), seq_len=T),
        "man": dict(backbone="resnet_tiny", embed_hidden=8),
    }[name]
    torch.manual_seed(0)
    model = build_model(name, 5, **args)
    with torch.no_grad():  # non-trivial BN statistics, so eval mode matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def batch_for(model, b: int = 2) -> dict:
    g = torch.Generator().manual_seed(1)
    batch = {"images": torch.randn(b, T, 3, H, W, generator=g),
             "frame_mask": torch.ones(b, T, dtype=torch.bool)}
    if "flow" in getattr(model, "modalities", ()):
        batch["flow"] = torch.randn(b, T, 2, H, W, generator=g)
    return batch


def plain(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(batch).embedding.float()


def fast(model, batch, **kw) -> torch.Tensor:
    with inf.InferenceRunner(model, "cpu", **kw) as run:
        return run(batch).embedding.float()


@pytest.mark.parametrize("name", ["baseline", "stan", "cmmanet", "rgsa_rgtr", "man"])
def test_fast_paths_match_plain(name):
    model = tiny(name)
    batch = batch_for(model)
    ref = plain(model, batch)
    # inference mode alone: bit-identical
    got = fast(model, batch, precision="fp32", channels_last=False)
    assert torch.equal(got, ref)
    # channels-last: same arithmetic, other summation order
    got = fast(model, batch, precision="fp32", channels_last=True)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    # bf16 autocast (forced, whatever this CPU supports): ~3 significant digits
    got = fast(model, batch, precision="bf16", channels_last=True)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    assert F.cosine_similarity(got, ref, dim=1).min() > 0.99
    assert ((got - ref).norm(dim=1) / ref.norm(dim=1)).max() < 0.03


def test_runner_hands_the_model_back_unchanged():
    model = tiny("baseline")
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = batch_for(model)
    with inf.InferenceRunner(model, "cpu", precision="fp32", channels_last=True) as run:
        assert not model.training
        conv = next(p for p in model.parameters() if p.dim() == 4)
        assert conv.is_contiguous(memory_format=torch.channels_last)
        run(batch)
    assert model.training
    for p in model.parameters():
        assert p.is_contiguous()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN stats untouched too


def test_prepare_model_for_inference_converts_in_place():
    model = tiny("baseline").train()
    fn, settings = inf.prepare_model_for_inference(model, "cpu", precision="fp32")
    assert fn is model and not model.training
    assert settings.precision == "fp32" and settings.channels_last and not settings.compile
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters() if p.dim() == 4)
    assert "inference on cpu: float32" in settings.describe()


def test_auto_precision_follows_the_cpu_flags(monkeypatch):
    def flags(value):
        monkeypatch.setattr(inf, "_cpu_flags", lambda: value)
        inf.bf16_is_fast.cache_clear()

    try:
        flags({"avx2", "avx512f"})  # no native bf16: emulated, slower than fp32
        prec, reason = inf.resolve_precision("auto", "cpu")
        assert prec == "fp32" and "emulated" in reason
        flags({"avx2", "avx512_bf16"})
        assert inf.resolve_precision("auto", "cpu") == ("bf16", "CPU flag avx512_bf16")
        flags({"amx_bf16", "amx_tile"})
        assert inf.resolve_precision("auto", "cpu")[0] == "bf16"
        # forced precisions are honoured; fp16 needs CUDA; unknown names are refused
        assert inf.resolve_precision("fp32", "cpu")[0] == "fp32"
        assert inf.resolve_precision("none", "cpu")[0] == "fp32"
        with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
            inf.resolve_precision("fp16", "cpu")
        with pytest.raises(ValueError, match="auto, fp32, bf16, fp16"):
            inf.resolve_precision("int8", "cpu")
        # no /proc/cpuinfo: a micro-benchmark decides
        flags(None)
        monkeypatch.setattr(inf, "_bf16_matmul_speedup", lambda: 0.4)
        assert inf.resolve_precision("auto", "cpu")[0] == "fp32"
    finally:
        inf.bf16_is_fast.cache_clear()


def test_extract_features_fast_default_matches_fp32(tmp_path):
    """``extract_features``' default (auto precision, channels-last) agrees with fp32."""
    import cv2

    from videoreid.data.temporal import build_plan
    from videoreid.data.tracklet import Tracklet
    from videoreid.data.transforms import ClipTransform
    from videoreid.engine.extract import extract_features

    rng = np.random.default_rng(0)
    tracklets = []
    for i, n in enumerate([7, 4, 9]):
        paths = []
        for j in range(n):
            p = tmp_path / f"{i}_{j}.png"
            cv2.imwrite(str(p), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
            paths.append(p)
        tracklets.append(Tracklet(tuple(paths), pid=i, camid=0, meta={}))
    model = tiny("baseline")
    plan = build_plan("all_consecutive", length=T)
    tf = ClipTransform(H, W, train=False)
    ref = extract_features(model, tracklets, plan, tf, precision="fp32", channels_last=False,
                           progress=False)
    cl = extract_features(model, tracklets, plan, tf, precision="fp32", progress=False)
    np.testing.assert_allclose(cl, ref, rtol=1e-4, atol=1e-5)
    auto = extract_features(model, tracklets, plan, tf, progress=False)
    cos = (auto * ref).sum(1) / np.linalg.norm(auto, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.99
