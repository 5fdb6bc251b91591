"""How requests and results cross the process boundary: pickle, with large arrays out of band.

A numpy array of ``LARGE_ARRAY_BYTES`` or more is written to a file in ``/dev/shm`` (memory, not
disk) and only its name, dtype and shape go through the pipe; the reader maps it (no copy) and
unlinks the name at once. Every file is named ``isoscribe-<owner pid>-<pool token>-…`` so
that whoever owns the pool can sweep what a crash left behind (``remove_segments``).
"""

from __future__ import annotations

import glob
import io
import itertools
import mmap
import os
import pickle
import re
import shutil
import sys
import tempfile
from typing import Any

__all__ = [
    "LARGE_ARRAY_BYTES",
    "SEGMENT_PREFIX",
    "dumps",
    "loads",
    "remove_segments",
    "segment_dir",
    "sweep_stale",
    "unlink_segments",
]

LARGE_ARRAY_BYTES = 1 << 20
SEGMENT_PREFIX = "isoscribe-"
_counter = itertools.count()
_OWNED_NAME = re.compile(rf"^{SEGMENT_PREFIX}(\d+)-[0-9a-f]{{8}}-")


def segment_dir() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def dumps(obj: Any, segment_prefix: str) -> tuple[bytes, list[str]]:
    """Pickle ``obj``; returns the bytes and the paths of the segments written for its large arrays."""
    buffer = io.BytesIO()
    pickler = _SegmentPickler(buffer, segment_prefix)
    try:
        pickler.dump(obj)
    except BaseException:
        unlink_segments(pickler.segments)
        raise
    return buffer.getvalue(), pickler.segments


def loads(data: bytes) -> Any:
    """Unpickle; large arrays are read back from their segments, which are unlinked."""
    return pickle.loads(data)


def discard(data: bytes) -> None:
    """Free what ``data`` holds without keeping it: its large arrays' segments are read and unlinked."""
    try:
        loads(data)
    except Exception:
        pass


def remove_segments(segment_prefix: str) -> int:
    """Unlink every segment whose name starts with ``segment_prefix``; returns how many."""
    paths = glob.glob(os.path.join(segment_dir(), glob.escape(segment_prefix) + "*"))
    unlink_segments(paths)
    return len(paths)


def sweep_stale() -> int:
    """Remove segments and temp dirs of pools whose owning process is dead (it was SIGKILLed).

    Names carry the owner's pid (``isoscribe-<pid>-<token>-…``); a live owner's files are left alone.
    """
    removed = 0
    for folder in {segment_dir(), tempfile.gettempdir()}:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            match = _OWNED_NAME.match(name)
            if match is None or _alive(int(match.group(1))):
                continue
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    unlink_segments([path])
                except PermissionError:  # another user's, in a shared sticky folder: theirs to remove
                    continue
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _SegmentPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, segment_prefix: str) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.segment_prefix = segment_prefix
        self.segments: list[str] = []

    def reducer_override(self, obj: Any) -> Any:
        numpy = sys.modules.get("numpy")
        if numpy is None or type(obj) is not numpy.ndarray:
            return NotImplemented
        if obj.nbytes < LARGE_ARRAY_BYTES or obj.dtype.hasobject:
            return NotImplemented
        path = _write_segment(obj, f"{self.segment_prefix}{os.getpid()}-{next(_counter)}")
        self.segments.append(path)
        return _read_segment, (path, obj.dtype, obj.shape)


def _write_segment(array: Any, name: str) -> str:
    import numpy

    path = os.path.join(segment_dir(), name)
    data = memoryview(_as_bytes(numpy.ascontiguousarray(array)))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
    except BaseException:
        os.close(fd)
        unlink_segments([path])
        raise
    os.close(fd)
    return path


def _read_segment(path: str, dtype: Any, shape: tuple[int, ...]) -> Any:
    """Map the segment and unlink its name at once: the array is a zero-copy view of the mapping,
    whose memory goes back to the OS when the array is freed; nothing stays behind in /dev/shm."""
    import numpy

    try:
        fd = os.open(path, os.O_RDWR)
    except BaseException:
        unlink_segments([path])
        raise
    try:
        size = os.fstat(fd).st_size
        expected = int(numpy.prod(shape, dtype=numpy.int64)) * numpy.dtype(dtype).itemsize
        if size != expected:
            raise EOFError(f"shared-memory segment {path} holds {size} bytes, expected {expected}")
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        mapping = mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
        unlink_segments([path])
    return numpy.frombuffer(mapping, dtype=dtype).reshape(shape)


def _as_bytes(array: Any) -> Any:
    """A flat uint8 view of a C-contiguous array (memoryview.cast refuses complex and record dtypes)."""
    import numpy

    return array.reshape(-1).view(numpy.uint8)


def unlink_segments(paths: list[str]) -> None:
    """Unlink segments by path; ones already consumed (and so unlinked) by the reader are skipped."""
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
