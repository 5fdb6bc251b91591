"""Input discovery for batch runs: files, directories (recursive), globs and manifests.

A manifest is named ``@path`` on the command line: one audio path per line, blank lines and lines
starting with ``#`` ignored, relative paths taken from the manifest's folder.
"""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path

from isoscribe.files import read_text
from isoscribe.logs import log_event
from isoscribe.transcript import UNNAMED_SPEAKER_LABEL

__all__ = ["AUDIO_EXTENSIONS", "InputError", "discover_inputs"]

logger = logging.getLogger("isoscribe.batch")

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".mp3", ".m4a", ".mp4", ".ogg", ".opus", ".webm", ".aac", ".wma", ".aiff", ".aif", ".mkv"}
)

_GLOB_CHARS = set("*?[")


class InputError(ValueError):
    """An input names nothing that exists; the message names the input."""


def discover_inputs(specs: list[str | Path]) -> list[Path]:
    """Resolve every spec to audio files, in the given order, each file once.

    Files named directly are taken whatever their extension (the audio stage judges them);
    files found in directories or by globs are kept only with an audio extension.
    """
    found: dict[Path, Path] = {}
    for spec in specs:
        for path in _expand(str(spec)):
            resolved = path.resolve()
            if resolved in found:
                log_event(logger, "input_listed_twice", logging.WARNING, file=path, runs_as=found[resolved])
                continue
            found[resolved] = Path(os.path.abspath(path))  # a link keeps its own name (git-annex, DVC)
    return list(found.values())


def _expand(spec: str) -> list[Path]:
    if spec.startswith("@"):
        return _from_manifest(Path(spec[1:]))
    if _GLOB_CHARS & set(spec) and not Path(spec).expanduser().exists():  # "Talk [2024].wav" is a name
        matches = sorted(Path(match) for match in glob.glob(os.path.expanduser(spec), recursive=True))
        files = [path for path in matches if path.is_file() and _is_audio(path)]
        files += [audio for path in matches if path.is_dir() for audio in _audio_under(path)]
        if not files:
            raise InputError(f"no audio files match {spec!r}")
        return files
    path = Path(spec).expanduser()
    if path.is_dir():
        files = _audio_under(path)
        if not files:
            raise InputError(f"no audio files under {spec}")
        return files
    if path.is_file():
        return [path]
    raise InputError(f"input not found: {spec}")


def _from_manifest(manifest: Path) -> list[Path]:
    if not manifest.is_file():
        raise InputError(f"manifest not found: {manifest}")
    try:
        text = read_text(manifest)
    except ValueError as exc:
        raise InputError(f"manifest {exc}") from None
    paths = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry).expanduser()
        path = path if path.is_absolute() else manifest.parent / path
        if not path.is_file():
            raise InputError(f"{manifest}:{number}: file not found: {entry}")
        paths.append(path)
    if not paths:
        raise InputError(f"no audio files listed in {manifest}")
    return paths


def _audio_under(folder: Path) -> list[Path]:
    """Audio files anywhere under ``folder``, through linked folders too (each real folder once: a link back
    up the tree is no loop)."""
    found, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        found += [path for path in (Path(root) / name for name in files) if path.is_file() and _is_audio(path)]
    return sorted(found)


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def voice_samples(folder: Path) -> list[Path]:
    """The audio files of a known speakers' folder, each naming a person by its stem; ValueError for a folder
    that is none, two samples of one name, or a name diarization gives to unnamed speakers (``SPEAKER_00``)."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    files = sorted(path for path in folder.iterdir() if path.is_file() and _is_audio(path))
    names = [path.stem for path in files]
    if twice := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"{folder}: more than one voice sample named {', '.join(twice)}")
    if unnamed := [name for name in names if UNNAMED_SPEAKER_LABEL.fullmatch(name)]:
        raise ValueError(f"{folder}: {', '.join(unnamed)} cannot name a speaker (the labels of unnamed ones)")
    if blank := [path.name for path in files if not path.stem.strip() or not path.stem.isprintable()]:
        raise ValueError(f"{folder}: {', '.join(map(repr, blank))} cannot name a speaker (blank, or a control character)")
    if not files:
        raise ValueError(f"{folder} holds no voice sample ({', '.join(sorted(AUDIO_EXTENSIONS))} files named after their speaker)")
    return files
