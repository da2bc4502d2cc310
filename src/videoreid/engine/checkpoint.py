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

Verification. :func:`save_checkpoint` serialises to memory, hashes the bytes (SHA-256),
writes and fsyncs the file atomically, and only then records the hash in ``SHA256SUMS``
beside it (``sha256sum`` format, itself rewritten atomically; ``sha256sum -c SHA256SUMS``
checks a folder by hand). :func:`load_checkpoint` verifies a listed file before unpickling
it; a file killed between its rename and the manifest update is complete (the rename is
atomic) but unlisted, and is loaded as "unverified". Every failure is a
:class:`~videoreid.utils.errors.CheckpointError` naming the file and what is wrong (empty,
truncated/damaged, hash mismatch, foreign content, not a training checkpoint) — never the
raw unpickler message. :meth:`CheckpointManager.latest_intact` is what ``train.resume=true``
uses: the newest checkpoint that loads and verifies, with the skipped ones and why.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import random
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videoreid.utils.errors import CheckpointError
from videoreid.utils.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "to_safe",
    "from_safe",
    "capture_rng_state",
    "restore_rng_state",
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointManager",
    "CheckpointNotFoundError",
    "MANIFEST",
    "read_manifest",
    "verify_checkpoint",
    "check_training_state",
    "preserve_rng",
]

MANIFEST = "SHA256SUMS"
TRAINING_KEYS = ("model", "optimizer", "epoch", "iter", "data_pass", "rng")


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist (also a ``FileNotFoundError``)."""

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


def _sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(directory: str | Path) -> dict[str, str]:
    """``{file name: sha256 hex}`` from ``<directory>/SHA256SUMS`` (empty if absent).

    Lines that are not ``<64 hex>  <name>`` are ignored (a damaged manifest makes its files
    "unverified", not unloadable).
    """
    path = Path(directory) / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return {}
    out = {}
    for line in text.splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) == 64 and name and all(c in "0123456789abcdef" for c in digest):
            out[name.lstrip("*")] = digest
    return out


def _write_manifest(directory: Path, entries: Mapping[str, str]) -> None:
    lines = [f"{d}  {n}\n" for n, d in sorted(entries.items()) if (directory / n).is_file()]
    atomic_write_text(directory / MANIFEST, "".join(lines))


def _record(path: Path, digest: str | None) -> None:
    """Set (or, with ``None``, drop) ``path``'s entry in its folder's manifest."""
    entries = read_manifest(path.parent)
    if digest is None:
        if path.name not in entries:
            return
        entries.pop(path.name)
    else:
        entries[path.name] = digest
    _write_manifest(path.parent, entries)


def _write_bytes(path: Path, data: bytes | memoryview) -> None:
    """Write and fsync (a checkpoint must be on disk before the manifest vouches for it)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write ``state`` atomically with ``torch.save``, then record its SHA-256 in the manifest.

    Raises:
        DiskFullError: no space left, naming the file (the previous version stays intact).
    """
    path = Path(path)
    buf = io.BytesIO()
    torch.save(to_safe(dict(state)), buf)
    data = buf.getbuffer()
    digest = _sha256(data)
    with atomic_path(path) as tmp:
        _write_bytes(tmp, data)
    _record(path, digest)
    return path


def verify_checkpoint(path: str | Path) -> bool:
    """Check ``path`` against its manifest entry.

    Returns:
        True when the manifest lists the file and the hash matches; False when it is not
        listed (unverified, e.g. killed between the rename and the manifest update).

    Raises:
        CheckpointError: missing, empty, or its SHA-256 differs from the recorded one.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): its write was interrupted "
                              "or the disk was full")
    want = read_manifest(path.parent).get(path.name)
    if want is None:
        return False
    have = _sha256(path.read_bytes())
    if have != want:
        raise CheckpointError(
            f"checkpoint {path} is damaged: its SHA-256 {have[:12]}… differs from "
            f"{want[:12]}… recorded in {path.parent / MANIFEST} when it was written "
            f"({size} bytes now)")
    return True


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    *, verify: bool = True) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Args:
        path: the file.
        map_location: passed to ``torch.load``.
        verify: check the SHA-256 against the folder's manifest first (see
            :func:`verify_checkpoint`).

    Raises:
        CheckpointNotFoundError: naming the path (also a ``FileNotFoundError``).
        CheckpointError: empty, damaged/truncated, hash mismatch, or content that is not
            plain tensors and containers (foreign file).
    """
    path = Path(path)
    if verify:
        if not verify_checkpoint(path):
            log.info("checkpoint %s is not listed in %s; loading it unverified", path, MANIFEST)
    elif not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols first
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message here suggests weights_only=False, i.e. running the file's code
        raise CheckpointError(
            f"checkpoint {path} holds Python objects other than tensors and plain containers: "
            "it was not written by videoreid (or is damaged); refusing to unpickle it, since "
            "that could run code from the file") from e
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as e:
        size = path.stat().st_size if path.is_file() else 0
        if size == 0:
            raise CheckpointError(f"checkpoint {path} is empty (0 bytes): its write was "
                                  "interrupted or the disk was full") from e
        raise CheckpointError(
            f"checkpoint {path} ({size} bytes) is not a readable PyTorch file: truncated, "
            f"damaged or of another format ({type(e).__name__})") from e
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict "
                              "of states: not a videoreid checkpoint")
    return from_safe(state)


def check_training_state(state: Mapping[str, Any], path: str | Path) -> None:
    """Raise :class:`CheckpointError` unless ``state`` is a training checkpoint (resumable)."""
    missing = [k for k in TRAINING_KEYS if k not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} is not a videoreid training checkpoint (no {missing}); it cannot "
            "be resumed (weights-only files can be used with model.args.init_from or "
            "`videoreid evaluate`)")


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
            _record(old, None)  # the manifest never vouches for a file that is gone
            old.unlink(missing_ok=True)
        return path

    def latest_intact(self, map_location: str | torch.device = "cpu",
                      ) -> tuple[Path, dict[str, Any], list[tuple[Path, str]]] | None:
        """The newest epoch checkpoint that verifies, loads and is a training checkpoint.

        Returns:
            ``(path, state, skipped)`` with ``skipped`` the newer ``(path, reason)`` passed
            over (each also logged as a warning), or ``None`` when there is no checkpoint.

        Raises:
            CheckpointError: checkpoints exist but none is intact (lists each reason).
        """
        items = self.list()
        if not items:
            return None
        skipped: list[tuple[Path, str]] = []
        for _, path in reversed(items):
            try:
                state = load_checkpoint(path, map_location)
                check_training_state(state, path)
            except CheckpointError as e:
                skipped.append((path, str(e)))
                log.warning("skipping checkpoint %s: %s", path.name, e)
                continue
            return path, state, skipped
        raise CheckpointError(f"no intact checkpoint in {self.directory}: "
                              + "; ".join(reason for _, reason in skipped))


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
