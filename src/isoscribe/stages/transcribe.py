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
from isoscribe.models import resolve_model
from isoscribe.repetition import LOG_PROB_THRESHOLD, MAX_COMPRESSION_RATIO, compression_ratio, find_loop, words_of
from isoscribe.stages import vad
from isoscribe.stages.recovery import SkippedSpeech, with_onsets
from isoscribe.transcript import PIECE_S, Segment, SpeechRequest, Transcript, Word
from isoscribe.tuning import cpu_threads

__all__ = [
    "Transcriber",
    "load",
    "run",
    "transcribe",
    "whisper_options",
    "detects_language_per_segment",
    "resolve_device",
    "piece_cuts",
    "piece_range",
    "clamp_words",
]

logger = logging.getLogger("isoscribe.transcribe")

SPLIT_SEARCH_S = 20.0
"""A piece ends at the quietest 0.1 s within this many seconds before a multiple of ``piece_s``."""
LANGUAGE_GROUP_S = 20.0
"""Speech regions within this many seconds share one language detection when it is sure."""
LANGUAGE_SURE = 0.8
"""A group detected at least this sure as the current language is not looked at region by region."""
LANGUAGE_SWITCH_MARGIN = 0.2
"""A region switches language only if its language's probability beats the current one's by this."""
MIN_DETECT_S = 1.0
"""Shorter regions are too short to tell their language: they keep their neighbours'."""
REPEATED_SEGMENT_WORDS = 6
"""A segment of this many words or more that repeats the one before it is decoded again on its own."""


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
    # CTranslate2 knows; models.is_english_only reads the vocabulary, which lists the language
    # tokens in tiny.en's too (it answers False there).
    english_only = not whisper.model.is_multilingual
    return Transcriber(whisper, asr.model, device, compute_type, english_only, asr)


def run(model: Transcriber, request: SpeechRequest) -> Transcript:
    started = time.perf_counter()
    audio = decode_audio(request.audio_path)
    decoded = time.perf_counter()
    transcript = transcribe(model, audio, request)
    transcript.timings_s = {"decode": decoded - started, **transcript.timings_s}
    return transcript


def whisper_options(asr: AsrSettings, request: SpeechRequest, english_only: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``WhisperModel.transcribe``; the benchmark's direct call uses the same.

    ``hallucination_silence_threshold`` needs word timestamps (faster-whisper ignores it without)."""
    language = request.language or asr.language
    if english_only:
        if request.task == "translate":
            raise ValueError(f"model {asr.model} is English-only: it cannot translate (use a multilingual model)")
        language = "en"
    temperatures = request.temperatures if request.temperatures is not None else tuple(asr.temperatures)
    return {
        "language": language,
        "task": request.task,
        "beam_size": asr.beam_size,
        "temperature": list(temperatures),
        "initial_prompt": request.initial_prompt or asr.initial_prompt,
        "vad_filter": asr.vad_filter,
        "word_timestamps": request.word_timestamps,
        "hallucination_silence_threshold": (
            asr.hallucination_silence_threshold_s or None if request.word_timestamps else None
        ),
    }


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
    stretch of speech (``_language_spans``) and each stretch is decoded in its own language, so a
    recording that switches language keeps both; every segment carries its ``language``. Otherwise
    the language is fixed (asked for, ``en`` for English-only models, or detected once at the start).

    Loops: a segment that repeats a phrase, compresses like repeated text or decodes with a low
    log-probability is decoded again on its own, without the previous text as prompt and with the
    temperature fallback; what still loops is cut off, with a warning in ``Transcript.warnings``.

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
    options = whisper_options(model.asr, request, model.english_only)
    speech = speech or vad.detect(audio, _vad_cuts(audio, request))
    per_segment = detects_language_per_segment(model, request)
    spans = _language_spans(model, audio, speech) if per_segment else [_Span(0, audio.size)]
    guard = _LoopGuard(model, audio, options) if model.asr.loop_detection else None
    recovery = SkippedSpeech(audio, speech, _recovery_decoder(model, options)) if model.asr.recover_skipped_speech else None
    segments: list[Segment] = []
    detected: list[tuple[str, float]] = []
    for span in spans:
        for offset, piece in _pieces(audio[span.start : span.end], request):
            language = span.language or options["language"] or (detected[0][0] if detected else None)
            first = span.start + offset
            ends = (first == 0, first + piece.size == audio.size)
            chunks = speech.decoder_chunks(first, first + piece.size, *ends) if options["vad_filter"] else None
            raw_segments, info = _decode(model, piece, {**options, "language": language}, chunks)
            detected.append((info.language, span.probability if span.language else float(info.language_probability)))
            offset_s = first / SAMPLE_RATE
            decoded = with_onsets((_segment(0, raw, offset_s, info.language) for raw in raw_segments), speech, offset_s)
            if recovery:
                decoded = recovery.around(decoded, offset_s, offset_s + piece.size / SAMPLE_RATE, info.language)
            for segment in decoded:
                for kept in guard.check(segment) if guard else [segment]:
                    kept.id = len(segments)
                    segments.append(kept)
                    if on_segment is not None:
                        on_segment(kept)
    elapsed = time.perf_counter() - started
    duration_s = audio.size / SAMPLE_RATE
    language, probability = _main_language(segments, detected)
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


def _decode(
    model: Transcriber, piece: np.ndarray, options: dict[str, Any], speech_chunks: tuple[list[dict], int] | None
) -> tuple[Iterator[Any], Any]:
    """faster-whisper on ``piece``, or only on its ``speech_chunks`` (``Speech.decoder_chunks``: the
    chunks, and the sample where speech starts) when the VAD filter is on; faster-whisper's own VAD
    is never run."""
    options = {**options, "vad_filter": False}
    if speech_chunks is None:
        return model.whisper.transcribe(piece, **options)
    from faster_whisper.transcribe import restore_speech_timestamps

    chunks, onset = speech_chunks
    if not chunks:
        return model.whisper.transcribe(piece[:0], **options)
    speech = np.concatenate([piece[chunk["start"] : chunk["end"]] for chunk in chunks])
    raw_segments, info = model.whisper.transcribe(speech, **options)
    return _starting_at(restore_speech_timestamps(raw_segments, chunks, SAMPLE_RATE), onset / SAMPLE_RATE), info


def _vad_cuts(audio: np.ndarray, request: SpeechRequest) -> list[int]:
    """Where the VAD runs: over every piece of the file, or over ``request.piece`` alone."""
    cuts = piece_cuts(audio, request.piece_s)
    if request.piece is None:
        return cuts
    return list(piece_range(cuts, request.piece.index, request.piece.count))


def _starting_at(raw_segments: Iterator[Any], onset_s: float) -> Iterator[Any]:
    """The first word does not start before ``onset_s``: Whisper's word alignment stretches it over
    the silence before it, which is kept now."""
    for raw in raw_segments:
        if raw.words and raw.words[0].start < onset_s:
            raw.words[0].start = min(onset_s, raw.words[0].end)
            raw.start = raw.words[0].start
        yield raw
        onset_s = 0.0


def _main_language(segments: list[Segment], detected: list[tuple[str, float]]) -> tuple[str, float]:
    """The language with the most segment time, and its detection probability where it was detected."""
    seconds: dict[str, float] = {}
    for segment in segments:
        if segment.language:
            seconds[segment.language] = seconds.get(segment.language, 0.0) + segment.end - segment.start
    language = max(seconds, key=seconds.get) if seconds else detected[0][0]
    probabilities = [p for code, p in detected if code == language]
    return language, (max(probabilities) if probabilities else detected[0][1])


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    """Samples of the audio decoded in one language."""
    language: str | None = None
    """None: as the options say (fixed, or detected by faster-whisper)."""
    probability: float = 1.0
    """How sure the detection of ``language`` was."""


def _language_spans(model: Transcriber, audio: np.ndarray, speech: vad.Speech) -> Iterator[_Span]:
    """Stretches of ``audio`` in one language each, yielded as they are found, cut mid-pause.

    Speech regions (Silero VAD) are taken in groups of about ``LANGUAGE_GROUP_S``; one detection per
    group settles it when the group is surely the current language (the common case: one encoder
    pass per 20 s of speech). Otherwise each region of the group is detected on its own, so a switch
    is placed at the pause where it happens, not at a 30 s window boundary. A region switches the
    language only when its language beats the current one by ``LANGUAGE_SWITCH_MARGIN``. A stretch
    ends after ``PIECE_S`` too, so that the first segments of a long file come after a few
    detections, not after detecting the whole file.
    """
    regions = speech.seconds
    current: str | None = None
    confidence: dict[str, float] = {}
    """The highest probability each language was detected with."""
    span_start, previous_end = 0, 0.0
    for group in _region_groups(regions):
        language, probability = _detect(model, audio, group, confidence)[:2]
        labels = [language] * len(group)
        if probability < LANGUAGE_SURE or language != (current or language):
            labels = [_region_language(model, audio, region, current, confidence) for region in group]
        for (start, end), label in zip(group, labels):
            label = label or current or language
            if current is not None and (label != current or start - span_start / SAMPLE_RATE > PIECE_S):
                cut = int((previous_end + start) / 2 * SAMPLE_RATE)
                yield _Span(span_start, cut, current, confidence[current])
                span_start = cut
            current, previous_end = label, end
    yield _Span(span_start, audio.size, current, confidence.get(current or "", 0.0))


def _region_groups(regions: list[tuple[float, float]]) -> Iterator[list[tuple[float, float]]]:
    group: list[tuple[float, float]] = []
    for region in regions:
        if group and region[1] - group[0][0] > LANGUAGE_GROUP_S:
            yield group
            group = []
        group.append(region)
    if group:
        yield group


def _region_language(
    model: Transcriber,
    audio: np.ndarray,
    region: tuple[float, float],
    current: str | None,
    confidence: dict[str, float],
) -> str | None:
    """The region's language, ``current`` unless another beats it clearly; None if too short to tell."""
    if region[1] - region[0] < MIN_DETECT_S:
        return None
    language, _, probabilities = _detect(model, audio, [region], confidence)
    if current is None or language == current:
        return language
    scores = dict(probabilities)
    return language if scores[language] - scores.get(current, 0.0) >= LANGUAGE_SWITCH_MARGIN else current


def _detect(
    model: Transcriber, audio: np.ndarray, regions: list[tuple[float, float]], confidence: dict[str, float]
) -> tuple[str, float, list[tuple[str, float]]]:
    speech = np.concatenate([audio[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] for a, b in regions])
    language, probability, probabilities = model.whisper.detect_language(speech)
    confidence[language] = max(confidence.get(language, 0.0), float(probability))
    return language, float(probability), probabilities


def _recovery_decoder(model: Transcriber, options: dict[str, Any]):
    """Decodes a stretch on its own: temperature 0, no previous text as prompt, no VAD."""
    alone = {**options, "vad_filter": False, "condition_on_previous_text": False, "initial_prompt": None,
             "temperature": 0.0}

    def decode(audio: np.ndarray, start_s: float, language: str | None) -> list[Segment]:
        raw_segments, info = model.whisper.transcribe(audio, **{**alone, "language": language or alone["language"]})
        return [_segment(0, raw, start_s, info.language) for raw in raw_segments]

    return decode


class _LoopGuard:
    """Checks each segment as it arrives; re-decodes suspicious ones and cuts what still loops."""

    def __init__(self, model: Transcriber, audio: np.ndarray, options: dict[str, Any]) -> None:
        self.model, self.audio, self.options = model, audio, options
        self.warnings: list[str] = []
        self.recent: list[list[str]] = []
        """Words of the last two segments kept: a third identical one is a loop across segments."""

    def check(self, segment: Segment) -> list[Segment]:
        suspicion = self._suspicion(segment)
        if suspicion is None:
            return self._remember([segment])
        redone = self._redecode(segment)
        log_event(
            logger, "segment_redecoded", start=segment.start, end=segment.end, reason=suspicion,
            segments=len(redone), text=segment.text[:80],
        )
        if suspicion == "log_probability":
            if not _better(redone, segment):
                return self._remember([segment])
        elif redone:
            self._warn(segment, f"decoded again ({suspicion.replace('_', ' ')}): {segment.text[:60]!r}")
        else:
            reason = suspicion.replace("_", " ")
            self._warn(segment, f"dropped ({reason}; decoded again, no speech): {segment.text[:60]!r}")
        return self._remember([cut for s in redone if (cut := self._cut_loop(s)) is not None])

    def _suspicion(self, segment: Segment) -> str | None:
        words = words_of(segment.text)
        if find_loop(words) is not None or compression_ratio(segment.text) > MAX_COMPRESSION_RATIO:
            return "repetition"
        if words and (self.recent[-2:] == [words, words] or self._repeats_previous(words)):
            return "repeated_segment"
        if segment.compression_ratio > MAX_COMPRESSION_RATIO:
            return "compression_ratio"
        if segment.avg_logprob < LOG_PROB_THRESHOLD:
            return "log_probability"
        return None

    def _repeats_previous(self, words: list[str]) -> bool:
        """A clause said again word for word right after itself: Whisper copying its prompt, more often
        than a speaker repeating (as ``find_loop`` judges a clause repeated within a segment)."""
        return len(words) >= REPEATED_SEGMENT_WORDS and self.recent[-1:] == [words]

    def _redecode(self, segment: Segment) -> list[Segment]:
        """The segment's audio decoded alone: no previous text as prompt, the temperature fallback."""
        first, last = int(segment.start * SAMPLE_RATE), int(segment.end * SAMPLE_RATE)
        if last - first < SAMPLE_RATE // 10:
            return []
        options = {
            **self.options, "language": segment.language or self.options["language"],
            "condition_on_previous_text": False, "initial_prompt": None,
        }
        raw_segments, info = self.model.whisper.transcribe(self.audio[first:last], **options)
        return [_segment(0, raw, segment.start, info.language) for raw in raw_segments]

    def _cut_loop(self, segment: Segment) -> Segment | None:
        """The segment up to the first copy of its repeated phrase (None if nothing is left)."""
        words = words_of(segment.text)
        if words and len(self.recent) == 2 and self.recent[0] == self.recent[1] == words:
            self._warn(segment, f"dropped a third identical segment {segment.text[:60]!r}")
            return None
        loop = find_loop(words)
        if loop is None and compression_ratio(segment.text) <= MAX_COMPRESSION_RATIO:
            return segment
        if loop is None:
            self._warn(segment, f"dropped text that compresses like a loop {segment.text[:60]!r}")
            return None
        phrase = " ".join(words[loop.start : loop.repeats_from])
        self._warn(segment, f"cut {len(words) - loop.repeats_from} words repeating {phrase!r}")
        return _truncate(segment, loop.repeats_from)

    def _remember(self, kept: list[Segment]) -> list[Segment]:
        for segment in kept:
            self.recent = (self.recent + [words_of(segment.text)])[-2:]
        return kept

    def _warn(self, segment: Segment, what: str) -> None:
        message = f"{segment.start:.1f}-{segment.end:.1f} s: {what}"
        self.warnings.append(message)
        log_event(logger, "repetition_loop", level=logging.WARNING, start=segment.start, end=segment.end, what=what)


def _better(redone: list[Segment], original: Segment) -> bool:
    """Re-decoded text replaces a low-confidence segment only if it decodes more confidently."""
    if not redone:
        return False
    return sum(s.avg_logprob for s in redone) / len(redone) > original.avg_logprob


def _truncate(segment: Segment, keep_words: int) -> Segment | None:
    """The first ``keep_words`` words of the segment (counted as ``words_of`` counts them)."""
    if keep_words <= 0:
        return None
    if segment.words:
        kept, counted = [], 0
        for word in segment.words:
            counted += len(words_of(word.text))
            if counted > keep_words:
                break
            kept.append(word)
        if not kept:
            return None
        segment.words, segment.end = kept, kept[-1].end
        segment.text = "".join(w.text for w in kept).strip()
    else:
        tokens, counted, kept_tokens = segment.text.split(), 0, []
        for token in tokens:
            counted += len(words_of(token))
            if counted > keep_words:
                break
            kept_tokens.append(token)
        segment.text = " ".join(kept_tokens)
    return segment if segment.text else None


def _pieces(audio: np.ndarray, request: SpeechRequest) -> Iterator[tuple[int, np.ndarray]]:
    """(offset in samples, view): every piece, or only ``request.piece``."""
    cuts = piece_cuts(audio, request.piece_s)
    if request.piece is None:
        ranges = list(zip(cuts, cuts[1:]))
    else:
        ranges = [piece_range(cuts, request.piece.index, request.piece.count)]
    for start, end in ranges:
        if end > start:
            yield start, audio[start:end]


def piece_cuts(audio: np.ndarray, piece_s: float) -> list[int]:
    """Sample positions from 0 to the end: the quietest 0.1 s before each multiple of ``piece_s``.

    Each cut depends only on the audio near its own multiple, so a worker handed one piece finds the
    same cuts as one that transcribes them all.
    """
    limit = int(piece_s * SAMPLE_RATE)
    search = min(int(SPLIT_SEARCH_S * SAMPLE_RATE), limit // 2)
    cuts = [0]
    for boundary in range(limit, audio.size, limit):
        cuts.append(_quietest_point(audio, boundary - search, boundary))
    return cuts + [audio.size]


def piece_range(cuts: list[int], index: int, count: int) -> tuple[int, int]:
    """Samples of piece ``index`` of ``count``; the last one runs to the end, one past the cuts is empty
    (the parent counts pieces from the probed length, which may differ from the decoded one by a frame)."""
    last = len(cuts) - 1
    start = cuts[min(index, last)]
    end = cuts[last] if index == count - 1 else cuts[min(index + 1, last)]
    return start, end


def _quietest_point(audio: np.ndarray, low: int, high: int) -> int:
    frame = SAMPLE_RATE // 10
    frames = audio[low : low + (high - low) // frame * frame].reshape(-1, frame)
    energy = np.einsum("ij,ij->i", frames, frames)
    return low + int(np.argmin(energy)) * frame + frame // 2


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
