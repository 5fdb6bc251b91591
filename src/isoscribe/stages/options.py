"""What one decode is asked for: ``TranscriptionOptions``, as faster-whisper keeps its own.

Frozen; a variant (a stretch decoded again on its own, a loop decoded again) is ``options.replace(...)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from isoscribe.config import AsrSettings
from isoscribe.transcript import SpeechRequest

__all__ = ["TranscriptionOptions", "transcription_options"]


@dataclass(frozen=True)
class TranscriptionOptions:
    language: str | None
    """None: detected by faster-whisper."""
    task: str
    beam_size: int
    temperatures: tuple[float, ...]
    """The fallback temperatures, tried in turn while a decode fails faster-whisper's checks."""
    initial_prompt: str | None
    vad_filter: bool
    """Decode only the speech the VAD finds (``vad.Speech.decoder_chunks``)."""
    word_timestamps: bool
    hallucination_silence_threshold: float | None
    condition_on_previous_text: bool = True
    hotwords: str | None = None
    no_speech_threshold: float | None = 0.6
    """faster-whisper's own defaults (these three): a caller that names none decodes as before."""
    prefix: str | None = None
    """The first window's text begins with these words."""
    max_new_tokens: int | None = None
    """Tokens a window may decode; None: the model's limit (448 with the prompt)."""

    def replace(self, **changes: Any) -> TranscriptionOptions:
        return dataclasses.replace(self, **changes)

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``WhisperModel.transcribe`` (``vad_filter`` there is faster-whisper's own VAD)."""
        return {
            "language": self.language,
            "task": self.task,
            "beam_size": self.beam_size,
            "temperature": list(self.temperatures),
            "initial_prompt": self.initial_prompt,
            "vad_filter": self.vad_filter,
            "word_timestamps": self.word_timestamps,
            "hallucination_silence_threshold": self.hallucination_silence_threshold,
            "condition_on_previous_text": self.condition_on_previous_text,
            "hotwords": self.hotwords,
            "no_speech_threshold": self.no_speech_threshold,
            "prefix": self.prefix,
            "max_new_tokens": self.max_new_tokens,
        }


def transcription_options(asr: AsrSettings, request: SpeechRequest, english_only: bool = False) -> TranscriptionOptions:
    """The options of ``request`` under ``asr`` (what the request leaves unset is the setting's); the
    benchmarks' direct faster-whisper calls use the same.

    Words are aligned when diarizing even if ``word_timestamps`` is off: speakers are assigned word by
    word, and a segment two people share is split at the change. ``hallucination_silence_threshold``
    needs word timestamps (faster-whisper ignores it without)."""
    language = request.language or asr.language
    if english_only:
        if request.task == "translate":
            raise ValueError(f"model {asr.model} is English-only: it cannot translate (use a multilingual model)")
        language = "en"
    temperatures = request.temperatures if request.temperatures is not None else tuple(asr.temperatures)
    word_timestamps = _chosen(request.word_timestamps, asr.word_timestamps) or request.diarize
    return TranscriptionOptions(
        language=language,
        task=request.task,
        beam_size=_chosen(request.beam_size, asr.beam_size),
        temperatures=tuple(temperatures),
        initial_prompt=request.initial_prompt or asr.initial_prompt,
        vad_filter=_chosen(request.vad_filter, asr.vad_filter),
        word_timestamps=word_timestamps,
        hallucination_silence_threshold=(asr.hallucination_silence_threshold_s or None) if word_timestamps else None,
        condition_on_previous_text=_chosen(request.condition_on_previous_text, asr.condition_on_previous_text),
        hotwords=request.hotwords or asr.hotwords,
        no_speech_threshold=_chosen(request.no_speech_threshold, asr.no_speech_threshold),
        prefix=request.prefix or None,
    )


def _chosen(asked: Any, configured: Any) -> Any:
    return configured if asked is None else asked
