"""The output directory: one run at a time, outputs put in place whole, the run's log file."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

__all__ = ["PARTIAL_PREFIX", "LOCK_NAME", "OutDirBusy", "locked", "place_outputs", "remove_partials", "log_file_attached"]

PARTIAL_PREFIX = ".partial-"
"""Folders where a file's outputs are written before they are renamed into place."""

LOCK_NAME = ".isoscribe-run.lock"


class OutDirBusy(RuntimeError):
    """Another ``isoscribe run`` holds the output directory."""


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


def place_outputs(out_dir: Path, name: str, write: Callable[[Path], list[Path]]) -> list[str]:
    """``write`` fills a private folder; each file is then renamed into ``out_dir/name``, so a reader
    (or a killed run's successor) never finds half an output. Returns paths relative to ``out_dir``."""
    final_dir = out_dir / name
    partial = out_dir / f"{PARTIAL_PREFIX}{name}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        written = write(partial)
        final_dir.mkdir(parents=True, exist_ok=True)
        outputs = []
        for path in written:
            os.replace(path, final_dir / path.name)
            outputs.append(str((final_dir / path.name).relative_to(out_dir)))
        _fsync_dir(final_dir)
        return outputs
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def remove_partials(out_dir: Path) -> None:
    """Folders a killed run was writing into; the outputs in them were never renamed into place."""
    for partial in out_dir.glob(f"{PARTIAL_PREFIX}*"):
        shutil.rmtree(partial, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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

