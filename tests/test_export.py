"""Export to ONNX / TorchScript: the baseline and every method, outputs checked vs PyTorch."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TINY_MODEL_ARGS, tiny_model

from videoreid.inference import export as export_mod
from videoreid.inference.export import ExportError, check_export, export_model
from videoreid.inference.package import write_package
from videoreid.models.factory import build_model

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

BOUND = 1e-4  # float32 kernels in another runtime: differences are rounding-level


def make_package(tmp_path, key: str):
    name, args = tiny_model(key)
    hw = (128, 64) if name == "alignnet" else (64, 32)
    torch.manual_seed(0)
    model = build_model(name, 3, **args)
    pre = {"height": hw[0], "width": hw[1], "mean": [0.5] * 3, "std": [0.25] * 3,
           "test_plan": {"name": "all_consecutive", "args": {"length": 4}}}
    return write_package(tmp_path / key, name, args, model.state_dict(), pre, {}).directory


FAST = ["baseline"]
SLOW = sorted(set(TINY_MODEL_ARGS) - set(FAST))


def _check(tmp_path, key: str, fmt: str) -> None:
    d = make_package(tmp_path, key)
    path = export_model(d, fmt=fmt)
    assert path.is_file() and path.suffix == (".onnx" if fmt == "onnx" else ".pt")
    # two batch sizes and clip lengths other than the traced (2, 4): dynamic axes hold
    diff = check_export(d, path)
    print(f"{key} {fmt}: max |exported - pytorch| = {diff:.2e}")
    assert diff < BOUND


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("key", FAST)
def test_export_baseline_matches_pytorch(tmp_path, key, fmt):
    _check(tmp_path, key, fmt)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("key", SLOW)
def test_export_every_method_matches_pytorch(tmp_path, key, fmt):
    _check(tmp_path, key, fmt)


def test_onnx_graph_has_dynamic_batch_and_frames(tmp_path):
    import onnx

    path = export_model(make_package(tmp_path, "baseline"), fmt="onnx")
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", "frames", 3, 64, 32]


def test_unexportable_operator_is_named(tmp_path, monkeypatch):
    """Feeding the models' padding mask brings in a stable sort, which has no ONNX mapping:
    the error names the operator and the model instead of dumping the exporter's graph."""
    d = make_package(tmp_path, "baseline_ta")

    def forward_with_mask(self, images, flow=None):
        mask = torch.ones(images.shape[:2], dtype=torch.bool)
        return self.model({"images": images, "frame_mask": mask}).embedding

    monkeypatch.setattr(export_mod.ClipEmbedder, "forward", forward_with_mask)
    with pytest.raises(ExportError, match=r"cannot export model 'baseline' to onnx: operator "
                                          r"'Sort' is not supported"):
        export_model(d, fmt="onnx")
    assert not list((tmp_path / "baseline_ta").glob("*.onnx"))  # nothing half-written
