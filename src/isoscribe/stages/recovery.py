"""Where the VAD and the decoded words disagree: word onsets Whisper places late, and speech it skipped.

Onsets: Whisper's alignment often starts a segment's first word a few tenths of a second after the
speech does. When the VAD shows speech starting before the first word, within ``MAX_ONSET_SHIFT_S``
and after the words before it, the word starts there (``with_onsets``); at the recording's start the
decoder does the same (``transcribe._starting_at``).

Skipped speech: a stretch of ``SKIPPED_SPEECH_GAP_S`` or more without words in which the VAD hears
speech is decoded again on its own, at temperature 0 and without the previous text as prompt
(conditioned on it, Whisper sometimes takes a last short phrase for silence: acoustic_corpus's final
"thanks"). What decodes confidently is put in its place, unless it is a stray fragment
(``stray_reason``): Whisper decoding the onset of a word it has already transcribed, as "More." for
the "Morning" of the next segment.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from difflib import SequenceMatcher

from isoscribe.logs import log_event
from isoscribe.repetition import LOG_PROB_THRESHOLD, MAX_COMPRESSION_RATIO, find_loop, words_of
from isoscribe.stages.vad import PAD_S, Speech
from isoscribe.transcript import Segment, Word

__all__ = ["SkippedSpeech", "with_onsets", "stray_reason", "SKIPPED_SPEECH_GAP_S", "MAX_ONSET_SHIFT_S"]

logger = logging.getLogger("isoscribe.transcribe")

SKIPPED_SPEECH_GAP_S = 1.0
"""A stretch at least this long without transcribed words is checked for speech the decoder skipped."""
SKIPPED_SPEECH_MIN_S = 0.25
"""Less speech than this (VAD) in such a stretch is not decoded again."""
MAX_ONSET_SHIFT_S = 1.0
"""A first word moves at most this much earlier to where the VAD hears its speech start."""
NEIGHBOUR_S = 1.0
"""Decoded words this close to a recovered fragment are its neighbours."""
ALIKE_RATIO = 0.8
"""Words at least this similar (difflib ratio) are one word heard twice ("words"/"word")."""
PIECE_SHARE = 0.75
"""A fragment word whose first letters, this share of it and at least three, begin a neighbouring
word is that word's onset."""
SHORT_WORD_S = 0.3
"""A recovered single word shorter than this is kept only as an utterance of its own."""
MIN_WORD_PROBABILITY = 0.5
"""A recovered fragment whose words Whisper gives less than even odds on (their mean probability) is
dropped: decoded alone, without context, a filler comes out as a word (an "um" of acoustic_corpus
as "It's..." at 0.45, in the bench's 300 s referenced long file, its tuning data; "Thanks." 0.87)."""

DecodeAlone = Callable[[float, float, "str | None"], list[Segment]]
"""(start_s, end_s, language) → the stretch's segments decoded on their own, with absolute times."""


def with_onsets(segments: Iterator[Segment], speech: Speech, start_s: float) -> Iterator[Segment]:
    """``segments`` with each first word starting where the VAD hears its speech start, when that is
    earlier, within ``MAX_ONSET_SHIFT_S``, and after the segments before it (from ``start_s``)."""
    covered_s = start_s
    for segment in segments:
        if segment.words:
            onset_s = _onset(speech, segment.words[0].start, covered_s)
            if onset_s < segment.words[0].start:
                segment.words[0].start = segment.start = onset_s
        covered_s = max(covered_s, segment.end)
        yield segment


def _onset(speech: Speech, word_start_s: float, earliest_s: float) -> float:
    """Where the speech of a word starting at ``word_start_s`` starts, by the VAD; the word's own start
    when the VAD's onset is before ``earliest_s`` or more than ``MAX_ONSET_SHIFT_S`` earlier."""
    region = speech.region_at(word_start_s)
    if region is None:
        return word_start_s
    onset_s = region[0] + PAD_S if region[0] > 0 else 0.0
    if onset_s < max(earliest_s, word_start_s - MAX_ONSET_SHIFT_S):
        return word_start_s
    return min(onset_s, word_start_s)


class SkippedSpeech:
    """Finds stretches without words where the VAD hears speech, and decodes them on their own."""

    def __init__(self, speech: Speech, decode_alone: DecodeAlone) -> None:
        self.speech, self.decode_alone = speech, decode_alone
        """Decodes at temperature 0, without the previous text as prompt, without the VAD filter."""

    def around(
        self, segments: Iterator[Segment], start_s: float, end_s: float, language: str | None
    ) -> Iterator[Segment]:
        """``segments`` (of the audio from ``start_s`` to ``end_s``, decoded in ``language``) with what
        was skipped between them."""
        covered_s, previous = start_s, None
        for segment in segments:
            yield from self._recover(covered_s, segment.start, language, _neighbours(previous, segment))
            yield segment
            covered_s, previous = max(covered_s, segment.end), segment
        yield from self._recover(covered_s, end_s, language, _neighbours(previous, None))

    def _recover(self, start_s: float, end_s: float, language: str | None, neighbours: list[Word]) -> list[Segment]:
        next_region = self.speech.region_at(end_s)
        if next_region is not None and next_region[0] >= start_s:
            end_s = next_region[0]  # the speech the next segment starts in is that segment's
        if end_s - start_s < SKIPPED_SPEECH_GAP_S:
            return []
        regions = self.speech.between(start_s, end_s)
        if sum(end - start for start, end in regions) < SKIPPED_SPEECH_MIN_S:
            return []
        speech_start_s, speech_end_s = regions[0][0], regions[-1][1]
        found = [s for s in self.decode_alone(speech_start_s, speech_end_s, language) if _confident(s)]
        kept = []
        for segment in found:
            reason = stray_reason(segment, neighbours, self.speech)
            if reason is None:
                kept.append(segment)
            else:
                log_event(logger, "skipped_speech_dropped", start=segment.start, end=segment.end, reason=reason,
                          text=segment.text[:80])
        log_event(
            logger, "skipped_speech_decoded", start=speech_start_s, end=speech_end_s, segments=len(kept),
            text=" ".join(s.text for s in kept)[:80],
        )
        return kept


def _neighbours(previous: Segment | None, following: Segment | None) -> list[Word]:
    return [word for segment in (previous, following) if segment is not None for word in segment.words]


def stray_reason(fragment: Segment, neighbours: list[Word], speech: Speech) -> str | None:
    """Why a recovered ``fragment`` is not new speech (None if it is): it repeats or is a piece of the
    decoded words around it, lies inside one of them, is one short word run into their speech, or
    Whisper is unsure of its words."""
    near = [w for w in neighbours if w.end >= fragment.start - NEIGHBOUR_S and w.start <= fragment.end + NEIGHBOUR_S]
    near_words = [text for word in near for text in words_of(word.text)]
    words = words_of(fragment.text)
    if not words:
        return "no words"
    if all(any(_alike(word, other) for other in near_words) for word in words):
        return "repeats the words around it"
    previous_end_s = 0.0
    for word in near:
        onset_s = _onset(speech, word.start, previous_end_s)
        if onset_s <= fragment.start and fragment.end <= word.end:
            return f"inside the decoded word {word.text.strip()!r}"
        previous_end_s = word.end
    if len(words) == 1 and fragment.end - fragment.start < SHORT_WORD_S and not _stands_alone(fragment, near, speech):
        return "one short word run into the speech around it"
    if fragment.words and sum(w.probability for w in fragment.words) / len(fragment.words) < MIN_WORD_PROBABILITY:
        return "unsure of its words"
    return None


def _alike(word: str, other: str) -> bool:
    """The same word, or a piece of it: inside it, or its beginning heard a little differently
    ("more" of "morning": three of four letters shared from the start)."""
    if word == other or (len(word) >= 2 and word in other):
        return True
    shared = len(os.path.commonprefix([word, other]))
    if shared >= 3 and shared >= PIECE_SHARE * len(word):
        return True
    return SequenceMatcher(None, word, other).ratio() >= ALIKE_RATIO


def _stands_alone(fragment: Segment, near: list[Word], speech: Speech) -> bool:
    """A pause (``vad.PAUSE_S`` of silence) between the fragment's speech and the decoded words on
    either side. Its speech starts at the first speech frame from its start: Whisper's times for so
    short a fragment are often in the silence before it ("More." at 6.70 s, the speech at 6.82 s)."""
    onset_s = speech.speech_onset(fragment.start, fragment.end + NEIGHBOUR_S)
    if onset_s is None:
        return False
    before = [w.start for w in near if w.start < onset_s and w.end <= fragment.end]
    after = [w.end for w in near if w.start >= fragment.end]
    return speech.has_pause(max(before, default=onset_s - NEIGHBOUR_S), onset_s) and speech.has_pause(
        onset_s, min(after, default=fragment.end + NEIGHBOUR_S)
    )


def _confident(segment: Segment) -> bool:
    """Decoded at temperature 0 with a log-probability above the threshold, and not looping."""
    return (
        bool(segment.text) and segment.avg_logprob >= LOG_PROB_THRESHOLD
        and segment.compression_ratio <= MAX_COMPRESSION_RATIO and find_loop(words_of(segment.text)) is None
    )
