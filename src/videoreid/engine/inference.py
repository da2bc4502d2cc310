"""Fast inference: one path for ``extract``, ``evaluate`` and the inference API.

What "fast" means here, and why each part is safe:

- **inference mode** (``torch.inference_mode``): no autograd bookkeeping, no version counters.
  Bit-identical to ``no_grad``.
- **channels-last** weights (``model.to(memory_format=torch.channels_last)``): oneDNN/cuDNN
  convolutions run in NHWC, the layout their fastest kernels use; a convolution whose weight is
  channels-last produces channels-last output, so the layout propagates through the network
  without converting the input. Same arithmetic, different summation order: features agree
  with the default layout to float32 rounding (tests: ``rtol=1e-4``).
- **bf16 autocast**, only where the hardware computes bfloat16 natively: CPUs with
  AVX512-BF16 or AMX (read from ``/proc/cpuinfo``; elsewhere a short matmul micro-benchmark
  decides) and CUDA GPUs of compute capability >= 8. Where bf16 would be emulated (older
  CPUs) it is *slower* than float32, so ``precision="auto"`` stays in float32 there. bf16
  keeps ~3 significant digits: features agree with float32 to a cosine similarity > 0.99 and
  retrieval rankings barely move (tests state the tolerance). ``precision="fp32"`` turns it
  off; ``"bf16"``/``"fp16"`` force it (fp16: CUDA only).
- **torch.compile** (optional, ``compile=True``): compiles on the first batch of each new
  shape (tens of seconds on a CPU; the bench reports the warm-up), then runs fused kernels.

The choice is logged once per distinct setting (``videoreid.engine.inference`` logger), e.g.
``inference on cpu: bf16 autocast (CPU flag avx512_bf16), channels-last, inference mode``.

Use :func:`prepare_model_for_inference` to convert a model for good (a packaged model, a
benchmark), or :class:`InferenceRunner` to run a model that must be handed back unchanged
(evaluation in the middle of training): it restores the training mode and the memory format
on :meth:`InferenceRunner.close`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

__all__ = [
    "PRECISIONS",
    "InferenceSettings",
    "InferenceRunner",
    "bf16_is_fast",
    "resolve_precision",
    "prepare_model_for_inference",
    "infer",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
_logged: set[tuple] = set()


@dataclass(frozen=True)
class InferenceSettings:
    """How a model runs at test time.

    Attributes:
        device: where it runs, e.g. ``"cpu"``, ``"cuda:0"``.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast dtype; parameters stay fp32).
        channels_last: convolution weights in channels-last memory format.
        compile: the model is wrapped in ``torch.compile``.
        reason: why this precision was chosen (logged, written next to results).
    """

    device: str
    precision: str
    channels_last: bool
    compile: bool
    reason: str

    @property
    def dtype(self) -> torch.dtype | None:
        """Autocast dtype, ``None`` for float32."""
        return _DTYPES[self.precision]

    def describe(self) -> str:
        parts = [f"{self.precision} autocast ({self.reason})" if self.dtype is not None
                 else f"float32 ({self.reason})"]
        if self.channels_last:
            parts.append("channels-last")
        if self.compile:
            parts.append("torch.compile")
        parts.append("inference mode")
        return f"inference on {self.device}: " + ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cpu_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return None


def _bf16_matmul_speedup(n: int = 256, reps: int = 5) -> float:
    """float32 time / bfloat16 time of an ``n``-square matmul (best of ``reps``)."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    times = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, y = a.to(dtype), b.to(dtype)
        x @ y
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            x @ y
            best = min(best, time.perf_counter() - t)
        times[dtype] = best
    return times[torch.float32] / max(times[torch.bfloat16], 1e-12)


@functools.cache
def bf16_is_fast(device: str = "cpu") -> tuple[bool, str]:
    """Whether ``device`` computes bfloat16 natively (so bf16 autocast is a speed-up).

    CPU: the ``amx_bf16`` / ``avx512_bf16`` flags of ``/proc/cpuinfo``; where that file does
    not exist (macOS, Windows) a 256×256 matmul must run >= 1.3× faster in bf16. CUDA:
    compute capability >= 8 (Ampere and later). Other devices: no.

    Returns:
        ``(fast, reason)``, the reason in words for the log.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return False, "CUDA not available"
        major, minor = torch.cuda.get_device_capability(dev)
        if major >= 8:
            return True, f"CUDA compute capability {major}.{minor}"
        return False, f"CUDA compute capability {major}.{minor} < 8 has no fast bf16"
    if dev.type != "cpu":
        return False, f"no bf16 detection for device type {dev.type!r}"
    if not torch.backends.mkldnn.is_available():
        return False, "PyTorch built without oneDNN"
    flags = _cpu_flags()
    if flags is not None:
        have = [f for f in _CPU_BF16_FLAGS if f in flags]
        if have:
            return True, f"CPU flag {have[0]}"
        return False, "CPU lacks avx512_bf16/amx_bf16: bf16 would be emulated (slow)"
    speedup = _bf16_matmul_speedup()
    if speedup >= 1.3:
        return True, f"bf16 matmul {speedup:.1f}x faster than fp32"
    return False, f"bf16 matmul only {speedup:.2f}x fp32 (emulated)"


def resolve_precision(precision: str, device: torch.device | str) -> tuple[str, str]:
    """``(precision, reason)`` for a requested precision on ``device``.

    ``"auto"``: bf16 where :func:`bf16_is_fast`, else fp32. ``"bf16"`` is honoured even where
    emulated (with a warning); ``"fp16"`` needs CUDA.

    Raises:
        ValueError: unknown precision, or fp16 off CUDA.
    """
    p = (precision or "auto").lower()
    p = {"none": "fp32", "float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(p, p)
    if p not in PRECISIONS:
        raise ValueError(f"unknown inference precision {precision!r}; choose one of "
                         f"{', '.join(PRECISIONS)}")
    dev = torch.device(device)
    if p == "fp16" and dev.type != "cuda":
        raise ValueError(f"precision fp16 needs a CUDA device (got {dev}); use bf16 or fp32")
    if p == "fp32":
        return "fp32", "requested"
    fast, why = bf16_is_fast(str(dev))
    if p == "auto":
        return ("bf16", why) if fast else ("fp32", why)
    if p == "bf16" and not fast:
        log.warning("bf16 inference requested on %s although %s", dev, why)
        return "bf16", f"requested ({why})"
    return p, "requested"


def _all_4d_channels_last(model: nn.Module) -> bool:
    ts = [t for t in list(model.parameters()) + list(model.buffers()) if t.dim() == 4]
    return bool(ts) and all(t.is_contiguous(memory_format=torch.channels_last) for t in ts)


def _to_memory_format(model: nn.Module, fmt: torch.memory_format) -> None:
    """``model.to(memory_format=fmt)`` for 4-d tensors only (5-d ones would be refused)."""
    for mod in model.modules():
        for coll in (mod._parameters, mod._buffers):
            for t in coll.values():
                if t is not None and t.dim() == 4 and not t.is_contiguous(memory_format=fmt):
                    t.data = t.data.contiguous(memory_format=fmt)


def prepare_model_for_inference(
    model: nn.Module,
    device: torch.device | str = "cpu",
    precision: str = "auto",
    channels_last: bool = True,
    compile: bool = False,
) -> tuple[Callable[..., Any], InferenceSettings]:
    """Convert ``model`` for fast inference, in place, and say how it will run.

    Puts the model in eval mode on ``device`` with channels-last convolution weights (when
    asked) and optionally wraps it in ``torch.compile``. Call the returned model inside
    :func:`infer` ``(settings)`` to get inference mode and the chosen autocast.

    Args:
        model: ``forward(batch) -> ReIDOutput`` (any module works).
        device: target device.
        precision: ``"auto"`` (bf16 where fast, else fp32), ``"fp32"``, ``"bf16"``, ``"fp16"``.
        channels_last: convert 4-d weights to channels-last.
        compile: wrap in ``torch.compile`` (first call per input shape compiles).

    Returns:
        ``(callable model, settings)``; the callable is ``model`` itself unless compiled.
    """
    dev = torch.device(device)
    prec, reason = resolve_precision(precision, dev)
    model.eval()
    model.to(dev)
    if channels_last:
        _to_memory_format(model, torch.channels_last)
    fn: Callable[..., Any] = torch.compile(model) if compile else model
    settings = InferenceSettings(str(dev), prec, bool(channels_last), bool(compile), reason)
    key = tuple(settings.as_dict().values())
    if key not in _logged:
        _logged.add(key)
        log.info("%s", settings.describe())
    return fn, settings


@contextlib.contextmanager
def infer(settings: InferenceSettings) -> Iterator[None]:
    """Inference mode plus the settings' autocast (a no-op autocast for fp32)."""
    dev = torch.device(settings.device)
    with torch.inference_mode():
        if settings.dtype is None:
            yield
        else:
            with torch.autocast(device_type=dev.type, dtype=settings.dtype):
                yield


class InferenceRunner:
    """Runs a borrowed model fast and hands it back as it was.

    ``runner(batch)`` forwards a batch dict already on the device under :func:`infer`;
    :meth:`close` (or leaving a ``with`` block) restores the model's training mode and, when
    channels-last was applied to a model that did not have it, the default memory format.

    Args:
        model, device, precision, channels_last, compile: as for
            :func:`prepare_model_for_inference`.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device | str = "cpu",
        precision: str = "auto",
        channels_last: bool = True,
        compile: bool = False,
    ) -> None:
        self.model = model
        self._was_training = model.training
        self._restore_format = channels_last and not _all_4d_channels_last(model)
        self.forward, self.settings = prepare_model_for_inference(
            model, device, precision, channels_last, compile)
        self.first_call_s: float | None = None

    def __call__(self, batch: Mapping[str, Any]) -> Any:
        t = time.perf_counter() if self.first_call_s is None else None
        with infer(self.settings):
            out = self.forward(batch)
        if t is not None:
            self.first_call_s = time.perf_counter() - t
            if self.settings.compile:
                log.info("torch.compile warm-up (first batch): %.1f s", self.first_call_s)
        return out

    def close(self) -> None:
        if self._restore_format:
            _to_memory_format(self.model, torch.contiguous_format)
            self._restore_format = False
        self.model.train(self._was_training)

    def __enter__(self) -> InferenceRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
