"""Transcription stage: faster-whisper (CTranslate2) with word timestamps and the Silero VAD filter.

Hostable alone by the isolation runtime (``load(settings)``, ``run(model, request)``); the composite
speech stage calls ``transcribe`` on audio it has already decoded. ctranslate2 is imported here,
inside the worker, never in the parent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from isoscribe.audio import SAMPLE_RATE, decode_audio
from isoscribe.config import AsrSettings, Settings
from isoscribe.logs import log_event
from isoscribe.models import is_english_only, resolve_model
from isoscribe.transcript import Segment, SpeechRequest, Transcript, Word

__all__ = ["Transcriber", "load", "run", "transcribe", "whisper_options", "resolve_device"]

logger = logging.getLogger("isoscribe.transcribe")

PIECE_S = 300.0
"""Longest audio handed to faster-whisper at once (see ``transcribe``)."""
SPLIT_SEARCH_S = 20.0
"""A piece ends at the quietest 0.1 s within this many seconds before its limit."""


@dataclass
class Transcriber:
    whisper: Any
    """faster_whisper.WhisperModel"""
    model_name: str
    device: str
    compute_type: str
    english_only: bool
    asr: AsrSettings


def resolve_device(device: str) -> str:
    """"auto" means CUDA when CTranslate2 sees a GPU; only ever called inside a worker."""
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def resolve_compute_type(compute_type: str, device: str) -> str:
    if compute_type != "default":
        return compute_type
    return "float16" if device == "cuda" else "int8"


def load(settings: Settings) -> Transcriber:
    from faster_whisper import WhisperModel

    asr = settings.asr
    model_dir = resolve_model(asr.model, asr.model_cache_dir)
    device = resolve_device(asr.device)
    compute_type = resolve_compute_type(asr.compute_type, device)
    started = time.perf_counter()
    whisper = WhisperModel(
        str(model_dir),
        device=device,
        compute_type=compute_type,
        cpu_threads=asr.cpu_threads,
        local_files_only=True,
    )
    log_event(
        logger, "asr_model_loaded", model=asr.model, path=model_dir, device=device,
        compute_type=compute_type, load_s=time.perf_counter() - started,
    )
    return Transcriber(whisper, asr.model, device, compute_type, is_english_only(model_dir), asr)


def run(model: Transcriber, request: SpeechRequest) -> Transcript:
    started = time.perf_counter()
    audio = decode_audio(request.audio_path)
    decoded = time.perf_counter()
    transcript = transcribe(model, audio, request)
    transcript.timings_s = {"decode": decoded - started, **transcript.timings_s}
    return transcript


def whisper_options(asr: AsrSettings, request: SpeechRequest, english_only: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``WhisperModel.transcribe``; the benchmark's direct call uses the same."""
    language = request.language or asr.language
    if english_only:
        language = "en"
    temperatures = request.temperatures if request.temperatures is not None else tuple(asr.temperatures)
    return {
        "language": language,
        "beam_size": asr.beam_size,
        "temperature": list(temperatures),
        "initial_prompt": request.initial_prompt or asr.initial_prompt,
        "vad_filter": asr.vad_filter,
        "word_timestamps": request.word_timestamps,
    }


def transcribe(
    model: Transcriber,
    audio: np.ndarray,
    request: SpeechRequest,
    on_segment: Callable[[Segment], None] | None = None,
) -> Transcript:
    """Transcribe 16 kHz mono float32 ``audio``; words are clamped into their segment, monotonic.

    ``on_segment`` is called with each finished segment as soon as faster-whisper yields it (its
    segments come from a generator, window by window), so a caller can stream or show progress.

    Audio longer than ``PIECE_S`` is transcribed piece by piece, cut at the quietest moment before
    each boundary: faster-whisper computes the log-mel features of its whole input at once, which
    for 60 minutes peaks at 3.3 GB (measured); per 5-minute piece it stays near 300 MB. A detected
    language is fixed for the pieces after the first.
    """
    started = time.perf_counter()
    options = whisper_options(model.asr, request, model.english_only)
    segments: list[Segment] = []
    info = None
    for offset, piece in _pieces(audio):
        raw_segments, piece_info = model.whisper.transcribe(piece, **options)
        if info is None:
            info = piece_info
            options["language"] = info.language
        offset_s = offset / SAMPLE_RATE
        for raw in raw_segments:
            segment = _segment(len(segments), raw, offset_s)
            segments.append(segment)
            if on_segment is not None:
                on_segment(segment)
    elapsed = time.perf_counter() - started
    duration_s = audio.size / SAMPLE_RATE
    log_event(
        logger, "transcribed", audio=request.audio_path, duration_s=duration_s, segments=len(segments),
        language=info.language, wall_s=elapsed, rtf=elapsed / duration_s if duration_s else 0.0,
    )
    return Transcript(
        segments=segments,
        language=info.language,
        language_probability=float(info.language_probability),
        duration_s=duration_s,
        model=model.model_name,
        timings_s={"transcribe": elapsed},
        source=request.audio_path,
    )


def _pieces(audio: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(offset in samples, view) pieces of at most ``PIECE_S``, cut in the quietest 0.1 s before each limit."""
    limit = int(PIECE_S * SAMPLE_RATE)
    position = 0
    while audio.size - position > limit:
        cut = _quietest_point(audio, position + limit - int(SPLIT_SEARCH_S * SAMPLE_RATE), position + limit)
        yield position, audio[position:cut]
        position = cut
    yield position, audio[position:]


def _quietest_point(audio: np.ndarray, low: int, high: int) -> int:
    frame = SAMPLE_RATE // 10
    frames = audio[low : low + (high - low) // frame * frame].reshape(-1, frame)
    energy = np.einsum("ij,ij->i", frames, frames)
    return low + int(np.argmin(energy)) * frame + frame // 2


def _segment(index: int, raw: Any, offset_s: float = 0.0) -> Segment:
    start, end = float(raw.start) + offset_s, float(max(raw.end, raw.start)) + offset_s
    words = [
        Word(float(w.start) + offset_s, float(w.end) + offset_s, w.word, float(w.probability)) for w in raw.words or []
    ]
    return Segment(
        id=index,
        start=start,
        end=end,
        text=raw.text.strip(),
        words=clamp_words(words, start, end),
        avg_logprob=float(raw.avg_logprob),
        no_speech_prob=float(raw.no_speech_prob),
        compression_ratio=float(raw.compression_ratio),
        temperature=float(raw.temperature or 0.0),
    )


def clamp_words(words: list[Word], start: float, end: float) -> list[Word]:
    """Keep every word inside [start, end] with non-decreasing, non-overlapping times."""
    previous_end = start
    for word in words:
        word.start = min(max(word.start, previous_end), end)
        word.end = min(max(word.end, word.start), end)
        previous_end = word.end
    return words
