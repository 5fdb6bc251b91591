"""The extractive overview: the transcript's most central sentences, cleaned and attributed.

Sentences are TF-IDF vectors over the meeting's cleaned sentences; each is scored by its cosine
similarity to the whole meeting (centrality) and chosen greedily with maximal marginal relevance,
so that a second sentence saying what a first one said loses to one that covers more of the
meeting. The chosen ones are printed in the order they were said, each with its speaker.
Parameters were tuned on QMSum train and are measured on QMSum val (``isoscribe bench summary``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from isoscribe.summary.text import SENTENCE_ENDS, SpeakerSentence, at_most_words, clean_disfluencies, is_question

__all__ = ["OverviewSettings", "Candidate", "candidates_of", "choose_sentences", "attributed", "tfidf"]


@dataclass(frozen=True)
class OverviewSettings:
    min_words: int = 15
    max_words: int = 50
    target_words: int = 200
    max_sentences: int = 6
    min_sentences: int = 3
    redundancy_weight: float = 1.0


@dataclass(frozen=True)
class Candidate:
    sentence: SpeakerSentence
    text: str
    """The sentence cleaned of fillers, stutters and repeats."""

    @property
    def words(self) -> int:
        return len(self.text.split())


def candidates_of(sentences: list[SpeakerSentence], settings: OverviewSettings) -> list[Candidate]:
    """Statements of a useful length; in a meeting too short to have enough, its longest statements."""
    cleaned = [Candidate(sentence, clean_disfluencies(sentence.text)) for sentence in sentences]
    cleaned = [candidate for candidate in cleaned if candidate.words and not is_question(candidate.text)]
    fitting = [c for c in cleaned if settings.min_words <= c.words <= settings.max_words]
    if len(fitting) >= settings.min_sentences:
        return fitting
    longest = sorted(cleaned, key=lambda candidate: -candidate.words)[: settings.min_sentences]
    chosen = [candidate for candidate in cleaned if candidate in longest]
    if not chosen:  # nothing but fillers: said as it was, rather than an empty "Speaker: ."
        chosen = [Candidate(sentence, sentence.text.strip()) for sentence in sentences[:1] if sentence.text.strip()]
    return [replace(candidate, text=at_most_words(candidate.text, settings.max_words)) for candidate in chosen]


def tfidf(texts: list[str]):
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True, token_pattern=r"(?u)\b[a-zA-Z]{3,}\b")
    return vectorizer.fit_transform(texts)


def choose_sentences(candidates: list[Candidate], settings: OverviewSettings) -> list[Candidate]:
    """Central sentences, none repeating another, up to the word target; in the order they were said."""
    if len(candidates) <= settings.min_sentences:
        return candidates
    try:
        vectors = tfidf([candidate.text for candidate in candidates])
    except ValueError:  # no word survives the stopword list
        return candidates[: settings.min_sentences]
    centroid = np.asarray(vectors.sum(axis=0)).ravel()
    centroid /= np.linalg.norm(centroid) or 1.0
    centrality = vectors @ centroid
    similarity = (vectors @ vectors.T).toarray()
    texts = [candidate.text.lower() for candidate in candidates]
    chosen: list[int] = []
    used_words = 0
    while len(chosen) < settings.max_sentences:
        redundancy = similarity[:, chosen].max(axis=1) if chosen else np.zeros(len(candidates))
        score = centrality - settings.redundancy_weight * redundancy
        said = {texts[index] for index in chosen}
        score[[index for index, text in enumerate(texts) if text in said]] = -np.inf  # chosen, or in its words
        best = int(np.argmax(score))
        if score[best] == -np.inf:  # every candidate chosen or said already
            break
        if len(chosen) >= settings.min_sentences and used_words + candidates[best].words > settings.target_words:
            break
        chosen.append(best)
        used_words += candidates[best].words
    return [candidates[index] for index in sorted(chosen)]


def attributed(candidate: Candidate) -> str:
    """ "Speaker: sentence." (the colon form scored best on QMSum train, and reads as a quotation)."""
    text = candidate.text.rstrip(",;:- ")
    text = text if text.endswith(SENTENCE_ENDS) else text + "."
    return f"{candidate.sentence.speaker}: {text}" if candidate.sentence.speaker else text
