"""Transcription stage: faster-whisper (CTranslate2) with word timestamps, on the speech the VAD finds.

Hostable alone by the isolation runtime (``load(settings)``, ``run(model, request)``); the composite
speech stage calls ``transcribe`` on audio it has already decoded, with the VAD's speech regions.
ctranslate2 is imported here, inside the worker, never in the parent. Loops are ``loops.py``'s,
skipped speech and word onsets ``recovery.py``'s, piece and language cuts ``pipeline/pieces.py``'s.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from isoscribe.audio import SAMPLE_RATE, decode_audio
from isoscribe.config import AsrSettings, Settings
from isoscribe.logs import log_event
from isoscribe.models import resolve_model
from isoscribe.pipeline.pieces import LanguageSpan, language_spans, main_language, piece_bounds, piece_cuts, piece_range
from isoscribe.stages import vad
from isoscribe.stages.loops import LoopGuard
from isoscribe.stages.options import TranscriptionOptions, transcription_options
from isoscribe.stages.recovery import SkippedSpeech, with_onsets
from isoscribe.transcript import Segment, SpeechRequest, Transcript, Word
from isoscribe.tuning import cpu_threads

__all__ = [
    "Transcriber",
    "load",
    "run",
    "transcribe",
    "detects_language_per_segment",
    "resolve_device",
    "resolve_compute_type",
    "vad_cuts",
    "token_cap",
    "clamp_words",
]

logger = logging.getLogger("isoscribe.transcribe")

TOKENS_PER_S = 12
MIN_TOKENS = 8
UNCAPPED_TOKENS = 200


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
        cpu_threads=cpu_threads(asr),
        local_files_only=True,
    )
    log_event(
        logger, "asr_model_loaded", model=asr.model, path=model_dir, device=device,
        compute_type=compute_type, load_s=time.perf_counter() - started,
    )
    english_only = not whisper.model.is_multilingual
    return Transcriber(whisper, asr.model, device, compute_type, english_only, asr)


def run(model: Transcriber, request: SpeechRequest) -> Transcript:
    started = time.perf_counter()
    audio = decode_audio(request.audio_path)
    decoded = time.perf_counter()
    transcript = transcribe(model, audio, request)
    transcript.timings_s = {"decode": decoded - started, **transcript.timings_s}
    return transcript


def detects_language_per_segment(model: Transcriber, request: SpeechRequest) -> bool:
    """Multilingual model, no language asked for, and ``asr.language_per_segment`` on."""
    return model.asr.language_per_segment and not model.english_only and not (request.language or model.asr.language)


def transcribe(
    model: Transcriber,
    audio: np.ndarray,
    request: SpeechRequest,
    on_segment: Callable[[Segment], None] | None = None,
    speech: vad.Speech | None = None,
) -> Transcript:
    """Transcribe 16 kHz mono float32 ``audio``; words are clamped into their segment, monotonic.

    ``on_segment`` is called with each finished segment as soon as faster-whisper yields it (its
    segments come from a generator, window by window), after the loop check below, so a caller can
    stream or show progress.

    Languages: with a multilingual model and no language asked for, the language is detected per
    stretch of speech (``pieces.language_spans``) and each stretch is decoded in its own language, so a
    recording that switches language keeps both; every segment carries its ``language``. Otherwise
    the language is fixed (asked for, ``en`` for English-only models, or detected once at the start).

    Loops (``loops.LoopGuard``): a suspicious segment is decoded again on its own; what still loops is
    cut off, with a warning in ``Transcript.warnings``.

    ``speech``: where the VAD hears speech in ``audio`` (``vad.detect``, run here when not given; the
    speech stage runs it once per file and hands it to diarization too). It gives the decoder its
    speech chunks, the language cuts, the words' onsets and the stretches checked for skipped speech
    (``recovery``).

    Audio longer than ``request.piece_s`` is transcribed piece by piece, cut at the quietest moment
    before each multiple of it: faster-whisper computes the log-mel features of its whole input at
    once, which for 60 minutes peaks at 3.3 GB (measured); per 5-minute piece it stays near 300 MB.
    With ``request.piece`` only that piece is transcribed (times stay absolute), so that several
    workers can share a long file; the cuts depend only on the audio, so every worker finds the same.
    """
    started = time.perf_counter()
    options = transcription_options(model.asr, request, model.english_only)
    if options.language is not None and model.whisper.hf_tokenizer.token_to_id(f"<|{options.language}|>") is None:
        raise ValueError(f"model {model.model_name} has no token for language {options.language!r}")
    if speech is None:
        speech = vad.detect(audio, vad_cuts(audio, request))
    decoder = _Decoder(model, audio, speech)
    if detects_language_per_segment(model, request):
        spans = language_spans(audio, speech.seconds, model.whisper.detect_language)
    else:
        spans = iter([LanguageSpan(0, audio.size)])
    alone = options.replace(condition_on_previous_text=False, initial_prompt=None, prefix=None)
    guard = LoopGuard(decoder.alone(alone)) if model.asr.loop_detection else None
    recovery = None
    if model.asr.recover_skipped_speech:
        recovery = SkippedSpeech(speech, decoder.alone(alone.replace(vad_filter=False, temperatures=(0.0,))))
    segments: list[Segment] = []
    detected: list[tuple[str, float]] = []
    for span in spans:
        for first, last in piece_bounds(audio[span.start : span.end], request):
            first, last = span.start + first, span.start + last
            language = span.language or options.language or (detected[0][0] if detected else None)
            decoded, info = decoder.piece(first, last, options.replace(language=language))
            options = options.replace(prefix=None)  # only the transcript's beginning has one
            detected.append((info.language, span.probability if span.language else float(info.language_probability)))
            decoded = with_onsets(decoded, speech, first / SAMPLE_RATE)
            if recovery:
                decoded = recovery.around(decoded, first / SAMPLE_RATE, last / SAMPLE_RATE, info.language)
            for segment in decoded:
                for kept in guard.check(segment) if guard else [segment]:
                    kept.id = len(segments)
                    segments.append(kept)
                    if on_segment is not None:
                        on_segment(kept)
    elapsed = time.perf_counter() - started
    duration_s = audio.size / SAMPLE_RATE
    language = main_language((s.language, s.end - s.start) for s in segments if s.language) or detected[0][0]
    probability = max((p for code, p in detected if code == language), default=detected[0][1])
    languages = list(dict.fromkeys(s.language for s in segments if s.language))
    log_event(
        logger, "transcribed", audio=request.audio_path, duration_s=duration_s, segments=len(segments),
        language=language, languages=",".join(languages), warnings=len(guard.warnings) if guard else 0,
        wall_s=elapsed, rtf=elapsed / duration_s if duration_s else 0.0,
    )
    return Transcript(
        segments=segments,
        language=language,
        language_probability=probability,
        duration_s=duration_s,
        model=model.model_name,
        timings_s={"transcribe": elapsed},
        source=request.audio_path,
        languages=languages or [language],
        warnings=list(guard.warnings) if guard else [],
    )


def token_cap(seconds: float) -> int | None:
    """The tokens a stretch decoded on its own may take: twice what the fastest speech needs (about six
    a second), and some. More is a loop: base looped "I'm sorry," over 0.26 s at the end of a file
    until the model's limit, 7 s of decoding. None beyond ``UNCAPPED_TOKENS`` (the prompt needs room)."""
    cap = MIN_TOKENS + math.ceil(TOKENS_PER_S * seconds)
    return cap if cap < UNCAPPED_TOKENS else None


def vad_cuts(audio: np.ndarray, request: SpeechRequest) -> list[int]:
    """Where the VAD runs: over every piece of the file, or over ``request.piece`` alone."""
    cuts = piece_cuts(audio, request.piece_s)
    if request.piece is None:
        return cuts
    return list(piece_range(cuts, request.piece.index, request.piece.count))


@dataclass
class _Decoder:
    """faster-whisper on stretches of one file's audio, on the speech ``speech`` finds there when the
    options ask for the VAD filter; faster-whisper's own VAD never runs."""

    model: Transcriber
    audio: np.ndarray
    speech: vad.Speech

    def piece(self, first: int, last: int, options: TranscriptionOptions) -> tuple[Iterator[Segment], Any]:
        """Samples ``first``..``last`` decoded in turn, segments yielded as faster-whisper finds them.

        Silence before the recording's first speech is kept (``Speech.decoder_chunks``), so the first
        word's alignment is held at the speech onset (``_starting_at``)."""
        return self._decode(first, last, options, recording_ends=(first == 0, last == self.audio.size))

    def alone(self, options: TranscriptionOptions) -> Callable[[float, float, str | None], list[Segment]]:
        """A decoder of stretches on their own with ``options``, in the language given (else the options')."""

        def decode(start_s: float, end_s: float, language: str | None) -> list[Segment]:
            first, last = int(start_s * SAMPLE_RATE), int(end_s * SAMPLE_RATE)
            stretch = options.replace(language=language or options.language, max_new_tokens=token_cap(end_s - start_s))
            segments, _ = self._decode(first, last, stretch)
            return list(segments)

        return decode

    def _decode(
        self, first: int, last: int, options: TranscriptionOptions, recording_ends: tuple[bool, bool] | None = None
    ) -> tuple[Iterator[Segment], Any]:
        from faster_whisper.transcribe import restore_speech_timestamps

        audio, transcribe_audio = self.audio[first:last], self.model.whisper.transcribe
        kwargs = {**options.engine_kwargs(), "vad_filter": False}
        offset_s = first / SAMPLE_RATE
        if not options.vad_filter:
            raw_segments, info = transcribe_audio(audio, **kwargs)
        else:
            chunks, onset = self.speech.decoder_chunks(first, last, *(recording_ends or (False, False)))
            speech = np.concatenate([audio[c["start"] : c["end"]] for c in chunks]) if chunks else audio[:0]
            raw_segments, info = transcribe_audio(speech, **kwargs)
            raw_segments = restore_speech_timestamps(raw_segments, chunks, SAMPLE_RATE) if chunks else raw_segments
            if recording_ends is not None:
                raw_segments = _starting_at(raw_segments, onset / SAMPLE_RATE)
        return (_segment(0, raw, offset_s, info.language) for raw in raw_segments), info


def _starting_at(raw_segments: Iterator[Any], onset_s: float) -> Iterator[Any]:
    """The first word does not start before ``onset_s``: Whisper's word alignment stretches it over
    the silence before it, which is kept now."""
    for raw in raw_segments:
        if raw.words and raw.words[0].start < onset_s:
            raw.words[0].start = min(onset_s, raw.words[0].end)
            raw.start = raw.words[0].start
        yield raw
        onset_s = 0.0


def _segment(index: int, raw: Any, offset_s: float = 0.0, language: str | None = None) -> Segment:
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
        language=language,
    )


def clamp_words(words: list[Word], start: float, end: float) -> list[Word]:
    """Keep every word inside [start, end] with non-decreasing, non-overlapping times."""
    previous_end = start
    for word in words:
        word.start = min(max(word.start, previous_end), end)
        word.end = min(max(word.end, word.start), end)
        previous_end = word.end
    return words
