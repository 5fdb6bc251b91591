"""QMSum meetings (shared/data/qmsum) as the summary reads them, with their human references.

Text only: a turn is timed as if spoken at ``SECONDS_PER_WORD``, so topic spans given as turn
indices become times. ROUGE-N here is the usual F1 over lower-cased word n-grams, words reduced by
``isoscribe.summary.text.stem`` (close to, not the same as, the Porter stemmer of the rouge-score package).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from isoscribe.summary.text import stem, words_of
from isoscribe.summary.types import SummaryTurn

__all__ = ["Meeting", "SECONDS_PER_WORD", "load_meetings", "rouge_n"]

SECONDS_PER_WORD = 0.4
"""150 words a minute: a common speaking rate."""


@dataclass(frozen=True)
class Meeting:
    name: str
    split: str
    turns: tuple[SummaryTurn, ...]
    human_summary: str
    topic_starts: tuple[int, ...]
    """Index of the first turn of each human topic span, in order."""

    @property
    def words(self) -> int:
        return sum(len(turn.text.split()) for turn in self.turns)


def load_meetings(folder: Path, split: str) -> list[Meeting]:
    return [_meeting(path, split) for path in sorted((folder / split).glob("*.json"))]


def _meeting(path: Path, split: str) -> Meeting:
    data = json.loads(path.read_text())
    turns: list[SummaryTurn] = []
    clock = 0.0
    for line in data["meeting_transcripts"]:
        duration = max(1, len(line["content"].split())) * SECONDS_PER_WORD
        turns.append(SummaryTurn(line["speaker"], round(clock, 2), round(clock + duration, 2), line["content"]))
        clock += duration
    # Nearly every meeting asks "Summarize the whole meeting."; a few word it otherwise: the first query is it.
    answer = data["general_query_list"][0]["answer"]
    starts = sorted(
        {int(span[0]) for topic in data.get("topic_list", []) for span in topic["relevant_text_span"] if span}
    )
    return Meeting(path.stem, split, tuple(turns), answer, tuple(starts))


def rouge_n(candidate: str, reference: str, n: int) -> float:
    grams = [Counter(_ngrams(text, n)) for text in (candidate, reference)]
    overlap = sum((grams[0] & grams[1]).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(grams[0].values()), overlap / sum(grams[1].values())
    return 2 * precision * recall / (precision + recall)


def _ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    tokens = [stem(word) for word in words_of(text.lower())]
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
