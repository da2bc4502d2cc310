"""Checkpoints: atomic writes, keep-last-k rotation, RNG capture/restore, safe loading.

A training checkpoint is a dict (see ``Trainer.state_dict``) holding model, optimiser,
scheduler, grad-scaler, hook and sampler states, the progress counters and the RNG states
of ``random``, ``numpy`` and ``torch`` (CPU and CUDA). Writes go through
``videoreid.utils.io.atomic_save``: a crash mid-write leaves the previous file intact.

Loading uses ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects, so a
checkpoint from elsewhere cannot run code. To make that possible every numpy array or scalar
in the state is stored as a tagged tensor / Python number (:func:`to_safe`) and turned back
on load (:func:`from_safe`).

Files: ``<dir>/epoch_0007.pt`` etc.; only the newest ``keep_last`` are kept. Other names
(``nan_stop.pt``, ``model_final.pt``) are never rotated away.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videoreid.utils.io import atomic_save

log = logging.getLogger(__name__)

__all__ = [
    "to_safe",
    "from_safe",
    "capture_rng_state",
    "restore_rng_state",
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointManager",
    "preserve_rng",
]

_NDARRAY = "__ndarray__"


def to_safe(obj: Any) -> Any:
    """Replace numpy arrays/scalars by types ``torch.load(weights_only=True)`` accepts."""
    if isinstance(obj, np.ndarray):
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(obj)).clone(),
                "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {k: to_safe(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(to_safe(v) for v in obj)
    if isinstance(obj, list):
        return [to_safe(v) for v in obj]
    return obj


def from_safe(obj: Any) -> Any:
    """Inverse of :func:`to_safe` (numpy scalars come back as Python numbers)."""
    if isinstance(obj, Mapping):
        if _NDARRAY in obj:
            return obj[_NDARRAY].numpy().astype(obj["dtype"], copy=True)
        return {k: from_safe(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(from_safe(v) for v in obj)
    if isinstance(obj, list):
        return [from_safe(v) for v in obj]
    return obj


def capture_rng_state() -> dict[str, Any]:
    """States of the global ``random``, ``numpy`` and ``torch`` (CPU + CUDA) generators."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured (after :func:`from_safe`)."""
    random.setstate(_as_tuple(state["python"]))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = list(state["cuda"])
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
        else:
            log.warning("checkpoint has CUDA RNG states for %d devices, this machine has %d; "
                        "CUDA RNG not restored", len(cuda_states), torch.cuda.device_count())


def _as_tuple(x: Any) -> Any:
    """``random.setstate`` needs tuples all the way down."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write ``state`` atomically with ``torch.save`` (numpy values made loadable safely)."""
    path = Path(path)
    safe = to_safe(dict(state))
    atomic_save(path, lambda tmp: torch.save(safe, tmp))
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        FileNotFoundError: naming the path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = torch.load(path, map_location=map_location, weights_only=True)
    return from_safe(state)


class CheckpointManager:
    """Numbered epoch checkpoints in one folder, keeping the newest ``keep_last``.

    Args:
        directory: folder for ``epoch_NNNN.pt`` files (created on first save).
        keep_last: how many epoch checkpoints to keep (older ones are deleted after a
            successful save of a newer one).
    """

    PATTERN = re.compile(r"^epoch_(\d+)\.pt$")

    def __init__(self, directory: str | Path, keep_last: int = 2) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.directory = Path(directory)
        self.keep_last = int(keep_last)

    def path_for(self, epoch: int) -> Path:
        return self.directory / f"epoch_{epoch:04d}.pt"

    def list(self) -> list[tuple[int, Path]]:
        """``(epoch, path)`` of existing epoch checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for p in self.directory.iterdir():
            m = self.PATTERN.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    def latest(self) -> Path | None:
        items = self.list()
        return items[-1][1] if items else None

    def save(self, epoch: int, state: Mapping[str, Any]) -> Path:
        path = save_checkpoint(self.path_for(epoch), state)
        for _, old in self.list()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        return path


class preserve_rng:  # noqa: N801 - used as a context manager, named like one
    """Context manager restoring the global RNG states on exit.

    Evaluation inside training runs under it, so how often a run evaluates does not change
    its training trajectory (a DataLoader draws a seed from the torch RNG per iterator).
    """

    def __enter__(self) -> preserve_rng:
        self._state = capture_rng_state()
        return self

    def __exit__(self, *exc: object) -> None:
        restore_rng_state(self._state)
