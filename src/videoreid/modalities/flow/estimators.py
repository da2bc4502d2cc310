"""Dense optical-flow estimators behind one interface.

An estimator maps two consecutive RGB frames to the *forward* flow between them: for the
paper's pair ``(I^{t-1}, I^t) → F^{t-1}`` (Kiran et al., sec. 4 "Optical Flow Estimation"),
``flow[:, y, x] = (dx, dy)`` says that the content at pixel ``(x, y)`` of the first frame is
found at ``(x + dx, y + dy)`` in the second one (x right, y down, pixels of the input).

Estimators (:data:`ESTIMATORS`, built by :func:`build_estimator`):

- ``dis`` — OpenCV DIS (Kroeger et al. 2016), the fast default. Preset ``medium`` (finest scale
  1, 8×8 patches, stride 3, variational refinement): on the project's 128×64 synthetic walkers
  it measured a 0.44 px median end-point error on the torso at ~5 ms per pair on one core
  (``bench/flow_speed.py``); ``fast`` / ``ultrafast`` stop at a coarser scale.
- ``farneback`` — OpenCV Farnebäck polynomial expansion (OpenCV's usual defaults).
- ``tvl1`` — OpenCV's Dual TV-L1, only where ``cv2.optflow`` exists (``opencv-contrib``);
  :meth:`TVL1Flow.available` says whether it does, and building it otherwise is an error that
  says so.
- ``torch`` — the slot for a learned estimator (the paper uses LiteFlowNet, whose weights
  cannot be downloaded here): a local TorchScript file, or an importable ``module:factory``
  plus a local state-dict file. See :class:`TorchFlow` for the contract.

Every estimator is described by :meth:`FlowEstimator.spec` (JSON-able name + parameters); the
flow cache records it and worker processes rebuild the estimator from it, since OpenCV's
estimator objects cannot be pickled.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

__all__ = [
    "ESTIMATORS",
    "FlowEstimator",
    "DISFlow",
    "FarnebackFlow",
    "TVL1Flow",
    "TorchFlow",
    "build_estimator",
    "estimator_from_spec",
]


def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"flow estimators take (H, W, 3) uint8 RGB frames, got {img.shape} "
                         f"{img.dtype}")
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _check_pair(prev: np.ndarray, nxt: np.ndarray) -> None:
    if prev.shape[:2] != nxt.shape[:2]:
        raise ValueError(f"flow needs two frames of the same size, got {prev.shape[:2]} and "
                         f"{nxt.shape[:2]}")


class FlowEstimator:
    """Base class. Subclasses implement :meth:`pair` and :meth:`spec`.

    ``__call__(prev, nxt)`` → ``(2, H, W)`` float32 forward flow ``(dx, dy)`` in pixels.
    :meth:`sequence` returns the ``T - 1`` flows of consecutive frames (learned estimators
    batch them).
    """

    name: str = ""

    def spec(self) -> dict[str, Any]:
        """``{"name": ..., **params}``: enough to rebuild the estimator (:func:`estimator_from_spec`)."""
        raise NotImplementedError

    def pair(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Flow from ``prev`` to ``nxt`` (both ``(H, W, 3)`` uint8 RGB) → ``(2, H, W)`` float32."""
        _check_pair(prev, nxt)
        return self.pair(prev, nxt)

    def sequence(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Flows ``F^t`` of frames ``(t, t + 1)``, ``t = 0..T-2`` → ``(T-1, 2, H, W)`` float32."""
        if len(frames) < 2:
            h, w = frames[0].shape[:2] if frames else (0, 0)
            return np.zeros((0, 2, h, w), dtype=np.float32)
        return np.stack([self(frames[t], frames[t + 1]) for t in range(len(frames) - 1)])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.spec().items() if k != "name")
        return f"{type(self).__name__}({args})"


class _OpenCVFlow(FlowEstimator):
    """Shared plumbing: a lazily created OpenCV object (not picklable, so not pickled)."""

    def __init__(self) -> None:
        self._impl: Any = None

    def _create(self) -> Any:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_impl"] = None
        return state

    def pair(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        if self._impl is None:
            self._impl = self._create()
        flow = self._calc(_gray(prev), _gray(nxt))
        return np.ascontiguousarray(flow.transpose(2, 0, 1), dtype=np.float32)

    def _calc(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._impl.calc(a, b, None)


DIS_PRESETS: dict[str, int] = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class DISFlow(_OpenCVFlow):
    """OpenCV Dense Inverse Search.

    Args:
        preset: ``"ultrafast"``, ``"fast"`` or ``"medium"`` (OpenCV presets).
        finest_scale, patch_size, patch_stride, variational_iterations: override the preset's
            value when given (``None`` keeps it). ``finest_scale=0`` works at full resolution.
    """

    name = "dis"

    def __init__(
        self,
        preset: str = "medium",
        finest_scale: int | None = None,
        patch_size: int | None = None,
        patch_stride: int | None = None,
        variational_iterations: int | None = None,
    ) -> None:
        super().__init__()
        if preset not in DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; valid: {sorted(DIS_PRESETS)}")
        self.preset = preset
        self.finest_scale = finest_scale
        self.patch_size = patch_size
        self.patch_stride = patch_stride
        self.variational_iterations = variational_iterations

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "preset": self.preset, "finest_scale": self.finest_scale,
                "patch_size": self.patch_size, "patch_stride": self.patch_stride,
                "variational_iterations": self.variational_iterations}

    def _create(self) -> Any:
        dis = cv2.DISOpticalFlow_create(DIS_PRESETS[self.preset])
        if self.finest_scale is not None:
            dis.setFinestScale(int(self.finest_scale))
        if self.patch_size is not None:
            dis.setPatchSize(int(self.patch_size))
        if self.patch_stride is not None:
            dis.setPatchStride(int(self.patch_stride))
        if self.variational_iterations is not None:
            dis.setVariationalRefinementIterations(int(self.variational_iterations))
        return dis


class FarnebackFlow(_OpenCVFlow):
    """OpenCV Farnebäck (``cv2.calcOpticalFlowFarneback``) with its documented parameters."""

    name = "farneback"

    def __init__(
        self,
        pyr_scale: float = 0.5,
        levels: int = 3,
        winsize: int = 15,
        iterations: int = 3,
        poly_n: int = 5,
        poly_sigma: float = 1.2,
    ) -> None:
        super().__init__()
        self.pyr_scale, self.levels, self.winsize = float(pyr_scale), int(levels), int(winsize)
        self.iterations, self.poly_n, self.poly_sigma = int(iterations), int(poly_n), float(poly_sigma)

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "pyr_scale": self.pyr_scale, "levels": self.levels,
                "winsize": self.winsize, "iterations": self.iterations, "poly_n": self.poly_n,
                "poly_sigma": self.poly_sigma}

    def _create(self) -> Any:
        return True  # stateless function; nothing to create

    def _calc(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(a, b, None, self.pyr_scale, self.levels,
                                            self.winsize, self.iterations, self.poly_n,
                                            self.poly_sigma, 0)


class TVL1Flow(_OpenCVFlow):
    """OpenCV Dual TV-L1 (``cv2.optflow.DualTVL1OpticalFlow_create``; needs opencv-contrib).

    Args:
        tau, lambda_, theta, nscales, warps, epsilon: the algorithm's parameters (OpenCV
            defaults).
    """

    name = "tvl1"

    def __init__(
        self,
        tau: float = 0.25,
        lambda_: float = 0.15,
        theta: float = 0.3,
        nscales: int = 5,
        warps: int = 5,
        epsilon: float = 0.01,
    ) -> None:
        super().__init__()
        if not self.available():
            raise RuntimeError(
                "flow estimator 'tvl1' needs cv2.optflow, which this OpenCV build "
                f"({cv2.__version__}) lacks; install opencv-contrib-python(-headless) or use "
                "estimator 'dis' or 'farneback'"
            )
        self.tau, self.lambda_, self.theta = float(tau), float(lambda_), float(theta)
        self.nscales, self.warps, self.epsilon = int(nscales), int(warps), float(epsilon)

    @staticmethod
    def available() -> bool:
        return hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "tau": self.tau, "lambda_": self.lambda_, "theta": self.theta,
                "nscales": self.nscales, "warps": self.warps, "epsilon": self.epsilon}

    def _create(self) -> Any:
        return cv2.optflow.DualTVL1OpticalFlow_create(
            tau=self.tau, lambda_=self.lambda_, theta=self.theta, nscales=self.nscales,
            warps=self.warps, epsilon=self.epsilon)


class TorchFlow(FlowEstimator):
    """A learned flow network loaded from local files (the slot for LiteFlowNet, RAFT, ...).

    Contract of the network: ``net(img1, img2)`` with ``(N, 3, H, W)`` float32 images (RGB in
    ``[0, 1]``, or BGR with ``channel_order="bgr"``) returns ``(N, 2, h, w)`` flow from
    ``img1`` to ``img2`` in pixels of its output grid (a tensor, or a list/tuple whose *last*
    element is that tensor, as multi-scale networks return). An output smaller than the
    input is upsampled bilinearly and its values multiplied by the size ratio. Networks that
    need sizes divisible by some number get ``pad_to`` (inputs are zero-padded right/bottom,
    the output cropped back). ``multiplier`` rescales raw outputs (e.g. LiteFlowNet's 20).

    Args:
        weights: local file: a TorchScript module (``arch=None``), or a state dict for
            ``arch``'s network (loaded strictly; mismatches are an error naming the file).
        arch: ``"package.module:factory"``, a callable returning the ``nn.Module``.
        device: ``"cpu"``, ``"cuda"``, ...
        batch_size: frame pairs per forward pass in :meth:`sequence`.
        channel_order: ``"rgb"`` or ``"bgr"``.
        pad_to: pad H and W up to a multiple of this (1 = no padding).
        multiplier: factor applied to the network's output.
    """

    name = "torch"

    def __init__(
        self,
        weights: str,
        arch: str | None = None,
        device: str = "cpu",
        batch_size: int = 8,
        channel_order: str = "rgb",
        pad_to: int = 1,
        multiplier: float = 1.0,
    ) -> None:
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
        if pad_to < 1 or batch_size < 1:
            raise ValueError(f"pad_to and batch_size must be >= 1, got {pad_to}, {batch_size}")
        self.weights, self.arch, self.device = str(weights), arch, str(device)
        self.batch_size, self.channel_order = int(batch_size), channel_order
        self.pad_to, self.multiplier = int(pad_to), float(multiplier)
        self._net: Any = None
        self._load()  # fail at construction, naming the file, not in a worker later

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_net"] = None
        return state

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "weights": self.weights, "arch": self.arch,
                "device": self.device, "batch_size": self.batch_size,
                "channel_order": self.channel_order, "pad_to": self.pad_to,
                "multiplier": self.multiplier}

    def _load(self) -> Any:
        if self._net is not None:
            return self._net
        import os

        import torch

        if not os.path.isfile(self.weights):
            raise FileNotFoundError(f"flow network weights not found: {self.weights}")
        if self.arch is None:
            try:
                net = torch.jit.load(self.weights, map_location=self.device)
            except Exception as e:  # torch raises several unrelated types here
                raise ValueError(
                    f"cannot load {self.weights} as a TorchScript flow network "
                    f"({type(e).__name__}: {e}); give arch='module:factory' for a state dict"
                ) from e
        else:
            from videoreid.models.backbones.pretrained import read_state_dict

            if ":" not in self.arch:
                raise ValueError(f"arch must be 'package.module:factory', got {self.arch!r}")
            module_name, fn_name = self.arch.split(":", 1)
            factory = getattr(importlib.import_module(module_name), fn_name)
            net = factory()
            try:
                net.load_state_dict(read_state_dict(self.weights), strict=True)
            except RuntimeError as e:
                raise ValueError(f"{self.weights} does not fit {self.arch}: {e}") from e
            net = net.to(self.device)
        net.eval()
        self._net = net
        return net

    def pair(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return self._run([prev], [nxt])[0]

    def sequence(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        if len(frames) < 2:
            return super().sequence(frames)
        for a in frames[1:]:
            _check_pair(frames[0], a)
        out = []
        for s in range(0, len(frames) - 1, self.batch_size):
            e = min(s + self.batch_size, len(frames) - 1)
            out.append(self._run(frames[s:e], frames[s + 1:e + 1]))
        return np.concatenate(out)

    def _run(self, first: Sequence[np.ndarray], second: Sequence[np.ndarray]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        net = self._load()

        def to_tensor(frames: Sequence[np.ndarray]) -> torch.Tensor:
            x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
            if self.channel_order == "bgr":
                x = x.flip(1)
            return x.to(self.device)

        a, b = to_tensor(first), to_tensor(second)
        h, w = a.shape[-2:]
        ph, pw = (-h) % self.pad_to, (-w) % self.pad_to
        if ph or pw:
            a, b = F.pad(a, (0, pw, 0, ph)), F.pad(b, (0, pw, 0, ph))
        with torch.inference_mode():
            flow = net(a, b)
            if isinstance(flow, (list, tuple)):
                flow = flow[-1]
            if flow.dim() != 4 or flow.shape[1] != 2 or flow.shape[0] != a.shape[0]:
                raise ValueError(f"flow network {self.weights} returned {tuple(flow.shape)}; "
                                 f"expected ({a.shape[0]}, 2, h, w)")
            flow = flow.float() * self.multiplier
            H, W = a.shape[-2:]
            fh, fw = flow.shape[-2:]
            if (fh, fw) != (H, W):
                flow = F.interpolate(flow, size=(H, W), mode="bilinear", align_corners=False)
                flow = flow * torch.tensor([W / fw, H / fh], device=flow.device).view(1, 2, 1, 1)
            flow = flow[..., :h, :w]
        return np.ascontiguousarray(flow.cpu().numpy(), dtype=np.float32)


ESTIMATORS: dict[str, Callable[..., FlowEstimator]] = {
    "dis": DISFlow,
    "farneback": FarnebackFlow,
    "tvl1": TVL1Flow,
    "torch": TorchFlow,
}


def build_estimator(name: str = "dis", **kwargs: Any) -> FlowEstimator:
    """Build an estimator by name; unknown names or arguments list the valid ones."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown flow estimator {name!r}; valid: {sorted(ESTIMATORS)}")
    cls = ESTIMATORS[name]
    valid = list(inspect.signature(cls).parameters)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(f"unknown arguments {unknown} for flow estimator {name!r}; valid: {valid}")
    return cls(**kwargs)


def estimator_from_spec(spec: dict[str, Any]) -> FlowEstimator:
    """Inverse of :meth:`FlowEstimator.spec`."""
    spec = dict(spec)
    return build_estimator(spec.pop("name"), **spec)
