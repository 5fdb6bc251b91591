"""Repetition loops in decoded text: a phrase repeated until the window ends, or text that compresses
like one. Pure functions over words; the transcription stage decides what to re-decode or drop."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

__all__ = ["Loop", "find_loop", "compression_ratio", "words_of", "MAX_COMPRESSION_RATIO", "LOG_PROB_THRESHOLD"]

MAX_COMPRESSION_RATIO = 2.4
"""faster-whisper's ``compression_ratio_threshold``: above it, text repeats itself."""
LOG_PROB_THRESHOLD = -1.0
"""faster-whisper's ``log_prob_threshold``: below it, a segment is decoded again (or not kept)."""
MAX_PERIOD = 16
"""Longest repeated phrase looked for, in words."""
MIN_LOOP_WORDS = 8
"""A loop covers at least this many words: "words words words words" (4) is speech, 8 is not."""


@dataclass(frozen=True)
class Loop:
    start: int
    """Index of the first word of the repeated run."""
    period: int
    """Words in the repeated phrase."""
    length: int
    """Words in the whole run, the partial last copy included."""

    @property
    def repeats_from(self) -> int:
        """Index of the first word after the first copy: what follows it only repeats."""
        return self.start + self.period


def words_of(text: str) -> list[str]:
    """Lower-case words without punctuation, for comparing phrases."""
    return [w for w in (re.sub(r"[^\w']", "", token.lower()) for token in text.split()) if w]


def find_loop(words: list[str]) -> Loop | None:
    """The first run in which a phrase of 1..``MAX_PERIOD`` words repeats like a decoding loop.

    A run is a loop when the phrase comes three times and the run has ``MIN_LOOP_WORDS`` words or
    more, or when a phrase of five words or more comes twice in a run of twelve or more: people repeat
    a word or a short phrase ("thank you, thank you"), they rarely repeat a clause verbatim.
    """
    for period in range(1, min(MAX_PERIOD, len(words) // 2) + 1):
        matched = 0
        for index in range(period, len(words)):
            matched = matched + 1 if words[index] == words[index - period] else 0
            length = matched + period
            copies = length / period
            if (copies >= 3 and length >= MIN_LOOP_WORDS) or (period >= 5 and copies >= 2 and length >= 12):
                start = index - length + 1
                while index + 1 < len(words) and words[index + 1] == words[index + 1 - period]:
                    index += 1
                return Loop(start, period, index - start + 1)
    return None


def compression_ratio(text: str) -> float:
    """Whisper's measure: UTF-8 length over zlib-compressed length (high for repeated text)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0
