"""The digest of a meeting: overview, topics, decisions, action items and open questions, with evidence.

``build_digest`` is what every path prints. Given the model's overview it grounds each sentence
(an unsupported one stays in ``sentences`` with its reason, out of the prose); given none, or
none that the transcript supports, the overview is extractive. It needs no model, so the parent
builds it too when the summary worker failed: the digest is never empty for a non-empty transcript.
"""

from __future__ import annotations

from isoscribe.summary.extraction import extract_action_items, extract_decisions, extract_open_questions
from isoscribe.summary.extractive import OverviewSettings, attributed, candidates_of, choose_sentences
from isoscribe.summary.grounding import TranscriptIndex, check_sentence
from isoscribe.summary.text import SpeakerSentence, has_words, speaker_sentences, split_sentences
from isoscribe.summary.topics import topics_of
from isoscribe.summary.types import Summary, SummarySentence, SummaryTurn, TimeRange

__all__ = ["build_digest", "extractive_overview", "MAX_OVERVIEW_SENTENCES"]

MAX_OVERVIEW_SENTENCES = 6
EMPTY_WARNING = "no words in the transcript: nothing to summarize"


def build_digest(
    turns: list[SummaryTurn], model_overview: str | None = None, model: str = "", warnings: list[str] | None = None
) -> Summary:
    warnings = list(warnings or [])
    sentences = speaker_sentences(turns)
    if not any(has_words(sentence.text) for sentence in sentences):  # "[Music]": an overview "\[Music\]." says nothing
        return Summary.empty(EMPTY_WARNING)
    checked = _grounded(model_overview, sentences) if model_overview else []
    supported = [sentence for sentence in checked if sentence.supported]
    kind = "abstractive"
    if not supported:
        if model_overview is not None and not model_overview.strip():
            warnings.append("the model wrote no overview: overview is extractive")
        elif model_overview is not None:
            warnings.append("no sentence of the model's overview is supported by the transcript: overview is extractive")
        checked += extractive_overview(sentences)
        supported, kind = [s for s in checked if s.supported], "extractive"
    return Summary(
        overview=" ".join(sentence.text for sentence in supported),
        action_items=extract_action_items(sentences),
        decisions=extract_decisions(sentences),
        sentences=checked,
        topics=topics_of(turns, sentences),
        open_questions=extract_open_questions(sentences),
        model=model,
        overview_kind=kind,
        warnings=warnings,
    )


def extractive_overview(sentences: list[SpeakerSentence]) -> list[SummarySentence]:
    """Central transcript sentences, cleaned and attributed: supported by their own time range."""
    settings = OverviewSettings()
    chosen = choose_sentences(candidates_of(sentences, settings), settings)
    return [SummarySentence(attributed(c), True, [TimeRange(c.sentence.start, c.sentence.end)]) for c in chosen]


def _grounded(overview: str, sentences: list[SpeakerSentence]) -> list[SummarySentence]:
    index = TranscriptIndex.of(sentences)
    checked = [check_sentence(text, index) for text in split_sentences(overview)]
    supported = [sentence for sentence in checked if sentence.supported][:MAX_OVERVIEW_SENTENCES]
    return [s for s in checked if not s.supported or s in supported]
