"""Topics (chapters) of a meeting: lexical segmentation, a keyword title and central key points.

Segmentation is TextTiling's idea: compare the words of the stretch before each turn boundary with
those of the stretch after it, and cut where the two share least, keeping cuts apart by at least
``min_topic_words``. The number of topics follows the meeting's length (``words_per_topic``). The sizes were
tuned on QMSum train (Pk 0.352 against 0.366 for one topic; 0.383 with 1200 words a topic, 250 a window).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isoscribe.summary.extractive import OverviewSettings, attributed, candidates_of, choose_sentences, tfidf
from isoscribe.summary.text import STOPWORDS, SpeakerSentence, clean_disfluencies, content_words, stem, words_of
from isoscribe.summary.types import SummarySentence, SummaryTurn, TimeRange, Topic

__all__ = ["TopicSettings", "topic_starts", "topics_of"]


@dataclass(frozen=True)
class TopicSettings:
    words_per_topic: int = 2500
    max_topics: int = 8
    window_words: int = 500
    min_topic_words: int = 300
    title_words: int = 3
    key_points: int = 2


def topic_starts(turns: list[SummaryTurn], settings: TopicSettings) -> list[int]:
    """Index of the first turn of each topic; the first is always 0."""
    lengths = np.array([len(turn.text.split()) for turn in turns])
    total = int(lengths.sum())
    wanted = min(settings.max_topics, max(1, round(total / settings.words_per_topic)))
    if wanted == 1 or len(turns) < 4:
        return [0]
    try:
        vectors = tfidf([turn.text for turn in turns])
    except ValueError:
        return [0]
    ends = np.cumsum(lengths)
    scores = np.full(len(turns), np.inf)
    for index in range(1, len(turns)):
        before = _window(vectors, ends, lengths, index, -1, settings.window_words)
        after = _window(vectors, ends, lengths, index, 1, settings.window_words)
        scores[index] = float(before @ after) / ((np.linalg.norm(before) * np.linalg.norm(after)) or 1.0)
    starts = [0]
    for index in np.argsort(scores, kind="stable"):
        if len(starts) == wanted or not np.isfinite(scores[index]):
            break
        position = ends[index] - lengths[index]
        if all(abs(position - (ends[s] - lengths[s])) >= settings.min_topic_words for s in starts) and (
            total - position >= settings.min_topic_words
        ):
            starts.append(int(index))
    return sorted(starts)


def _window(vectors, ends, lengths, index: int, direction: int, words: int) -> np.ndarray:
    """Sum of the turn vectors of up to ``words`` words before (direction -1) or from (1) turn ``index``."""
    start_word = ends[index] - lengths[index]
    if direction < 0:
        chosen = [i for i in range(index) if start_word - ends[i] < words]
    else:
        chosen = [i for i in range(index, len(ends)) if ends[i] - lengths[i] - start_word < words]
    return np.asarray(vectors[chosen].sum(axis=0)).ravel()


def topics_of(
    turns: list[SummaryTurn], sentences: list[SpeakerSentence], settings: TopicSettings = TopicSettings()
) -> list[Topic]:
    if not turns:
        return []
    starts = topic_starts(turns, settings)
    bounds = list(zip(starts, [*starts[1:], len(turns)]))
    document_words = [set(content_words(turn.text)) for turn in turns]
    topics = []
    for first, last in bounds:
        topic_sentences = [s for s in sentences if first <= s.turn < last]
        topics.append(
            Topic(
                start=turns[first].start,
                end=turns[last - 1].end,
                title=_title(turns[first:last], document_words, settings.title_words),
                key_points=_key_points(topic_sentences, settings.key_points),
            )
        )
    return topics


def _title(turns: list[SummaryTurn], document_words: list[set[str]], count: int) -> str:
    """The words this stretch says most that the rest of the meeting says least (by turn frequency)."""
    surface: dict[str, str] = {}
    counts: dict[str, int] = {}
    for turn in turns:
        for word in words_of(clean_disfluencies(turn.text)):
            key = stem(word)
            if word.lower() in STOPWORDS or len(word) < 4 or not word.isalpha():
                continue
            counts[key] = counts.get(key, 0) + 1
            surface.setdefault(key, word.lower())
    spread = {key: sum(key in words for words in document_words) for key in counts}
    total_turns = len(document_words)
    score = {key: counts[key] * np.log((1 + total_turns) / (1 + spread[key])) for key in counts if counts[key] > 1}
    best = sorted(score, key=lambda key: -score[key])[:count]
    title = ", ".join(surface[key] for key in best)
    return title[:1].upper() + title[1:] if title else "Discussion"


def _key_points(sentences: list[SpeakerSentence], count: int) -> list[SummarySentence]:
    settings = OverviewSettings(max_sentences=count, min_sentences=1, target_words=60)
    chosen = choose_sentences(candidates_of(sentences, settings), settings)[:count]
    return [
        SummarySentence(attributed(c), True, [TimeRange(c.sentence.start, c.sentence.end)]) for c in chosen
    ]
