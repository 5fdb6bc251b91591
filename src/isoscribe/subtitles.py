"""Subtitle cues laid out from word timestamps: readable lines, one speaker a cue.

A Whisper segment can hold a paragraph and last 30 s; a cue should hold what a viewer reads at a
glance. Cues are cut at word boundaries, preferring a sentence end, then a pause, then whatever the
length limits leave; a speaker change always starts a new cue. Defaults follow broadcast guidelines
(two lines of 42 characters, at most 7 s and 20 characters per second, shown at least 0.8 s).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from isoscribe.speakers import speaker_runs
from isoscribe.transcript import Segment, Transcript, Word

__all__ = ["SubtitleLayout", "Cue", "layout_cues", "wrap_lines"]

_SENTENCE_ENDS = (".", "?", "!", "…")
_CLAUSE_ENDS = (",", ";", ":", "—")
_PAUSE_S = 0.3
"""A gap between words at least this long is a natural place to cut a cue."""
_SENTENCE_BREAK_PAUSE_S = 0.5
"""A sentence end followed by this much silence always ends the cue."""
_MAX_LAG_S = 3.0
"""How far a cue may start after its first word, waiting for the one before to have its reading time."""
_MIN_SHOWN_S = 0.1
_MIN_HEAD_SHARE = 0.4
"""A preferred cut must leave the cue at least this share of its characters, so no orphan word is shown alone."""


@dataclass(frozen=True)
class SubtitleLayout:
    max_line_width: int = 42
    max_line_count: int = 2
    max_cue_duration_s: float = 7.0
    max_chars_per_s: float = 20.0
    min_cue_duration_s: float = 0.8
    highlight_words: bool = False


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None
    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)


def layout_cues(transcript: Transcript, layout: SubtitleLayout = SubtitleLayout()) -> list[Cue]:
    """The transcript's cues in time order; ``cue.lines`` wrapped to the layout's width and count.

    A cue is shown from its first word until it has had its reading time (``min_cue_duration_s``, and
    ``max_chars_per_s``), never overlapping the next: where speech is faster than that, the next cue
    waits, but never more than ``_MAX_LAG_S`` behind its first word; past that the reading time gives
    way, so narrow cues on fast speech stay in time instead of falling further behind with every cue.
    No cue is shown past the end of the audio (``transcript.duration_s``), whatever its reading time.
    """
    groups: list[list[Word]] = []
    for segment in transcript.segments:
        groups.extend(_cut(speaker_runs(_timed_words(segment)), layout))
    cues: list[Cue] = []
    for index, group in enumerate(groups):
        start = max(group[0].start, cues[-1].end if cues else 0.0)
        latest_end = groups[index + 1][0].start + _MAX_LAG_S if index + 1 < len(groups) else None
        cues.append(_cue(group, start, layout, latest_end))
    return _inside_audio(cues, transcript.duration_s)


def wrap_lines(words: list[str], width: int, count: int, first_indent: int = 0) -> tuple[str, ...] | None:
    """``words`` in the fewest lines (at most ``count``) of at most ``width`` characters, balanced; None if they do not fit.

    ``first_indent`` reserves room on the first line for a speaker label. A word wider than a line gets a
    line of its own: a word is never split.
    """
    if not words:
        return ()
    fitting = [
        lines for lines in _splits(words, count)
        if all(_line_fits(line, width - (first_indent if i == 0 else 0)) for i, line in enumerate(lines))
    ]
    return min(fitting, key=lambda lines: (len(lines), _widest(lines, first_indent)), default=None)


def _splits(words: list[str], count: int):
    """Every way to cut ``words`` into 1..count consecutive lines."""
    yield (" ".join(words),)
    if count == 1:
        return
    for cut in range(1, len(words)):
        head = " ".join(words[:cut])
        for tail in _splits(words[cut:], count - 1):
            yield (head, *tail)


def _line_fits(line: str, width: int) -> bool:
    return len(line) <= width or " " not in line


def _widest(lines: tuple[str, ...], first_indent: int) -> int:
    return max(len(line) + (first_indent if i == 0 else 0) for i, line in enumerate(lines))


def _timed_words(segment: Segment) -> list[Word]:
    """The segment's words with their times; without word timestamps, times spread over the segment by length."""
    words = [word for word in segment.words if word.text.strip()]
    if words and not _same_text(words, segment.text):
        words = _glued(words)
    if words and _same_text(words, segment.text):
        return [Word(w.start, w.end, w.text.strip(), w.probability, w.speaker or segment.speaker) for w in words]
    tokens = segment.text.split()
    total_chars = sum(len(token) + 1 for token in tokens) or 1
    span_s = max(segment.end - segment.start, 0.0)
    timed, clock = [], segment.start
    for token in tokens:
        duration = span_s * (len(token) + 1) / total_chars
        timed.append(Word(clock, clock + duration, token, 1.0, segment.speaker))
        clock += duration
    return timed


def _glued(words: list[Word]) -> list[Word]:
    """Whisper's words as the text spells them: a piece without a leading space ("10" then "%") joins the word
    before it, so that a segment saying "10%" keeps its word times and speakers."""
    glued = [words[0]]
    for word in words[1:]:
        if word.text[:1].isspace():
            glued.append(word)
        else:
            last = glued[-1]
            glued[-1] = Word(last.start, word.end, last.text + word.text, min(last.probability, word.probability), last.speaker)
    return glued


def _same_text(words: list[Word], text: str) -> bool:
    return " ".join(w.text.strip() for w in words).split() == text.split()


def _cut(runs: list[list[Word]], layout: SubtitleLayout) -> list[list[Word]]:
    groups: list[list[Word]] = []
    for run in runs:
        current: list[Word] = []
        for index, word in enumerate(run):
            while current and not _fits([*current, word], layout):
                head, current = _split_at_best(current)
                groups.append(head)
            current.append(word)
            following = run[index + 1] if index + 1 < len(run) else None
            if following and _ends_sentence(word) and following.start - word.end >= _SENTENCE_BREAK_PAUSE_S:
                groups.append(current)
                current = []
        if current:
            groups.append(current)
    return groups


def _fits(words: list[Word], layout: SubtitleLayout) -> bool:
    if words[-1].end - words[0].start > layout.max_cue_duration_s:
        return False
    lines = wrap_lines([w.text for w in words], layout.max_line_width, layout.max_line_count, _label_width(words[0]))
    return lines is not None


def _split_at_best(words: list[Word]) -> tuple[list[Word], list[Word]]:
    """Cut a full cue where reading breaks best: after a sentence end, else at a clause or pause, else at the end."""
    total = sum(len(w.text) + 1 for w in words)
    best_cut, best_rank = len(words), 0
    head_chars = 0
    for index, word in enumerate(words[:-1]):
        head_chars += len(word.text) + 1
        if head_chars < _MIN_HEAD_SHARE * total:
            continue
        rank = _break_rank(word, words[index + 1])
        if rank and rank >= best_rank:
            best_cut, best_rank = index + 1, rank
    return words[:best_cut], words[best_cut:]


def _break_rank(word: Word, following: Word) -> int:
    if _ends_sentence(word):
        return 3
    if word.text.endswith(_CLAUSE_ENDS) or following.start - word.end >= _PAUSE_S:
        return 2
    return 0


def _ends_sentence(word: Word) -> bool:
    return word.text.rstrip("\"')»”").endswith(_SENTENCE_ENDS)


def _label_width(word: Word) -> int:
    return len(f"[{word.speaker}] ") if word.speaker else 0


def _cue(words: list[Word], start: float, layout: SubtitleLayout, latest_end: float | None) -> Cue:
    chars = sum(len(w.text) + 1 for w in words) - 1
    reading_s = max(layout.min_cue_duration_s, chars / layout.max_chars_per_s)
    end = min(max(words[-1].end, start + reading_s), start + layout.max_cue_duration_s)
    if latest_end is not None:
        end = max(min(end, latest_end), start + _MIN_SHOWN_S)
    lines = wrap_lines([w.text for w in words], layout.max_line_width, layout.max_line_count, _label_width(words[0]))
    return Cue(start, end, lines or (" ".join(w.text for w in words),), words[0].speaker, tuple(words))


def _inside_audio(cues: list[Cue], audio_end_s: float) -> list[Cue]:
    """The last cues pulled back to end with the audio: each that runs past the end (or into the next one,
    pulled back in turn) ends there and starts no later than ``_MIN_SHOWN_S`` before, nor before its first word
    when it can help it. A duration of 0 is unknown: nothing is moved."""
    limit = audio_end_s
    if limit <= 0:
        return cues
    for index in reversed(range(len(cues))):
        cue = cues[index]
        if cue.end <= limit:
            break
        start = min(cue.start, max(cue.words[0].start, limit - _MIN_SHOWN_S))
        start = min(start, limit - 0.001)  # a cue lasts, even one whose first word starts at the limit
        cues[index] = replace(cue, start=start, end=limit)
        limit = start
    return cues
