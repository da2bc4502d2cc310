"""Export a model package to ONNX or TorchScript, with dynamic batch and clip length.

The exported graph maps clips to clip embeddings, exactly ``model(batch).embedding``:

- inputs: ``images`` ``(B, T, 3, H, W)`` float32, normalised with the package's mean/std
  (``model.json`` ``preprocessing``), and ``flow`` ``(B, T, 2, H, W)`` for models that
  consume optical flow; ``B`` and ``T`` are dynamic, ``H × W`` is the package's input size;
- output: ``embedding`` ``(B, D)``.

Every frame of an exported clip is real (the graph has no ``frame_mask``): pad a short
tracklet by repeating frames, as the clip plans do. Models built for one clip length (RGTR's
``seq_len``) keep that requirement: their ``T`` axis is exported dynamic but must equal it. Averaging clip embeddings into a
tracklet feature and the package's normalisation stay outside the graph (see
``model.json`` ``retrieval``), as in :func:`videoreid.engine.extract.extract_features`.

ONNX uses PyTorch's TorchScript-based exporter (``dynamo=False``): the newer
``torch.export`` path needs the ``onnxscript`` package, which this project does not depend
on. An operator without an ONNX mapping raises :class:`ExportError` naming it and the model.
:func:`check_export` runs the exported file (onnxruntime / ``torch.jit.load``) on random
clips of two batch sizes and clip lengths and returns the largest absolute difference from
PyTorch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

__all__ = ["FORMATS", "ExportError", "ClipEmbedder", "export_model", "check_export"]

FORMATS = ("onnx", "torchscript")
OPSET = 17


class ExportError(RuntimeError):
    """A model could not be exported; names the model and the operator at fault."""


class ClipEmbedder(nn.Module):
    """``(images[, flow]) -> embedding``: a packaged model with plain tensor inputs.

    Args:
        model: a model in eval mode (``forward(batch) -> ReIDOutput``).
        uses_flow: the model consumes ``batch["flow"]``.
    """

    def __init__(self, model: nn.Module, uses_flow: bool = False) -> None:
        super().__init__()
        self.model = model
        self.uses_flow = bool(uses_flow)

    def forward(self, images: Tensor, flow: Tensor | None = None) -> Tensor:
        # no frame_mask: every frame is real, and the models' padding path (a stable sort
        # moving padded frames last) has no ONNX mapping
        batch: dict[str, Tensor] = {"images": images}
        if flow is not None:
            batch["flow"] = flow
        return self.model(batch).embedding


def _example(pkg: Any, batch: int, frames: int, seed: int = 0) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    h, w = int(pkg.preprocessing["height"]), int(pkg.preprocessing["width"])
    images = torch.randn(batch, frames, 3, h, w, generator=g)
    if "flow" in pkg.modalities:
        return images, 2 * torch.randn(batch, frames, 2, h, w, generator=g)
    return (images,)


def fixed_clip_length(model: nn.Module) -> int | None:
    """The one clip length a model accepts (RGTR's ``seq_len``), or ``None`` if any works."""
    seq_len = getattr(model, "seq_len", None)
    return int(seq_len) if isinstance(seq_len, int) and getattr(model, "rgtr", True) else None


def _names(pkg: Any) -> list[str]:
    return ["images", "flow"] if "flow" in pkg.modalities else ["images"]


@contextlib.contextmanager
def _quiet_fds() -> Iterator[None]:
    """Silence stdout/stderr at the file-descriptor level: on failure the TorchScript-based
    ONNX exporter prints its whole graph from C++ (thousands of lines), which ``ExportError``
    replaces by one line."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _operator(message: str) -> str:
    m = (re.search(r"operator '([^']+)'", message)
         or re.search(r"export of operator ([\w ]+?)(?:,|\.|$)", message)
         or re.search(r"(aten::\w+)", message))
    return f"operator {m.group(1)!r}" if m else "an operator"


def export_model(
    model_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    fmt: str = "onnx",
    frames: int | None = None,
) -> Path:
    """Export the package in ``model_dir`` (module docstring); returns the written file.

    Args:
        model_dir: the model package.
        out: output file (default ``model_dir/model.onnx`` or ``model_dir/model.pt``).
        fmt: ``"onnx"`` or ``"torchscript"``.
        frames: clip length of the tracing example (default: the package's test clip length).

    Raises:
        ExportError: the model has an operator the format cannot express (named), or
            consumes maps other than images/flow.
    """
    from videoreid.inference.package import load_model
    from videoreid.utils.io import atomic_path

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    model = load_model(model_dir)
    pkg = model.package
    other = [m for m in pkg.modalities if m not in ("images", "flow")]
    if other:
        raise ExportError(f"model {pkg.name!r} consumes {other} maps read from a cache; only "
                          "images and flow can be graph inputs")
    t = int(frames or fixed_clip_length(model)
            or pkg.preprocessing["test_plan"].get("args", {}).get("length", 4))
    model.requires_grad_(False)  # an inference graph: no autograd state in the file
    wrapper = ClipEmbedder(model, "flow" in pkg.modalities).eval()
    example = _example(pkg, 2, t)
    names = _names(pkg)
    default = Path(model_dir) / ("model.onnx" if fmt == "onnx" else "model.pt")
    path = Path(out) if out is not None else default
    with atomic_path(path) as tmp:
        try:
            if fmt == "onnx":
                dynamic = {n: {0: "batch", 1: "frames"} for n in names}
                dynamic["embedding"] = {0: "batch"}
                # the exporter prints its whole graph on failure: keep it out of the terminal
                with warnings.catch_warnings(), _quiet_fds():
                    warnings.simplefilter("ignore")  # exporter deprecation/tracer notices
                    torch.onnx.export(wrapper, example, str(tmp), input_names=names,
                                      output_names=["embedding"], dynamic_axes=dynamic,
                                      opset_version=OPSET, dynamo=False)
            else:
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    # scripting keeps shape-dependent code (B, T) dynamic; tracing would
                    # freeze Python-side shape arithmetic of some models
                    try:
                        scripted = torch.jit.script(wrapper)
                    except Exception:  # noqa: BLE001 - not scriptable: trace, then verify
                        scripted = torch.jit.trace(wrapper, example, check_trace=False)
                    torch.jit.save(scripted, str(tmp))
        except Exception as e:  # noqa: BLE001 - every exporter failure becomes one message
            text = f"{type(e).__name__}: {e}"
            raise ExportError(f"cannot export model {pkg.name!r} to {fmt}: "
                              f"{_operator(text)} is not supported ({text.splitlines()[0][:200]})"
                              ) from e
    log.info("exported %s to %s", pkg.name, path)
    return path


def check_export(
    model_dir: str | os.PathLike[str],
    path: str | os.PathLike[str],
    shapes: tuple[tuple[int, int], ...] = ((1, 3), (3, 6)),
) -> float:
    """Largest ``|exported − PyTorch|`` over random clips of the ``(batch, frames)`` shapes.

    ONNX files run in onnxruntime (CPU); TorchScript files with ``torch.jit.load``. For a
    model with a fixed clip length (:func:`fixed_clip_length`) only the batch size varies.
    """
    from videoreid.inference.package import load_model

    model = load_model(model_dir)
    pkg = model.package
    fixed = fixed_clip_length(model)
    if fixed:
        shapes = tuple((b, fixed) for b, _ in shapes)
    wrapper = ClipEmbedder(model, "flow" in pkg.modalities).eval()
    path = Path(path)
    worst = 0.0
    if path.suffix == ".onnx":
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError("checking an ONNX export needs onnxruntime: "
                              "pip install 'videoreid[onnx]'") from e
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        run = lambda xs: session.run(None, dict(zip(_names(pkg), (x.numpy() for x in xs),  # noqa: E731
                                                    strict=True)))[0]
    else:
        loaded = torch.jit.load(str(path)).eval()
        def run(xs: tuple[Tensor, ...]) -> np.ndarray:
            with torch.no_grad():
                return loaded(*xs).numpy()
    for i, (b, t) in enumerate(shapes):
        xs = _example(pkg, b, t, seed=100 + i)
        with torch.no_grad():
            want = wrapper(*xs).numpy()
        got = np.asarray(run(xs))
        if got.shape != want.shape:
            raise ExportError(f"{path}: output shape {got.shape} for input {tuple(xs[0].shape)}, "
                              f"PyTorch gives {want.shape} (a dimension was not exported as "
                              "dynamic)")
        worst = max(worst, float(np.abs(got - want).max()))
    return worst
