"""One run, one folder: locking, occupancy, honest resume and start-up bookkeeping.

A training run owns its ``output_dir`` for its whole lifetime:

- :func:`probe_lock` / :class:`RunFolder` — an exclusive ``flock`` on ``<output_dir>/.run.lock``
  held while the run lives (the kernel drops it when the process dies, even on SIGKILL, so a
  stale lock never blocks a rerun). A second run into the folder is refused at once, naming
  the holder's pid and host. The probe only reads, so it runs before any start-up check.
- :func:`check_run_folder` — before anything is written: a new run refuses a folder that holds
  another run unless ``train.resume`` is set; on resume the resolved config is compared with
  the one the run last used (``config.yaml``, or the newest ``config.from_epoch_NNNN.yaml``)
  and any difference is refused with the list of keys unless ``train.resume_overrides`` names
  them (a name covers its sub-keys: ``optim`` covers ``optim.lr``).
- :meth:`RunFolder.start` — after every start-up check passed: take the lock, remove stale
  ``*.tmp`` files a killed write left, and write the run files. On a fresh run that is
  ``config.yaml`` and ``run_info.json``; on a resume ``config.yaml`` is never rewritten —
  accepted changes go to ``config.from_epoch_NNNN.yaml`` (the config used from that epoch on)
  and ``run_info.json`` gains an entry under ``"resumes"`` (checkpoint, epoch, changes,
  checkpoints skipped as damaged, environment), so the original record is kept.

Named changes are applied for real from the resumed epoch: the trainer, schedule and loss
are built from the new config, and :func:`apply_optimizer_overrides` puts the new
optimiser hyper-parameters over the ones the checkpoint restored. :class:`ResumeNoteHook`
writes the changes into the ``resumed`` column of ``log.csv`` at the first resumed epoch.

Locks use ``fcntl.flock``: on network filesystems without lock support the lock is advisory
at best (a warning is logged when it cannot be taken for that reason).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from videoreid.config import Config, ConfigError, config_to_dict, dump_yaml, load_config
from videoreid.engine.hooks import HookBase
from videoreid.utils.errors import RunDirError
from videoreid.utils.io import TMP_PATTERN, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "LOCK_NAME",
    "RUN_FILES",
    "IGNORED_KEYS",
    "probe_lock",
    "run_contents",
    "flatten",
    "config_changes",
    "effective_config_path",
    "check_run_folder",
    "clean_stale_tmp",
    "apply_optimizer_overrides",
    "ResumeNoteHook",
    "RunFolder",
]

LOCK_NAME = ".run.lock"
# What makes a folder "hold a run" (anything a run writes besides the lock).
RUN_FILES = ("config.yaml", "run_info.json", "log.csv", "metrics.json", "features.npz",
             "checkpoints")
# Keys that may differ on resume without being named: they change nothing the run computes.
IGNORED_KEYS = ("train.resume", "train.resume_overrides", "train.progress", "output_dir")
_EFFECTIVE_PREFIX = "config.from_epoch_"


# ------------------------------------------------------------------------------ locking


def _holder_text(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started "
            f"{info.get('started', '?')}")


def _in_use(run_dir: Path, holder: str) -> RunDirError:
    return RunDirError(f"output_dir {run_dir} is in use by another run ({holder}); wait for it "
                       "to finish, or choose another output_dir")


def probe_lock(run_dir: str | Path) -> None:
    """Raise :class:`RunDirError` if a live run holds ``run_dir``'s lock (writes nothing)."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(Path(run_dir), _holder_text(fd)) from None
        except OSError as e:  # e.g. a filesystem without flock support
            log.warning("cannot probe the lock %s (%s)", path, e)
    finally:
        os.close(fd)


# --------------------------------------------------------------------- folder contents


def run_contents(run_dir: str | Path) -> list[str]:
    """Names of run files in ``run_dir`` (and ``split<k>/`` folders holding some)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [n for n in RUN_FILES if (run_dir / n).exists()]
    for sub in sorted(run_dir.glob("split*")):
        if sub.is_dir() and any((sub / n).exists() for n in RUN_FILES):
            found.append(sub.name + "/")
    return found


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists as ``{"optim.lr": 3e-4, "loss.1.margin": 0.3, ...}`` (leaves only).

    Empty dicts/lists are leaves themselves, so ``{}`` vs ``{"a": 1}`` is a difference.
    """
    items: list[tuple[str, Any]]
    if isinstance(data, Mapping) and data:
        items = [(str(k), v) for k, v in data.items()]
    elif isinstance(data, (list, tuple)) and data:
        items = [(str(i), v) for i, v in enumerate(data)]
    else:
        return {prefix: data}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else k))
    return out


def _covered(key: str, names: Sequence[str]) -> bool:
    return any(key == n or key.startswith(n + ".") for n in names)


def config_changes(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old value, new value)}`` over the keys that differ (minus ignored ones).

    A key present on one side only shows ``"<absent>"`` on the other.
    """
    a, b = flatten(config_to_dict(old)), flatten(config_to_dict(new))
    out = {}
    for k in sorted(set(a) | set(b)):
        if _covered(k, IGNORED_KEYS):
            continue
        va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
        if va != vb:
            out[k] = (va, vb)
    return out


def effective_config_path(run_dir: str | Path) -> Path:
    """The config the run used last: the newest ``config.from_epoch_NNNN.yaml``, else
    ``config.yaml``."""
    run_dir = Path(run_dir)
    later = sorted(run_dir.glob(f"{_EFFECTIVE_PREFIX}*.yaml"))
    return later[-1] if later else run_dir / "config.yaml"


def _fmt_changes(changes: Mapping[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())


def check_run_folder(cfg: Config) -> dict[str, tuple[Any, Any]]:
    """Start-up checks on ``output_dir`` that write nothing (see the module docstring).

    Returns:
        the accepted config changes on resume (``{}`` for a fresh run or no change).

    Raises:
        RunDirError: the folder is locked by a live run, or holds a run and
            ``train.resume`` is false.
        ConfigError: on resume, the config differs in keys ``train.resume_overrides`` does
            not name, or names a key the config does not have.
    """
    run_dir = Path(cfg.output_dir)
    probe_lock(run_dir)
    held = run_contents(run_dir)
    if cfg.train.resume is False:
        if held:
            raise RunDirError(
                f"output_dir {run_dir} already holds a run ({', '.join(held)}); set "
                "train.resume=true to continue it, or choose another output_dir")
        if cfg.train.resume_overrides:
            raise ConfigError("train.resume_overrides is set but train.resume is false")
        return {}
    names = list(cfg.train.resume_overrides)
    keys = flatten(config_to_dict(cfg))
    unknown = [n for n in names if not any(_covered(k, [n]) for k in keys)]
    if unknown:
        raise ConfigError(f"train.resume_overrides names {unknown}, which are not config keys")
    saved = effective_config_path(run_dir)
    if not saved.is_file():
        if held:
            log.warning("resuming in %s, which has no config.yaml: the config cannot be compared",
                        run_dir)
        return {}
    try:
        old = load_config(saved, check=False)
    except ConfigError as e:
        raise ConfigError(f"cannot compare with the run's saved config: {e}") from None
    changes = config_changes(old, cfg)
    refused = {k: v for k, v in changes.items() if not _covered(k, names)}
    if refused:
        listed = "\n  ".join(f"{k}: {a!r} (run) -> {b!r} (now)" for k, (a, b) in refused.items())
        raise ConfigError(
            f"train.resume: the config differs from the one {run_dir} was run with "
            f"({saved.name}) in {len(refused)} key(s):\n  {listed}\nresume with the same "
            f"config, or name the changes to apply from the resumed epoch, e.g. "
            f"train.resume_overrides=[{', '.join(sorted(refused)[:3])}]")
    for n in names:
        if not any(_covered(k, [n]) for k in changes):
            log.warning("train.resume_overrides names %s, which is unchanged", n)
    return changes


def clean_stale_tmp(run_dir: str | Path) -> list[Path]:
    """Remove ``.<name>.<random>.tmp`` files left by killed writes (call under the lock).

    Looks in ``run_dir``, ``run_dir/checkpoints`` and the same under ``split<k>/``.
    """
    run_dir = Path(run_dir)
    folders = [run_dir, run_dir / "checkpoints"]
    for sub in sorted(run_dir.glob("split*")):
        folders += [sub, sub / "checkpoints"]
    removed = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.is_file() and TMP_PATTERN.match(p.name):
                p.unlink(missing_ok=True)
                removed.append(p)
    if removed:
        log.warning("removed %d stale temporary file(s) of an interrupted write: %s",
                    len(removed), ", ".join(str(p) for p in removed[:5]))
    return removed


# ------------------------------------------------------------------------------- resume


def apply_optimizer_overrides(optimizer: torch.optim.Optimizer,
                              fresh: Sequence[Mapping[str, Any]]) -> list[str]:
    """Put the hyper-parameters of freshly built param groups over restored ones.

    Args:
        optimizer: the optimiser after ``load_state_dict`` (hyper-parameters from the
            checkpoint).
        fresh: its param groups as built from the current config, without ``params``
            (captured before loading).

    Returns:
        ``"group.key: old -> new"`` for each value that changed.

    Raises:
        ConfigError: the number of param groups differs (``optim.param_groups`` changed in a
            way a resume cannot map).
    """
    groups = optimizer.param_groups
    if len(groups) != len(fresh):
        raise ConfigError(f"train.resume_overrides: the optimiser now has {len(fresh)} param "
                          f"group(s), the checkpoint {len(groups)}; such a change cannot resume")
    changed = []
    for g, f in zip(groups, fresh, strict=True):
        for k, v in f.items():
            if k in ("params", "lr"):  # lr is set from base_lr by the schedule every step
                continue
            if g.get(k) != v:
                changed.append(f"{g.get('name', '?')}.{k}: {g.get(k)!r} -> {v!r}")
                g[k] = v
    return changed


class ResumeNoteHook(HookBase):
    """Writes ``note`` into the ``resumed`` column of the first resumed epoch's log row."""

    def __init__(self, note: str, epoch: int) -> None:
        self.note = note
        self.epoch = int(epoch)

    def before_epoch(self) -> None:
        if self.trainer.epoch == self.epoch:
            self.trainer.epoch_log["resumed"] = self.note


# -------------------------------------------------------------------------- the folder


class RunFolder:
    """The lock and the start-up files of one run folder (a context manager).

    Args:
        cfg: the resolved config (``output_dir`` is the folder).
        changes: the accepted config changes from :func:`check_run_folder`.
    """

    def __init__(self, cfg: Config, changes: Mapping[str, tuple[Any, Any]] | None = None) -> None:
        self.cfg = cfg
        self.path = Path(cfg.output_dir)
        self.changes = dict(changes or {})
        self._fd: int | None = None

    # lock -------------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the exclusive lock (creating the folder); refuse if a live run holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_text(fd)
            os.close(fd)
            raise _in_use(self.path, holder) from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
            log.warning("cannot lock %s (%s): concurrent runs into it are not prevented",
                        self.path, e)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # files ------------------------------------------------------------------------

    def start(self, run_info: Mapping[str, Any]) -> None:
        """Lock, re-check occupancy under the lock, clean stale temporaries, write run files.

        Args:
            run_info: this start's environment record (``builders.write_run_info`` content).
        """
        self.acquire()
        try:
            resume = self.cfg.train.resume is not False
            held = run_contents(self.path)
            if not resume and held:  # another run got here between the check and the lock
                raise RunDirError(f"output_dir {self.path} already holds a run "
                                  f"({', '.join(held)}); set train.resume=true to continue it")
            clean_stale_tmp(self.path)
            info_path = self.path / "run_info.json"
            if resume and (self.path / "config.yaml").is_file():
                self._record_resume(info_path, run_info)
            else:
                atomic_write_text(self.path / "config.yaml", dump_yaml(self.cfg))
                atomic_write_json(info_path, dict(run_info))
        except BaseException:
            self.release()
            raise

    def _record_resume(self, info_path: Path, run_info: Mapping[str, Any]) -> None:
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            info = {}
        entry = dict(run_info)
        entry["changes"] = {k: [a, b] for k, (a, b) in self.changes.items()}
        entry["resumed_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        info.setdefault("resumes", []).append(entry)
        atomic_write_json(info_path, info)
        if self.changes:
            log.info("resume applies config changes: %s", _fmt_changes(self.changes))

    def note_resume(self, start_epoch: int, checkpoint: Path | str,
                    skipped: Sequence[tuple[Path, str]] = (),
                    optimizer_changes: Sequence[str] = ()) -> str:
        """Record where the resume started; write ``config.from_epoch_NNNN.yaml`` if the
        config changed. Returns the note for ``log.csv``."""
        if self.changes:
            name = f"{_EFFECTIVE_PREFIX}{start_epoch + 1:04d}.yaml"
            atomic_write_text(self.path / name, dump_yaml(self.cfg))
        info_path = self.path / "run_info.json"
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            info = {}
        resumes = info.setdefault("resumes", [{}])
        resumes[-1].setdefault("splits", []).append({
            "folder": str(Path(checkpoint).parent.parent),
            "checkpoint": str(checkpoint), "start_epoch": start_epoch + 1,
            "skipped": [[str(p), why] for p, why in skipped],
            "optimizer_changes": list(optimizer_changes)})
        atomic_write_json(info_path, info)
        parts = [f"from {Path(checkpoint).name}"]
        if self.changes:
            parts.append(_fmt_changes(self.changes))
        if skipped:
            parts.append("skipped damaged " + ", ".join(Path(p).name for p, _ in skipped))
        return "; ".join(parts)
