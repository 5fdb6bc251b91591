"""An edited segment list made into the next revision of a transcript.

The editor (the web page) sends the whole list after any edit: text changed, segments merged, split,
moved to another speaker or deleted. Word timings are recomputed from the previous revision: inside
each segment's time span, its words are aligned with the previous words there (difflib); a word whose
text is unchanged keeps its timing and probability, a changed or new one gets a time interpolated
between its neighbours (by length in characters). Segments are sorted by time, an overlap is cut at the
next segment's start so that times never go back, and ids are renumbered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from difflib import SequenceMatcher

from isoscribe.transcript import Segment, SpeakerTurn, Transcript, Word

__all__ = ["EditedWord", "EditedSegment", "EditError", "apply_edit"]

_EDITED_PROBABILITY = 1.0
"""A word a person typed is as sure as a word can be."""
_PAST_THE_END_S = 1.0
"""How far past the audio's end an edited time may reach (decoders disagree on the last frame)."""


@dataclass(frozen=True)
class EditedWord:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class EditedSegment:
    start: float
    end: float
    text: str
    speaker: str | None = None
    language: str | None = None
    """None: the language of the previous segment at this time."""
    words: tuple[EditedWord, ...] | None = None
    """Word timings the editor already knows; used when they spell the segment's text, else recomputed."""


class EditError(ValueError):
    """An edit that cannot be a transcript; ``field`` names the offending part of the request."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def apply_edit(previous: Transcript, edited: list[EditedSegment]) -> Transcript:
    """The transcript ``edited`` describes, with words reconciled against ``previous``."""
    _check(edited, previous.duration_s + _PAST_THE_END_S if previous.duration_s > 0 else math.inf)
    spans = _monotonic_spans(sorted(edited, key=lambda s: (s.start, s.end)))
    old_words = sorted((w for s in previous.segments for w in s.words), key=lambda w: (w.start, w.end))
    segments = [_segment(index, segment, start, end, previous, old_words) for index, (segment, start, end) in enumerate(spans)]
    speakers_moved = any(s.speaker != _previous_at(previous, s.start, s.end).speaker for s in segments)
    speakers = list(dict.fromkeys(s.speaker for s in segments if s.speaker))
    return replace(
        previous,
        segments=segments,
        speakers=[*[k for k in previous.speakers if k in speakers], *[k for k in speakers if k not in previous.speakers]],
        speaker_turns=_turns(segments) if speakers_moved else list(previous.speaker_turns),
        languages=list(dict.fromkeys(s.language for s in segments if s.language)) or list(previous.languages),
    )


def _check(edited: list[EditedSegment], latest_s: float) -> None:
    if not edited:
        raise EditError("segments", "the list is empty (a transcript keeps at least one segment)")
    for index, segment in enumerate(edited):
        where = f"segments[{index}]"
        for name in ("start", "end"):
            value = getattr(segment, name)
            if not math.isfinite(value) or not 0 <= value <= latest_s:
                raise EditError(f"{where}.{name}", f"must be a time in seconds from 0 to {latest_s:g}, not {value}")
        if segment.start > segment.end:
            raise EditError(f"{where}.start", f"start {segment.start} is after end {segment.end}")
        if not segment.text.strip():
            raise EditError(f"{where}.text", "is blank (leave a segment out of the list to delete it)")
        _check_words(where, segment)


def _check_words(where: str, segment: EditedSegment) -> None:
    last_end = segment.start
    for index, word in enumerate(segment.words or ()):
        if not (math.isfinite(word.start) and math.isfinite(word.end)):
            raise EditError(f"{where}.words[{index}].start", "word times must be finite")
        if word.start < last_end - 1e-3 or word.end < word.start or word.end > segment.end + 1e-3:
            raise EditError(
                f"{where}.words[{index}].start",
                f"word times are not monotonic inside the segment ({word.start}-{word.end} after {last_end})",
            )
        last_end = word.end


def _monotonic_spans(ordered: list[EditedSegment]) -> list[tuple[EditedSegment, float, float]]:
    """Each segment's (start, end), the end cut back to the next segment's start where they overlap."""
    spans = []
    for index, segment in enumerate(ordered):
        end = segment.end
        if index + 1 < len(ordered):
            end = max(segment.start, min(end, ordered[index + 1].start))
        spans.append((segment, segment.start, end))
    return spans


def _segment(
    index: int, edited: EditedSegment, start: float, end: float, previous: Transcript, old_words: list[Word]
) -> Segment:
    tokens = edited.text.split()
    template = _previous_at(previous, start, end)
    inside = [w for w in old_words if start <= (w.start + w.end) / 2 <= end]
    if edited.words is not None and [w.text.strip() for w in edited.words] == tokens:
        words = _as_sent(edited.words, inside, edited.speaker)
    else:
        words = _reconciled(tokens, inside, start, end, edited.speaker)
    return Segment(
        id=index,
        start=start,
        end=end,
        text=" " + " ".join(tokens),
        words=_monotonic(words, start, end),
        speaker=edited.speaker,
        avg_logprob=template.avg_logprob,
        no_speech_prob=template.no_speech_prob,
        compression_ratio=template.compression_ratio,
        temperature=template.temperature,
        language=edited.language or template.language,
    )


def _as_sent(sent: tuple[EditedWord, ...], old: list[Word], speaker: str | None) -> list[Word]:
    """The editor's word timings; a word it sent back as it was keeps its probability."""
    known = {(round(w.start, 3), round(w.end, 3), w.text.strip()): w.probability for w in old}
    return [
        Word(w.start, w.end, f" {w.text.strip()}",
             known.get((round(w.start, 3), round(w.end, 3), w.text.strip()), _EDITED_PROBABILITY), speaker)
        for w in sent
    ]


def _reconciled(tokens: list[str], old: list[Word], start: float, end: float, speaker: str | None) -> list[Word | None]:
    """Unchanged words keep their old timing; the others are None until interpolated."""
    matched: list[Word | None] = [None] * len(tokens)
    matcher = SequenceMatcher(None, [w.text.strip() for w in old], tokens, autojunk=False)
    for tag, old_from, old_to, new_from, _ in matcher.get_opcodes():
        if tag == "equal":
            for offset in range(old_to - old_from):
                word = old[old_from + offset]
                matched[new_from + offset] = Word(word.start, word.end, f" {tokens[new_from + offset]}", word.probability, speaker)
    return _interpolated(matched, tokens, start, end, speaker)


def _interpolated(matched: list[Word | None], tokens: list[str], start: float, end: float, speaker: str | None) -> list[Word]:
    """Runs of unmatched words share the time between the matched words around them, by length."""
    words: list[Word] = []
    index = 0
    while index < len(tokens):
        if matched[index] is not None:
            words.append(matched[index])
            index += 1
            continue
        run_end = index
        while run_end < len(tokens) and matched[run_end] is None:
            run_end += 1
        left = words[-1].end if words else start
        right = matched[run_end].start if run_end < len(tokens) else end
        right = max(left, right)
        run = tokens[index:run_end]
        total = sum(len(token) for token in run)
        moment = left
        for token in run:
            step = (right - left) * len(token) / total
            words.append(Word(round(moment, 3), round(moment + step, 3), f" {token}", _EDITED_PROBABILITY, speaker))
            moment += step
        index = run_end
    return words


def _monotonic(words: list[Word], start: float, end: float) -> list[Word]:
    """Word times inside the segment and never going back."""
    last = start
    for word in words:
        word.start = min(max(word.start, last), end)
        word.end = min(max(word.end, word.start), end)
        last = word.end
    return words


def _previous_at(previous: Transcript, start: float, end: float) -> Segment:
    """The previous segment overlapping [start, end] most (the nearest when none does)."""
    if not previous.segments:
        return Segment(0, start, end, "")

    def overlap(segment: Segment) -> float:
        return min(end, segment.end) - max(start, segment.start)

    return max(previous.segments, key=overlap)


def _turns(segments: list[Segment]) -> list[SpeakerTurn]:
    """Speaker turns from the segments, neighbours of one speaker joined."""
    turns: list[SpeakerTurn] = []
    for segment in segments:
        if not segment.speaker:
            continue
        if turns and turns[-1].speaker == segment.speaker:
            turns[-1].end = max(turns[-1].end, segment.end)
        else:
            turns.append(SpeakerTurn(segment.start, segment.end, segment.speaker))
    return turns
