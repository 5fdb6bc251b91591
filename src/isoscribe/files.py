"""File writes that readers never see half done."""

from __future__ import annotations

import codecs
import os
import tempfile
from pathlib import Path

__all__ = ["cut_utf8", "read_text", "write_atomic"]

_TEMP_PREFIX_NAME_BYTES = 100
"""How much of the target's name its temp file keeps: with the dots, mkstemp's 8 random characters and
``.tmp`` the temp name stays under the file system's 255 bytes."""


def cut_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, never in the middle of a character."""
    return text.encode()[:max_bytes].decode(errors="ignore")


def read_text(path: Path) -> str:
    """A text file a person wrote: UTF-8, or UTF-16 with its byte-order mark (Notepad's "Unicode"); a UTF-8
    byte-order mark is no part of its first line. ValueError naming the first bad byte for other bytes."""
    data = Path(path).read_bytes()
    encoding = "utf-16" if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        name = encoding.upper().removesuffix("-SIG")
        raise ValueError(f"{path} is not {name} text (byte {exc.start}: {data[exc.start : exc.start + 1]!r})") from None


def _mode_under_umask() -> int:
    """0666 less the process umask, read without changing it (os.umask would, for every thread)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    return 0o644


def write_atomic(path: Path | str, data: str | bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``: over a link's target, and
    straight into what is no regular file (a FIFO, ``/dev/stdout``), which a rename would replace."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if path.exists() and not path.is_file():
        with open(path, "wb") as stream:
            stream.write(payload)
        return
    path = path.resolve() if path.is_symlink() else path
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{cut_utf8(path.name, _TEMP_PREFIX_NAME_BYTES)}."
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _mode_under_umask())  # mkstemp makes 0600; outputs are read like any file the user writes
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
