"""Test double for the decoding-option tests: the real speech stage, with faster-whisper watched.

Each call of ``WhisperModel.transcribe`` appends one JSON line to the file ``DECODING_SPY_FILE`` names (the
worker inherits it): the keyword arguments it got and how many samples of audio, then the real model
decodes. The tests point ``isolation.speech_stage`` here (the worker imports it by module name from
PYTHONPATH). Tests only; the product default stays the real stage.
"""

from __future__ import annotations

import json
import os

from isoscribe.config import Settings
from isoscribe.stages import speech

__all__ = ["load", "run"]

run = speech.run


def load(settings: Settings) -> speech.SpeechModels:
    models = speech.load(settings)
    whisper = models.transcriber.whisper
    transcribe = whisper.transcribe

    def watched(audio, **kwargs):
        with open(os.environ["DECODING_SPY_FILE"], "a", encoding="utf-8") as record:
            record.write(json.dumps({"samples": int(audio.shape[0]), **kwargs}) + "\n")
        return transcribe(audio, **kwargs)

    whisper.transcribe = watched
    return models
