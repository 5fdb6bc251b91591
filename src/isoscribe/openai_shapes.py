"""Transcripts in OpenAI's response shapes, built on the ``openai`` package's own types.

json → ``Transcription``; verbose_json → ``TranscriptionVerbose`` with segments and/or words as
``timestamp_granularities`` asks; diarized_json → ``TranscriptionDiarized``. Speakers carry the one label
scheme of every format: the name when known (a known speaker, or renamed), else ``SPEAKER_00``,
``SPEAKER_01`` … in order of first appearance. The same labels (isoscribe's diarization extension) ride
along as an extra ``speaker`` field on segments and words in verbose_json, which also carries ``task``
and ``usage``. The text formats and the registry of all formats are in ``isoscribe.formats``.

Log-probabilities (``include[]=logprobs``) are per word, not per token: the natural log of
faster-whisper's word probability, which is the mean of the probabilities of the word's tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

from openai.types.audio import (
    Transcription,
    TranscriptionDiarized,
    TranscriptionDiarizedSegment,
    TranscriptionSegment,
    TranscriptionVerbose,
    TranscriptionWord,
)
from openai.types.audio.transcription_text_delta_event import Logprob

from isoscribe.languages import LANGUAGE_NAMES
from isoscribe.transcript import Segment, Transcript, Word

__all__ = [
    "SHAPES",
    "Granularity",
    "transcription_json",
    "verbose_json",
    "diarized_json",
    "speaker_labels",
    "diarized_segment",
    "logprobs",
    "usage",
    "language_name",
]

Granularity = Literal["word", "segment"]
UNKNOWN_SPEAKER = "UNKNOWN"
"""diarized_json's label for a segment no speaker turn covers (RTTM's word for it too)."""


def transcription_json(transcript: Transcript, with_logprobs: bool = False) -> dict[str, Any]:
    body = Transcription(text=transcript.text, usage=usage(transcript)).model_dump(exclude_none=True)
    if with_logprobs:
        # Not through Transcription, whose Logprob types the bytes as floats: they go out as integers (32, not
        # 32.0), as OpenAI and this server's stream send them.
        body["logprobs"] = [p.model_dump() for p in logprobs(transcript.segments)]
    return body


def verbose_json(
    transcript: Transcript, granularities: list[str] | tuple[str, ...] = (), task: str = "transcribe"
) -> dict[str, Any]:
    """OpenAI includes segments by default and words only when asked for. Speakers carry the labels
    diarized_json uses (``speaker_labels``); a translation's language is the English it is in."""
    want_words = "word" in granularities
    want_segments = "segment" in granularities or not want_words
    labels = speaker_labels(transcript)
    verbose = TranscriptionVerbose(
        duration=transcript.duration_s,
        language="english" if task == "translate" else language_name(transcript.language),
        text=transcript.text,
        segments=[_segment(s, labels) for s in transcript.segments] if want_segments else None,
        words=[_word(w, labels) for s in transcript.segments for w in s.words] if want_words else None,
        usage=usage(transcript),
    )
    return {"task": task, **verbose.model_dump(exclude_none=True)}


def diarized_json(transcript: Transcript) -> dict[str, Any]:
    labels = speaker_labels(transcript)
    diarized = TranscriptionDiarized(
        task="transcribe",
        duration=transcript.duration_s,
        text=transcript.text,
        segments=[diarized_segment(s, labels) for s in transcript.segments],
        usage=usage(transcript),
    )
    return diarized.model_dump(exclude_none=True)


def diarized_segment(segment: Segment, labels: dict[str, str]) -> TranscriptionDiarizedSegment:
    return TranscriptionDiarizedSegment(
        id=f"seg_{segment.id}",
        start=segment.start,
        end=segment.end,
        speaker=labels.get(segment.speaker or "", UNKNOWN_SPEAKER),
        text=segment.text,
        type="transcript.text.segment",
    )


def speaker_labels(transcript: Transcript) -> dict[str, str]:
    """Each speaker's label in the API: the one scheme of every format, so the label a client reads is
    the one it renames (PATCH /v1/jobs/{id}/speakers) and the one the files show (issue 23 dropped
    OpenAI-style letters A, B …)."""
    return {speaker: speaker for speaker in transcript.speakers}


def logprobs(segments: list[Segment]) -> list[Logprob]:
    return [_logprob(word) for segment in segments for word in segment.words]


def _logprob(word: Word) -> Logprob:
    logprob = math.log(max(word.probability, 1e-12))
    return Logprob(token=word.text, bytes=list(word.text.encode("utf-8")), logprob=logprob)


def usage(transcript: Transcript) -> dict[str, Any]:
    """Billed by audio duration, as OpenAI's whisper-1 reports it."""
    return {"type": "duration", "seconds": transcript.duration_s}


def language_name(code: str) -> str:
    """OpenAI reports the language by name ("english"); unknown codes pass through."""
    return LANGUAGE_NAMES.get(code, code)


def _segment(segment: Segment, labels: dict[str, str]) -> TranscriptionSegment:
    extra: dict[str, Any] = {"speaker": labels.get(segment.speaker, segment.speaker)} if segment.speaker else {}
    if segment.language:
        extra["language"] = language_name(segment.language)
    return TranscriptionSegment(
        id=segment.id,
        seek=int(segment.start * 100),
        start=segment.start,
        end=segment.end,
        text=f" {segment.text.strip()}",  # Whisper's leading space, as OpenAI sends it: the segments join into the text
        tokens=[],
        temperature=segment.temperature,
        avg_logprob=segment.avg_logprob,
        compression_ratio=segment.compression_ratio,
        no_speech_prob=segment.no_speech_prob,
        **extra,
    )


def _word(word: Word, labels: dict[str, str]) -> TranscriptionWord:
    extra = {"speaker": labels.get(word.speaker, word.speaker)} if word.speaker else {}
    return TranscriptionWord(word=word.text, start=word.start, end=word.end, **extra)




SHAPES: dict[str, Callable[[Transcript, Any], dict[str, Any]]] = {
    "json": lambda transcript, context: transcription_json(transcript, context.logprobs),
    "verbose_json": lambda transcript, context: verbose_json(transcript, context.granularities, context.task),
    "diarized_json": lambda transcript, context: diarized_json(transcript),
}
"""The JSON shapes by response format, over ``formats.RenderContext``; the registry is ``isoscribe.formats``."""
