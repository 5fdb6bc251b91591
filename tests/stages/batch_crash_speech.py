"""Test double for the isolation path: the real speech stage, which segfaults for some file names.

The batch tests point ``isolation.speech_stage`` here; a file whose name contains ``crash-asr``
kills its worker with SIGSEGV every time (as native decoder code could), any other file goes to the
real stage. Tests only.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from isoscribe.stages import speech
from isoscribe.transcript import SpeechRequest, Transcript

__all__ = ["CRASH_MARKER", "load", "run"]

CRASH_MARKER = "crash-asr"


def load(settings):
    return speech.load(settings)


def run(model, request: SpeechRequest) -> Transcript:
    if CRASH_MARKER in Path(request.audio_path).name:
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    return speech.run(model, request)
