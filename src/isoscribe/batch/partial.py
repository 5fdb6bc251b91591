"""A file's work kept while it runs: the transcript so far (``NAME.partial.txt``, for a person to read),
and its finished speech result (for the next run, when a stop comes before the outputs)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from isoscribe.files import write_atomic
from isoscribe.logs import log_event
from isoscribe.transcript import Segment, Transcript

__all__ = ["SPEECH_DONE_DIR", "PartialTranscript", "SpeechDone", "speech_done_path", "tidy_speech_done"]

log = logging.getLogger("isoscribe.batch")

SPEECH_DONE_DIR = ".speech-done"
"""Transcripts whose speech stage finished but whose file did not: a stopped run's next run goes on from them."""


class PartialTranscript:
    """``NAME.partial.txt``: the transcript so far, one line per segment as the speech stage produces it.

    Removed once the file's outputs are final; a crash or a kill leaves it for a person to read, and the
    next run replaces it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._started = False

    def append(self, segment: Segment) -> None:
        if not self._started:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("", encoding="utf-8")
            self._started = True
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(f"[{_clock(segment.start)} → {_clock(segment.end)}] {segment.text.strip()}\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def speech_done_path(out_dir: Path, key: str) -> Path:
    """Where the file of ledger key ``key`` keeps its transcript between the speech stage and its outputs."""
    return out_dir / SPEECH_DONE_DIR / f"{key.replace(':', '-')}.json"


class SpeechDone:
    """A file's transcript once its speech stage is done, kept until its outputs are: a stop between the
    two loses no decoding (the next run goes on from here)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, transcript: Transcript) -> None:
        write_atomic(self.path, json.dumps(transcript.to_dict()))

    def load(self) -> Transcript | None:
        try:
            return Transcript.from_dict(json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:  # half-written by an older version or damaged
            log_event(log, "speech_done_unreadable", logging.WARNING, path=self.path, error=exc)
            return None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(seconds, 60)
    return f"{int(minutes):02d}:{seconds:05.2f}"


def tidy_speech_done(out_dir: Path) -> None:
    """Remove the folder of kept speech results once it holds none (only while no file runs)."""
    try:
        (out_dir / SPEECH_DONE_DIR).rmdir()
    except OSError:  # absent, or a stopped file's result is still kept there
        pass
