"""One rule for every upload, synchronous or job: it takes an admission slot before its body is read and
gives it back when the request ends; every file it made is deleted then, unless a job took them over."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Upload", "delete_files"]


@dataclass
class Upload:
    """A received upload: the audio on disk, the client's name for it, and the files the request owns."""

    audio_path: Path
    filename: str
    size_bytes: int
    release_slot: Callable[[], None]
    files: list[Path] = field(default_factory=list)
    """Every file made for this request (the audio, voice samples)."""
    _closed: bool = False

    def __post_init__(self) -> None:
        self.files.insert(0, self.audio_path)

    def close(self) -> None:
        """The request is over: free its slot and delete its files (once; later calls do nothing)."""
        if not self._closed:
            self._closed = True
            self.release_slot()
            delete_files(self.files)

    def hand_over(self) -> list[Path]:
        """The files now belong to a job (deleted when the job ends); the slot is freed."""
        self._closed = True
        self.release_slot()
        return self.files


def delete_files(files: list[Path]) -> None:
    for path in files:
        path.unlink(missing_ok=True)
