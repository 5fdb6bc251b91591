"""The output directory: one run at a time, what a killed run left half written, the run's log file."""

from __future__ import annotations

import errno
import fcntl
import logging
import shutil
import sqlite3
from pathlib import Path

__all__ = [
    "PARTIAL_PREFIX", "LOCK_NAME", "OutDirBusy", "OutDirFull", "disk_full", "locked", "remove_partials", "log_file_attached",
]

PARTIAL_PREFIX = ".partial-"
"""Folders where earlier versions wrote a file's outputs before renaming them into place."""

LOCK_NAME = ".isoscribe-run.lock"


class OutDirBusy(RuntimeError):
    """Another ``isoscribe run`` holds the output directory."""


class OutDirFull(RuntimeError):
    """The output directory's file system has no space left: no file's fault, so the batch stops and the
    file being written stays queued for the next run."""


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that found no space left (or the user's quota spent), by the file system or SQLite."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc)


class locked:
    """The output directory for one run at a time: a second run would remove the first one's
    unfinished outputs and queue its running files again."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_NAME

    def __enter__(self) -> None:
        self._handle = self.path.open("a")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise OutDirBusy(f"{self.path.parent} is in use by another isoscribe run; wait for it or use another --out") from None

    def __exit__(self, *exc: object) -> None:
        self._handle.close()  # closing drops the lock; the file stays (removing it would race a waiting run)


def remove_partials(out_dir: Path) -> None:
    """What a killed run was writing: ``write_atomic``'s temp files beside the outputs, and the private
    folders older versions wrote outputs into. Neither was ever a finished output."""
    for partial in out_dir.glob(f"{PARTIAL_PREFIX}*"):
        shutil.rmtree(partial, ignore_errors=True)
    for temporary in out_dir.glob("*/.*.tmp"):
        temporary.unlink(missing_ok=True)


class log_file_attached:
    """The batch's events also go to ``log_file`` (None: nowhere else) while the run lasts."""

    def __init__(self, log_file: Path | None) -> None:
        self.log_file = log_file
        self._handler: logging.Handler | None = None

    def __enter__(self) -> None:
        self._handler = _attach_log_file(self.log_file)

    def __exit__(self, *exc: object) -> None:
        _detach_log_file(self._handler)


def _attach_log_file(log_file: Path | None) -> logging.Handler | None:
    if log_file is None:
        return None
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("isoscribe")
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        # The file gets the batch's events even when the console shows only warnings.
        handler.previous_level = logger.level
        logger.setLevel(logging.INFO)
    return handler


def _detach_log_file(handler: logging.Handler | None) -> None:
    if handler is None:
        return
    logger = logging.getLogger("isoscribe")
    logger.removeHandler(handler)
    if hasattr(handler, "previous_level"):
        logger.setLevel(handler.previous_level)
    handler.close()

