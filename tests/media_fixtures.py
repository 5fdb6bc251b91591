"""Untrusted media for the tests: files that lie, are cut short, or are not audio at all (made with ffmpeg)."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

_MATROSKA_DURATION = b"\x44\x89\x88"
"""EBML id of Segment Info's Duration, with an 8-byte float size."""


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def lying_webm(path: Path, seconds: float, claimed_s: float) -> Path:
    """A real ``seconds``-long Opus WebM whose header says ``claimed_s`` (timecode scale 1 ms)."""
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "libopus", str(path))
    data = path.read_bytes()
    at = data.index(_MATROSKA_DURATION) + len(_MATROSKA_DURATION)
    path.write_bytes(data[:at] + struct.pack(">d", claimed_s * 1000.0) + data[at + 8 :])
    return path


def truncated_m4a(source: Path, path: Path) -> Path:
    """An AAC .m4a cut in half: its index (the moov atom) is at the end, so nothing can be read."""
    ffmpeg("-i", str(source), "-c:a", "aac", str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def video_without_audio(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "testsrc=duration=2:size=64x64:rate=5", "-c:v", "mpeg4", str(path))
    return path


def random_bytes(path: Path, size: int = 64_000) -> Path:
    import numpy as np

    path.write_bytes(np.random.default_rng(7).bytes(size))
    return path
