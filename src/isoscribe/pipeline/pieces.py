"""Where a file is cut: pieces and language cuts, and a long file's speech on several workers.

Pieces: the speech stage cuts a file at silence near every multiple of ``SpeechRequest.piece_s``
(``piece_cuts``: the cuts depend only on the audio, so every worker finds the same ones); each piece
may be its own task, and the pieces' speaker vectors are clustered in one more task so that a voice
keeps one label across pieces. Faster-whisper never carries text from one piece to the next, so the
words are those of one worker transcribing the pieces in turn.

Language cuts (``language_spans``): with the language detected per stretch of speech, a file is cut
mid-pause where its language changes.

The cuts run in the speech worker (on decoded audio), the layout and the stitching in the parent.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from isoscribe.config import Settings
from isoscribe.transcript import PIECE_S, PieceResult, SpeakerTurn, SpeechRequest, Transcript

__all__ = [
    "piece_layout",
    "piece_workers",
    "stitch_pieces",
    "piece_cuts",
    "piece_range",
    "piece_bounds",
    "LanguageSpan",
    "language_spans",
    "main_language",
]

SAMPLE_RATE = 16000
"""``isoscribe.audio.SAMPLE_RATE``, which the parent does not import (audio.py is for workers)."""
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

DetectLanguage = Callable[[np.ndarray], tuple[str, float, list[tuple[str, float]]]]
"""faster-whisper's ``WhisperModel.detect_language``: audio → (language, probability, all probabilities)."""


def piece_layout(request: SpeechRequest, duration_s: float, workers: int) -> tuple[int, float]:
    """(pieces, seconds per piece) for a file of ``duration_s`` on ``workers``: a multiple of the
    workers, none longer than ``request.piece_s``, so that no worker is left idle while one finishes
    a last piece (60 minutes on 2 workers: 12 pieces of 300 s, the cuts of one worker alone)."""
    if duration_s <= request.piece_s:
        return 1, request.piece_s
    count = workers * math.ceil(duration_s / (request.piece_s * workers))
    return count, duration_s / count


def piece_workers(settings: Settings, workers: int | str) -> int:
    """How many of ``workers`` (``auto`` not yet resolved counts as one) a long file's pieces may use.

    Pieces go to separate workers only when each piece's decoding needs nothing from the others: the
    language is fixed (per-stretch detection looks across the whole file) and the diarization backend
    works from speaker vectors (pyannote diarizes a whole file at once; a service request may ask for
    diarization when the settings do not enable it, so the backend decides alone)."""
    asr = settings.asr
    fixed_language = bool(asr.language) or not asr.language_per_segment or asr.model.endswith(".en")
    splits = fixed_language and settings.diarization.backend != "pyannote"
    return workers if splits and isinstance(workers, int) else 1


def stitch_pieces(pieces: list[PieceResult], speaker_turns: list[SpeakerTurn]) -> Transcript:
    """One transcript from the pieces of a file, in order, with the whole file's speaker turns.

    Raises ValueError when the pieces do not cover the file edge to edge, in order.
    """
    pieces = sorted(pieces, key=lambda piece: piece.index)
    for before, after in zip(pieces, pieces[1:]):
        if after.start_s != before.end_s:
            raise ValueError(
                f"piece {after.index} starts at {after.start_s} s, piece {before.index} ends at {before.end_s} s"
            )
    segments = [segment for piece in pieces for segment in piece.transcript.segments]
    for index, segment in enumerate(segments):
        segment.id = index
    transcripts = [piece.transcript for piece in pieces]
    language = main_language((t.language, sum(s.end - s.start for s in t.segments) or 1e-9) for t in transcripts)
    timings: Counter[str] = Counter()
    for transcript in transcripts:
        timings.update(transcript.timings_s)
    first = transcripts[0]
    return Transcript(
        segments=segments,
        language=language,
        language_probability=max(t.language_probability for t in transcripts if t.language == language),
        duration_s=first.duration_s,
        model=first.model,
        speakers=list(dict.fromkeys(turn.speaker for turn in speaker_turns)),
        speaker_turns=speaker_turns,
        timings_s={**timings, "pieces": float(len(pieces))},
        source=first.source,
        languages=list(dict.fromkeys(language for t in transcripts for language in t.languages)),
        warnings=[warning for t in transcripts for warning in t.warnings],
    )


def main_language(durations: Iterable[tuple[str, float]]) -> str | None:
    """The language spoken longest in (language, seconds) pairs; None without any."""
    seconds: Counter[str] = Counter()
    for language, duration_s in durations:
        seconds[language] += duration_s
    return seconds.most_common(1)[0][0] if seconds else None


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


def piece_bounds(audio: np.ndarray, request: SpeechRequest) -> list[tuple[int, int]]:
    """(first, last) samples of every non-empty piece of ``audio``, or of ``request.piece`` only."""
    cuts = piece_cuts(audio, request.piece_s)
    if request.piece is None:
        ranges = list(zip(cuts, cuts[1:]))
    else:
        ranges = [piece_range(cuts, request.piece.index, request.piece.count)]
    return [(start, end) for start, end in ranges if end > start]


def _quietest_point(audio: np.ndarray, low: int, high: int) -> int:
    frame = SAMPLE_RATE // 10
    frames = audio[low : low + (high - low) // frame * frame].reshape(-1, frame)
    energy = np.einsum("ij,ij->i", frames, frames)
    return low + int(np.argmin(energy)) * frame + frame // 2


@dataclass(frozen=True)
class LanguageSpan:
    start: int
    end: int
    """Samples of the audio decoded in one language."""
    language: str | None = None
    """None: as the options say (fixed, or detected by faster-whisper)."""
    probability: float = 1.0
    """How sure the detection of ``language`` was."""


def language_spans(
    audio: np.ndarray, regions: list[tuple[float, float]], detect: DetectLanguage
) -> Iterator[LanguageSpan]:
    """Stretches of ``audio`` in one language each, yielded as they are found, cut mid-pause.

    Speech ``regions`` (seconds, from the VAD) are taken in groups of about ``LANGUAGE_GROUP_S``; one
    detection per group settles it when the group is surely the current language (the common case:
    one encoder pass per 20 s of speech). Otherwise each region of the group is detected on its own,
    so a switch is placed at the pause where it happens, not at a 30 s window boundary. A region
    switches the language only when its language beats the current one by ``LANGUAGE_SWITCH_MARGIN``.
    A stretch ends after ``PIECE_S`` too, so that the first segments of a long file come after a few
    detections, not after detecting the whole file.
    """
    detector = _Detector(audio, detect)
    current: str | None = None
    span_start, previous_end = 0, 0.0
    for group in _region_groups(regions):
        language, probability, _ = detector.detect(group)
        labels = [language] * len(group)
        if probability < LANGUAGE_SURE or language != (current or language):
            labels = [detector.region_language(region, current) for region in group]
        for (start, end), label in zip(group, labels):
            label = label or current or language
            if current is not None and (label != current or start - span_start / SAMPLE_RATE > PIECE_S):
                cut = int((previous_end + start) / 2 * SAMPLE_RATE)
                yield LanguageSpan(span_start, cut, current, detector.confidence[current])
                span_start = cut
            current, previous_end = label, end
    yield LanguageSpan(span_start, audio.size, current, detector.confidence.get(current or "", 0.0))


def _region_groups(regions: list[tuple[float, float]]) -> Iterator[list[tuple[float, float]]]:
    group: list[tuple[float, float]] = []
    for region in regions:
        if group and region[1] - group[0][0] > LANGUAGE_GROUP_S:
            yield group
            group = []
        group.append(region)
    if group:
        yield group


class _Detector:
    def __init__(self, audio: np.ndarray, detect: DetectLanguage) -> None:
        self.audio, self._detect = audio, detect
        self.confidence: dict[str, float] = {}
        """The highest probability each language was detected with."""

    def detect(self, regions: list[tuple[float, float]]) -> tuple[str, float, list[tuple[str, float]]]:
        speech = np.concatenate([self.audio[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] for a, b in regions])
        language, probability, probabilities = self._detect(speech)
        self.confidence[language] = max(self.confidence.get(language, 0.0), float(probability))
        return language, float(probability), probabilities

    def region_language(self, region: tuple[float, float], current: str | None) -> str | None:
        """The region's language, ``current`` unless another beats it clearly; None if too short to tell."""
        if region[1] - region[0] < MIN_DETECT_S:
            return None
        language, _, probabilities = self.detect([region])
        if current is None or language == current:
            return language
        scores = dict(probabilities)
        return language if scores[language] - scores.get(current, 0.0) >= LANGUAGE_SWITCH_MARGIN else current
