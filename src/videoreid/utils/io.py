"""Atomic file writes: write to a temporary file in the same folder, then rename.

Temporaries are named ``.<name>.<random>.tmp`` (:data:`TMP_PATTERN`); a process killed
mid-write leaves one behind, which run folders remove at the next start
(``videoreid.engine.run_dir``). Files get the permissions of a plain ``open()`` (``0666``
less the umask, normally ``0644``), not ``mkstemp``'s private ``0600``. A full filesystem is
reported as :class:`~videoreid.utils.errors.DiskFullError` naming the file.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from videoreid.utils.errors import DiskFullError

TMP_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def disk_full_error(path: str | os.PathLike[str], cause: OSError) -> DiskFullError:
    """A :class:`DiskFullError` naming ``path`` and the free space left where it lives."""
    try:
        st = os.statvfs(Path(path).parent)
        free = f"; {st.f_bavail * st.f_frsize} bytes free there"
    except OSError:
        free = ""
    err = DiskFullError(f"no space left on device while writing {path} ({cause.strerror}{free}); "
                        "any previous version of the file is intact — free space and rerun")
    err.errno = cause.errno
    return err


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    A crash or exception leaves any previous ``path`` untouched and removes the temporary.

    Raises:
        DiskFullError: the filesystem is full (or the quota exceeded), naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT) and not isinstance(e, DiskFullError):
            raise disk_full_error(path, e) from e
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_save(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` (e.g. ``torch.save`` / ``np.savez``) then rename atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
