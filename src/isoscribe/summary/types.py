"""The summary's data: what the summary worker receives and the digest it returns.

Every statement of the digest carries its evidence: time ranges of the transcript (overview
sentences, key points) or the quoted sentence with its speaker and time (decisions, action items,
open questions). An overview sentence the transcript does not support stays here with
``supported=False`` and its ``reason``; only the prose (``overview``) leaves it out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = [
    "SummaryTurn",
    "SummaryRequest",
    "TimeRange",
    "SummarySentence",
    "SourceSpan",
    "ActionItem",
    "Decision",
    "OpenQuestion",
    "Topic",
    "Summary",
]


@dataclass(frozen=True)
class SummaryTurn:
    """One speaker's uninterrupted words, as the summary reads them."""

    speaker: str | None
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class SummaryRequest:
    turns: tuple[SummaryTurn, ...]


@dataclass
class TimeRange:
    start: float
    end: float


@dataclass
class SummarySentence:
    text: str
    supported: bool
    evidence: list[TimeRange] = field(default_factory=list)
    reason: str | None = None
    """Why grounding found no support: the invented term, or the speaker it was given to."""


@dataclass
class SourceSpan:
    """Where a statement comes from: the speaker, the time span and the words as transcribed."""

    start: float
    end: float
    speaker: str | None
    quote: str


@dataclass
class ActionItem:
    owner: str | None
    """The speaker label (or the name a plain-text transcript gives); None when nobody is named."""
    task: str
    due: str | None
    """The deadline in the speaker's words ("by Tuesday", "next week"), None when none was stated."""
    source: SourceSpan


@dataclass
class Decision:
    text: str
    source: SourceSpan


@dataclass
class OpenQuestion:
    text: str
    source: SourceSpan


@dataclass
class Topic:
    start: float
    end: float
    title: str
    key_points: list[SummarySentence] = field(default_factory=list)


@dataclass
class Summary:
    overview: str
    action_items: list[ActionItem] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    sentences: list[SummarySentence] = field(default_factory=list)
    """The overview's sentences, supported or not; ``overview`` joins the supported ones."""
    topics: list[Topic] = field(default_factory=list)
    open_questions: list[OpenQuestion] = field(default_factory=list)
    model: str = ""
    overview_kind: str = "extractive"
    """"abstractive" (written by the model) or "extractive" (chosen transcript sentences)."""
    warnings: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    chunks: int = 0

    @property
    def warning(self) -> str | None:
        """All warnings in one line, None when there are none."""
        return "; ".join(self.warnings) or None

    @classmethod
    def empty(cls, warning: str) -> Summary:
        return cls(overview="", warnings=[warning])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        return cls(
            action_items=[_action_item(item) for item in data.get("action_items", []) if isinstance(item, dict)],
            decisions=[Decision(d["text"], _span(d["source"])) for d in data.get("decisions", [])],
            sentences=[_sentence(s) for s in data.get("sentences", [])],
            topics=[_topic(t) for t in data.get("topics", [])],
            open_questions=[OpenQuestion(q["text"], _span(q["source"])) for q in data.get("open_questions", [])],
            **{k: v for k, v in _known(cls, data).items() if k not in _NESTED},
        )


_NESTED = ("action_items", "decisions", "sentences", "topics", "open_questions")


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _span(data: dict[str, Any]) -> SourceSpan:
    return SourceSpan(**_known(SourceSpan, data))


def _action_item(data: dict[str, Any]) -> ActionItem:
    return ActionItem(**{**_known(ActionItem, data), "source": _span(data["source"])})


def _sentence(data: dict[str, Any]) -> SummarySentence:
    evidence = [TimeRange(**_known(TimeRange, e)) for e in data.get("evidence", [])]
    return SummarySentence(**{**_known(SummarySentence, data), "evidence": evidence})


def _topic(data: dict[str, Any]) -> Topic:
    points = [_sentence(p) for p in data.get("key_points", [])]
    return Topic(**{**_known(Topic, data), "key_points": points})
