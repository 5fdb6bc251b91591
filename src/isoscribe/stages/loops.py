"""Repetition loops: a segment that repeats a phrase, compresses like repeated text or decodes with a
low log-probability is decoded again on its own, without the previous text as prompt and with the
temperature fallback; what still loops is cut off, with a warning in ``Transcript.warnings``."""

from __future__ import annotations

import logging

from isoscribe.logs import log_event
from isoscribe.repetition import LOG_PROB_THRESHOLD, MAX_COMPRESSION_RATIO, compression_ratio, find_loop, words_of
from isoscribe.stages.recovery import DecodeAlone
from isoscribe.transcript import Segment

__all__ = ["LoopGuard", "truncate", "REPEATED_SEGMENT_WORDS"]

logger = logging.getLogger("isoscribe.transcribe")

REPEATED_SEGMENT_WORDS = 6
"""A segment of this many words or more that repeats the one before it is decoded again on its own."""



class LoopGuard:
    """Checks each segment as it arrives; re-decodes suspicious ones and cuts what still loops."""

    def __init__(self, decode_alone: DecodeAlone) -> None:
        self.decode_alone = decode_alone
        """Decodes a stretch on its own: no previous text as prompt, the temperature fallback."""
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
        """The segment's audio decoded alone."""
        if segment.end - segment.start < 0.1:
            return []
        return self.decode_alone(segment.start, segment.end, segment.language)

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
        return truncate(segment, loop.repeats_from)

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


def truncate(segment: Segment, keep_words: int) -> Segment | None:
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
