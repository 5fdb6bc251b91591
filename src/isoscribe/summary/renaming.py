"""Renaming speakers: a diarization label ("SPEAKER_00") becomes a name everywhere it appears.

Every writer in ``outputs`` reads the speaker from the transcript and the summary, so renaming there
once renames it in every format. Free text (the summary, a task, a decision) is rewritten too, as the
summarizer writes labels into it; names are swapped in one pass, so {"A": "B", "B": "A"} swaps them.
"""

from __future__ import annotations

import re

from isoscribe.summary.types import SourceSpan, Summary, SummarySentence
from isoscribe.transcript import Transcript

__all__ = ["rename_speakers", "rename_summary_speakers"]


def rename_speakers(transcript: Transcript, names: dict[str, str]) -> Transcript:
    """Rename in place: words, segments, turns and the speaker list (two labels given one name merge)."""
    for segment in transcript.segments:
        segment.speaker = _renamed(segment.speaker, names)
        for word in segment.words:
            word.speaker = _renamed(word.speaker, names)
    for turn in transcript.speaker_turns:
        turn.speaker = names.get(turn.speaker, turn.speaker)
    transcript.speakers = list(dict.fromkeys(names.get(s, s) for s in transcript.speakers))
    return transcript


def rename_summary_speakers(summary: Summary, names: dict[str, str]) -> Summary:
    """Rename in place: owners, the speakers of source spans, and labels written in the text."""
    pattern = _label_pattern(names)
    summary.overview = _rewrite(summary.overview, pattern, names)
    for sentence in [*summary.sentences, *(point for topic in summary.topics for point in topic.key_points)]:
        _rewrite_sentence(sentence, pattern, names)
    for question in summary.open_questions:
        _rename_source(question.source, names)
    for item in summary.action_items:
        item.owner = _renamed(item.owner, names)
        item.task = _rewrite(item.task, pattern, names)
        _rename_source(item.source, names)
    for decision in summary.decisions:
        decision.text = _rewrite(decision.text, pattern, names)
        _rename_source(decision.source, names)
    return summary


def _rewrite_sentence(sentence: SummarySentence, pattern: re.Pattern[str] | None, names: dict[str, str]) -> None:
    sentence.text = _rewrite(sentence.text, pattern, names)


def _renamed(speaker: str | None, names: dict[str, str]) -> str | None:
    return names.get(speaker, speaker) if speaker is not None else None


def _rename_source(source: SourceSpan, names: dict[str, str]) -> None:
    source.speaker = _renamed(source.speaker, names)


def _label_pattern(names: dict[str, str]) -> re.Pattern[str] | None:
    if not names:
        return None
    # Longest first, so that SPEAKER_10 is not read as SPEAKER_1 followed by a 0.
    alternatives = "|".join(re.escape(label) for label in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def _rewrite(text: str, pattern: re.Pattern[str] | None, names: dict[str, str]) -> str:
    return pattern.sub(lambda match: names[match.group(0)], text) if pattern is not None else text
