"""The speech stage the isolation runtime hosts: decode → transcribe with word timestamps → diarize.

One worker holds the Whisper model and, once a request asks for diarization, the speaker encoder.
The VAD runs once per file (once per piece when the request is for one piece): its speech regions
go to transcription (decoder chunks, language cuts, skipped speech) and to diarization, which embeds
that speech. The result is a Transcript whose
``speaker_turns`` the parent assigns to words and segments
(``isoscribe.speakers``); nothing here touches speaker labels on words.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from isoscribe.audio import SAMPLE_RATE, decode_audio
from isoscribe.config import Settings
from isoscribe.pipeline.events import Event, Progress, SegmentReady
from isoscribe.pipeline.pieces import piece_cuts, piece_range
from isoscribe.stages import diarize as diarize_stage
from isoscribe.stages import transcribe as transcribe_stage
from isoscribe.stages import vad
from isoscribe.transcript import PieceResult, Segment, SpeakerClusterRequest, SpeakerTurn, SpeechRequest, Transcript

__all__ = ["SpeechModels", "load", "run", "speech_regions"]

_REGION_GAP_S = 0.5
"""Words closer than this belong to one speech region for diarization."""
_REGION_PAD_S = 0.1


@dataclass
class SpeechModels:
    settings: Settings
    transcriber: transcribe_stage.Transcriber
    diarizer: diarize_stage.Diarizer | None = None
    piece_audio: tuple[tuple, np.ndarray] | None = None
    """The file whose pieces this worker is transcribing, decoded once for all of them (an hour: 5 s)."""

    def get_diarizer(self) -> diarize_stage.Diarizer:
        if self.diarizer is None:
            self.diarizer = diarize_stage.load(self.settings)
        return self.diarizer


def load(settings: Settings) -> SpeechModels:
    models = SpeechModels(settings, transcribe_stage.load(settings))
    if settings.diarization.enabled:
        models.get_diarizer()
    return models


def run(
    model: SpeechModels, request: SpeechRequest | SpeakerClusterRequest, emit: Callable[[Event], None] | None = None
) -> Transcript | PieceResult | list[SpeakerTurn]:
    """``emit`` gets each segment as it is transcribed (``SegmentReady``) and ``Progress`` in audio seconds.

    A request for one piece of a file returns a ``PieceResult``; the pieces' speaker vectors come back
    as a ``SpeakerClusterRequest``, whose answer is the whole file's speaker turns.
    """
    if isinstance(request, SpeakerClusterRequest):
        model.piece_audio = None
        return diarize_stage.cluster_pieces(model.get_diarizer(), request)
    emit = emit or _ignore
    if request.piece is not None:
        return _run_piece(model, _piece_audio(model, request), request, emit)
    model.piece_audio = None
    started = time.perf_counter()
    audio = decode_audio(request.audio_path, max_duration_s=request.max_duration_s)
    decoded = time.perf_counter()
    duration_s = audio.size / SAMPLE_RATE

    def on_segment(segment: Segment) -> None:
        emit(SegmentReady(segment))
        emit(Progress("speech", min(segment.end, duration_s), duration_s))

    speech = vad.detect(audio, transcribe_stage.vad_cuts(audio, request))
    transcript = transcribe_stage.transcribe(model.transcriber, audio, request, on_segment, speech)
    emit(Progress("speech", duration_s, duration_s))
    timings = {"decode": decoded - started, **transcript.timings_s}
    if request.diarize:
        diarize_started = time.perf_counter()
        emit(Progress("diarize", 0.0, duration_s))
        regions = speech.seconds or speech_regions(transcript, duration_s)
        if regions:
            transcript.speaker_turns = diarize_stage.diarize(model.get_diarizer(), audio, regions, request)
        transcript.speakers = list(dict.fromkeys(turn.speaker for turn in transcript.speaker_turns))
        emit(Progress("diarize", duration_s, duration_s))
        timings["diarize"] = time.perf_counter() - diarize_started
    timings["total"] = time.perf_counter() - started
    transcript.timings_s = timings
    return transcript


def _piece_audio(model: SpeechModels, request: SpeechRequest) -> np.ndarray:
    stat = os.stat(request.audio_path)
    key = (request.audio_path, request.max_duration_s, stat.st_size, stat.st_mtime_ns)
    if model.piece_audio is None or model.piece_audio[0] != key:
        model.piece_audio = None  # the previous file's audio goes before the next is decoded
        model.piece_audio = (key, decode_audio(request.audio_path, max_duration_s=request.max_duration_s))
    return model.piece_audio[1]


def _run_piece(
    model: SpeechModels, audio: np.ndarray, request: SpeechRequest, emit: Callable[[Event], None]
) -> PieceResult:
    """One piece: its segments kept inside the piece, and its speaker vectors (not yet clustered).

    Windows are embedded from the whole file's audio, so the volume normalisation is the file's, as
    when one worker diarizes everything."""
    start, end = piece_range(piece_cuts(audio, request.piece_s), request.piece.index, request.piece.count)
    start_s, end_s = start / SAMPLE_RATE, end / SAMPLE_RATE
    speech = vad.detect(audio, [start, end])
    transcript = transcribe_stage.transcribe(model.transcriber, audio, request, lambda s: emit(SegmentReady(s)), speech)
    for segment in transcript.segments:
        segment.start, segment.end = min(max(segment.start, start_s), end_s), min(max(segment.end, start_s), end_s)
        segment.end = max(segment.end, segment.start)
        transcribe_stage.clamp_words(segment.words, segment.start, segment.end)
    vectors = None
    if request.diarize:
        vectors = diarize_stage.speaker_vectors(model.get_diarizer(), audio, speech.seconds, start_s, end_s)
    return PieceResult(request.piece.index, start_s, end_s, transcript, vectors)


def _ignore(event: Event) -> None:
    pass


def speech_regions(transcript: Transcript, duration_s: float) -> list[tuple[float, float]]:
    """Where the transcript says someone speaks: word spans merged across short gaps (segments if no words).

    The fallback when Silero VAD finds no speech; VAD regions are preferred because Whisper's word
    times miss the edges of speech (on the pyannote sample, DER 0.03 with VAD regions vs 0.07 with words).
    """
    spans = [(w.start, w.end) for s in transcript.segments for w in s.words] or [
        (s.start, s.end) for s in transcript.segments
    ]
    regions: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        start, end = max(0.0, start - _REGION_PAD_S), min(duration_s, end + _REGION_PAD_S)
        if regions and start - regions[-1][1] <= _REGION_GAP_S:
            regions[-1] = (regions[-1][0], max(regions[-1][1], end))
        elif end > start:
            regions.append((start, end))
    return regions
