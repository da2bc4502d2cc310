"""The exceptions that mean "the user has to change something", and how they are told.

Every layer may raise a :class:`UserError` (or a subclass): a bad config value, a missing or
damaged file, a checkpoint that does not fit, a folder that is in use. The ``videoreid``
command prints such an error as one line on stderr and exits with code 2; ``--debug`` shows
the traceback. Anything else is a bug and keeps its traceback.

Subclasses also derive from the built-in type callers already catch (``ValueError``,
``OSError``), so code written against those keeps working.
"""

from __future__ import annotations

import errno

__all__ = ["UserError", "DatasetError", "CheckpointError", "RunDirError", "DiskFullError",
           "is_user_error"]


class UserError(Exception):
    """An error in what the user asked for or gave; the message says what and where."""


class DatasetError(UserError, ValueError):
    """A dataset folder does not match its layout (the message names the file/folder)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file is missing, damaged, foreign or does not fit the model."""


class RunDirError(UserError, RuntimeError):
    """The run folder is in use by another run, or holds a run this one must not mix with."""


class DiskFullError(UserError, OSError):
    """A write failed because the filesystem is full; the message names the path."""


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` should be reported to a person as one line (not as a traceback).

    True for :class:`UserError`, for missing/unreadable paths (``FileNotFoundError``,
    ``NotADirectoryError``, ``IsADirectoryError``, ``PermissionError`` with a file name) and for
    a full disk or exceeded quota.
    """
    if isinstance(exc, UserError):
        return True
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        return isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError,
                                PermissionError))
    return False
