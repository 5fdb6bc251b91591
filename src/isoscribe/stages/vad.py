"""Voice activity: Silero VAD (faster-whisper's ONNX model), run once per file, or once per piece when
a file is cut, with one configuration.

The speech stage runs ``detect`` and hands the result to everything that needs to know where someone
speaks: the decoder's speech chunks, the language cuts, skipped-speech recovery, word onsets and
diarization. The decoder's chunks are derived from the same regions (``Speech.decoder_chunks``).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from isoscribe.audio import SAMPLE_RATE

__all__ = ["Speech", "detect", "MIN_SILENCE_S", "PAD_S"]

MIN_SILENCE_S = 0.3
"""Silence that ends a speech region (Silero's "min_silence_duration_ms")."""
PAD_S = 0.1
"""Each region reaches this far into the silence on either side."""
DECODER_MIN_SILENCE_S = 2.0
DECODER_PAD_S = 0.4
"""faster-whisper's own VAD filter defaults: the decoder sees speech cut only at silences this long,
padded this much (what it would cut with ``vad_filter=True``)."""
THRESHOLD, NEG_THRESHOLD = 0.5, 0.35
"""Silero's defaults: a frame at or above ``THRESHOLD`` is speech; below ``NEG_THRESHOLD``, silence."""
FRAME = 512
"""Samples per Silero probability (32 ms)."""
PAUSE_S = 0.09
"""Silence this long between words is a pause (three frames)."""
CHUNK_S = 300.0
"""Silero runs over pieces this long: faster-whisper's VAD copies its whole input twice (padding,
context frames), so the overhead stays at a few tens of MB however long the file is."""


@dataclass(frozen=True, eq=False)
class Speech:
    """Where Silero hears speech in one stretch of audio: padded regions, in samples of the file."""

    regions: tuple[tuple[int, int], ...]
    parts: tuple[tuple[int, np.ndarray], ...] = ()
    """(first sample, Silero's speech probability of each ``FRAME`` from there) of each part looked at."""

    @property
    def seconds(self) -> list[tuple[float, float]]:
        return [(start / SAMPLE_RATE, end / SAMPLE_RATE) for start, end in self.regions]

    def between(self, start_s: float, end_s: float) -> list[tuple[float, float]]:
        """The regions (seconds) clipped to ``start_s``..``end_s``."""
        found = []
        for first, last in self.regions[max(0, self._index(start_s)) :]:
            region_start_s, region_end_s = first / SAMPLE_RATE, last / SAMPLE_RATE
            if region_start_s >= end_s:
                break
            if region_end_s > start_s:
                found.append((max(region_start_s, start_s), min(region_end_s, end_s)))
        return found

    def region_at(self, time_s: float) -> tuple[float, float] | None:
        """The region (seconds) that holds ``time_s``, if any."""
        index = self._index(time_s)
        if index < 0:
            return None
        start, end = self.regions[index][0] / SAMPLE_RATE, self.regions[index][1] / SAMPLE_RATE
        return (start, end) if start <= time_s < end else None

    def _index(self, time_s: float) -> int:
        """The last region starting at or before ``time_s`` (-1: none)."""
        return bisect.bisect_right(self.regions, (time_s * SAMPLE_RATE, math.inf)) - 1

    def speech_onset(self, start_s: float, end_s: float) -> float | None:
        """Where the first speech frame between ``start_s`` and ``end_s`` starts (None without one)."""
        for first, probabilities in self._frames(start_s, end_s):
            index = np.flatnonzero(probabilities >= THRESHOLD)
            if index.size:
                return first + index[0] * FRAME / SAMPLE_RATE
        return None

    def has_pause(self, start_s: float, end_s: float) -> bool:
        """Whether ``PAUSE_S`` of silence lies between ``start_s`` and ``end_s`` (or it reaches past the audio)."""
        frames = self._frames(start_s, end_s)
        if not frames or (self.parts and end_s * SAMPLE_RATE > self.parts[-1][0] + self.parts[-1][1].size * FRAME):
            return True
        needed, run = max(1, round(PAUSE_S * SAMPLE_RATE / FRAME)), 0
        for _, probabilities in frames:
            for silent in probabilities < NEG_THRESHOLD:
                run = run + 1 if silent else 0
                if run >= needed:
                    return True
        return False

    def _frames(self, start_s: float, end_s: float) -> list[tuple[float, np.ndarray]]:
        """(start in seconds, probabilities) of the whole frames between ``start_s`` and ``end_s``, per part."""
        found = []
        for first, probabilities in self.parts:
            low = max(0, int(np.ceil((start_s * SAMPLE_RATE - first) / FRAME)))
            high = min(probabilities.size, int((end_s * SAMPLE_RATE - first) // FRAME))
            if high > low:
                found.append(((first + low * FRAME) / SAMPLE_RATE, probabilities[low:high]))
        return found

    def decoder_chunks(self, first: int, last: int, keep_start: bool, keep_end: bool) -> tuple[list[dict], int]:
        """The speech of samples ``first``..``last`` that faster-whisper's VAD filter would keep, as its
        chunks relative to ``first``, and the sample where speech first starts (0 without speech before it).

        Regions closer than ``DECODER_MIN_SILENCE_S`` merge, and each is padded by ``DECODER_PAD_S``.
        Silence at the recording's start and end (``keep_start``, ``keep_end``) shorter than that is
        kept, as it is between speech: cutting it saves nothing, and a clip without long silences then
        reaches the decoder exactly as it does with the engine's defaults (on one, a 0.7 s lead cut away
        changed two words). Not at a piece cut: there, a short silence kept before the first word made
        tiny.en skip minutes of speech (3 of 4 referenced files of 7.5-17.5 minutes: WER 0.14-0.16 became
        0.20-0.22).
        """
        pad, widen = int(PAD_S * SAMPLE_RATE), int((DECODER_PAD_S - PAD_S) * SAMPLE_RATE)
        shortest_cut = int(DECODER_MIN_SILENCE_S * SAMPLE_RATE)
        size = last - first
        merged: list[list[int]] = []
        for start, end in self.regions:
            start, end = max(start, first) - first, min(end, last) - first
            if end <= start:
                continue
            if merged and start - merged[-1][1] < shortest_cut - 2 * pad:
                merged[-1][1] = end
            else:
                merged.append([start, end])
        if not merged:
            return [], 0
        if size - merged[-1][1] < shortest_cut - pad:
            merged[-1][1] = size  # speech to the end: no silence long enough to end it
        chunks = [{"start": max(0, start - widen), "end": min(size, end + widen)} for start, end in merged]
        onset = merged[0][0] + pad if chunks[0]["start"] > 0 else 0
        if keep_start and chunks[0]["start"] < shortest_cut:
            chunks[0]["start"] = 0
        if keep_end and size - chunks[-1]["end"] < shortest_cut:
            chunks[-1]["end"] = size
        return chunks, min(onset, chunks[0]["end"])


def detect(audio: np.ndarray, cuts: list[int] | None = None) -> Speech:
    """THE VAD run over ``audio``: Silero on each piece between ``cuts`` (sample positions from the
    first to the last sample looked at, ``piece_cuts``; default: the whole audio as one piece), each
    piece in parts of at most ``CHUNK_S``.

    Silero carries its state through its input, so a piece's regions are those it would find alone:
    the decoder's chunks of a piece are the same whether one worker transcribes all the pieces or
    each piece goes to its own."""
    from faster_whisper.vad import get_vad_model

    cuts = cuts or [0, audio.size]
    chunk = int(CHUNK_S * SAMPLE_RATE)
    bounds = [(first, min(first + chunk, end)) for start, end in zip(cuts, cuts[1:]) for first in range(start, end, chunk)]
    parts, regions = [], []
    for first, last in bounds:
        piece = audio[first:last]
        probabilities = get_vad_model()(np.pad(piece, (0, FRAME - piece.size % FRAME))).reshape(-1)
        parts.append((first, probabilities))
        for start, end in _timestamps(probabilities, piece.size):
            if regions and first + start - regions[-1][1] < SAMPLE_RATE // 100:
                regions[-1] = (regions[-1][0], first + end)
            else:
                regions.append((first + start, first + end))
    return Speech(tuple(regions), tuple(parts))


def _timestamps(probabilities: np.ndarray, size: int) -> list[tuple[int, int]]:
    """faster-whisper's ``get_speech_timestamps`` (1.2) with ``MIN_SILENCE_S`` and ``PAD_S``, from
    probabilities already computed (it would run Silero again); the same regions, sample for sample."""
    min_silence, pad = MIN_SILENCE_S * SAMPLE_RATE, PAD_S * SAMPLE_RATE
    speeches: list[list[int]] = []
    start, silence_start = None, 0
    for index, probability in enumerate(probabilities):
        if probability >= THRESHOLD and silence_start:
            silence_start = 0
        if probability >= THRESHOLD and start is None:
            start = FRAME * index
        elif probability < NEG_THRESHOLD and start is not None:
            silence_start = silence_start or FRAME * index
            if FRAME * index - silence_start >= min_silence:
                speeches.append([start, silence_start])
                start, silence_start = None, 0
    if start is not None and size - start > 0:
        speeches.append([start, size])
    for index, speech in enumerate(speeches):
        if index == 0:
            speech[0] = int(max(0, speech[0] - pad))
        if index < len(speeches) - 1:
            silence = speeches[index + 1][0] - speech[1]
            if silence < 2 * pad:
                speech[1] += int(silence // 2)
                speeches[index + 1][0] = int(max(0, speeches[index + 1][0] - silence // 2))
            else:
                speech[1] = int(min(size, speech[1] + pad))
                speeches[index + 1][0] = int(max(0, speeches[index + 1][0] - pad))
        else:
            speech[1] = int(min(size, speech[1] + pad))
    return [(start, end) for start, end in speeches]
