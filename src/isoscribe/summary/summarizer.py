"""The abstractive overview: prompts, chunks sized to the backend's real context, map-reduce, cleanup.

Turns reach the model cleaned of disfluencies and as reported speech (``Diane said: "…"``): given
``Diane: …`` lines a small model continues the dialogue instead of summarizing it. A transcript
that fits ``backend.context_tokens`` is one call; a longer one is cut between turns into chunks
that each fit, each chunk is summarized (map), then the partial summaries together (reduce). Every
call's answer is used: the overview it yields is grounded in ``isoscribe.summary.digest``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from isoscribe.config import LlmSettings
from isoscribe.logs import log_event
from isoscribe.summary.backends import ChatBackend
from isoscribe.summary.text import clean_disfluencies
from isoscribe.summary.types import SummaryTurn

__all__ = ["Summarizer", "Templates", "Overview", "pack_lines", "clean_summary", "reported_speech"]

SYSTEM_PROMPT = "You are a careful assistant who writes short, factual summaries of meetings."
SUMMARY_PROMPT = (
    "Summarize the following meeting in three to five sentences: what was discussed, what was decided, "
    "and who will do what. Name the speakers.\n\n{transcript}"
)
REDUCE_PROMPT = (
    "Combine these summaries of consecutive parts of one meeting into one summary of three to five sentences."
    "\n\n{summaries}"
)
CHAT_OVERHEAD_TOKENS = 32
"""Role markers and special tokens the chat template adds around the system and user messages."""
MIN_CHUNK_TOKENS = 48
MAX_SUMMARY_CHARS = 1500

logger = logging.getLogger("isoscribe.summary")


@dataclass(frozen=True)
class Templates:
    summary: str = SUMMARY_PROMPT
    reduce: str = REDUCE_PROMPT

    @classmethod
    def from_settings(cls, settings: LlmSettings) -> Templates:
        templates = cls(summary=settings.summary_prompt or SUMMARY_PROMPT, reduce=settings.reduce_prompt or REDUCE_PROMPT)
        for name, template, slot in (
            ("summary_prompt", templates.summary, "{transcript}"),
            ("reduce_prompt", templates.reduce, "{summaries}"),
        ):
            if slot not in template:
                raise ValueError(f"llm.{name} must contain the placeholder {slot}")
        return templates


@dataclass(frozen=True)
class Overview:
    text: str
    chunks: int
    prompt_tokens: int
    completion_tokens: int


class Summarizer:
    """Writes a meeting's overview with one chat backend."""

    def __init__(self, backend: ChatBackend, settings: LlmSettings) -> None:
        self.backend = backend
        self.templates = Templates.from_settings(settings)
        self.max_tokens = settings.max_tokens
        self._prompt_tokens = self._completion_tokens = 0
        self._generation_s = 0.0

    def overview(self, turns: list[SummaryTurn]) -> Overview:
        self._prompt_tokens = self._completion_tokens = 0
        self._generation_s = 0.0
        lines = [reported_speech(turn) for turn in turns if clean_disfluencies(turn.text)]
        chunks = pack_lines(lines, self._budget(self.templates.summary), self.backend.count_tokens)
        partials = [clean_summary(*self._ask(self.templates.summary, "{transcript}", chunk)) for chunk in chunks]
        text = partials[0] if len(partials) == 1 else self._reduce(partials)
        log_event(
            logger, "overview_generated", model=self.backend.model_name, chunks=len(chunks),
            context_tokens=self.backend.context_tokens, prompt_tokens=self._prompt_tokens,
            completion_tokens=self._completion_tokens, generation_s=round(self._generation_s, 3),
        )  # fmt: skip
        return Overview(text, len(chunks), self._prompt_tokens, self._completion_tokens)

    def _reduce(self, partials: list[str]) -> str:
        budget = self._budget(self.templates.reduce)
        partials = [partial for partial in partials if partial]
        while len(partials) > 1:
            items = [f"- {partial}" for partial in partials]
            groups = pack_lines(items, budget, self.backend.count_tokens)
            if len(groups) >= len(items):  # each summary fills a prompt alone: pair them, shortened
                items = [_truncate_words(item, budget // 2, self.backend.count_tokens) for item in items]
                groups = ["\n".join(items[start : start + 2]) for start in range(0, len(items), 2)]
            replies = (self._ask(self.templates.reduce, "{summaries}", group) for group in groups)
            partials = [summary for summary in (clean_summary(*reply) for reply in replies) if summary]
        return partials[0] if partials else ""

    def _budget(self, template: str) -> int:
        template_tokens = self.backend.count_tokens(SYSTEM_PROMPT + template) + CHAT_OVERHEAD_TOKENS
        budget = self.backend.context_tokens - self.max_tokens - template_tokens
        if budget < MIN_CHUNK_TOKENS:
            raise ValueError(
                f"a context of {self.backend.context_tokens} tokens leaves {budget} for the transcript after "
                f"max_tokens={self.max_tokens} and a {template_tokens}-token prompt; raise n_ctx or lower max_tokens"
            )
        return budget

    def _ask(self, template: str, slot: str, text: str) -> tuple[str, bool]:
        """The answer's text, and whether it may stop mid-sentence."""
        started = time.perf_counter()
        completion = self.backend.chat(SYSTEM_PROMPT, template.replace(slot, text), self.max_tokens)
        self._generation_s += time.perf_counter() - started
        self._prompt_tokens += completion.prompt_tokens
        self._completion_tokens += completion.completion_tokens
        return completion.text, completion.cut_off


def reported_speech(turn: SummaryTurn) -> str:
    """``Diane said: "Hello?"``; a turn without a speaker is its cleaned words alone."""
    words = clean_disfluencies(turn.text)
    return f'{turn.speaker} said: "{words}"' if turn.speaker else words


def pack_lines(lines: list[str], budget_tokens: int, count_tokens: Callable[[str], int]) -> list[str]:
    """Join lines into chunks of at most ``budget_tokens`` tokens, cutting only between lines
    (a line longer than the budget is cut between words)."""
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    for line in lines:
        for piece in _split_long_line(line, budget_tokens, count_tokens):
            tokens = count_tokens(piece) + 1  # the newline that joins it
            if current and used + tokens > budget_tokens:
                chunks.append("\n".join(current))
                current, used = [], 0
            current.append(piece)
            used += tokens
    if current:
        chunks.append("\n".join(current))
    return chunks


def _split_long_line(line: str, budget_tokens: int, count_tokens: Callable[[str], int]) -> Iterator[str]:
    if count_tokens(line) + 1 <= budget_tokens:
        yield line
        return
    piece: list[str] = []
    used = 0
    for word in line.split():
        tokens = count_tokens(" " + word)
        if piece and used + tokens > budget_tokens - 1:
            yield " ".join(piece)
            piece, used = [], 0
        piece.append(word)
        used += tokens
    if piece:
        yield " ".join(piece)


def _truncate_words(text: str, budget_tokens: int, count_tokens: Callable[[str], int]) -> str:
    return next(_split_long_line(text, budget_tokens, count_tokens))


_LEADING_LABEL = re.compile(
    r"^\s*(?:#+\s*)?\**\s*(?:summary|combined summary|overall summary)\s*\**\s*:?\s*\**\s*", re.IGNORECASE
)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_EMPHASIS = re.compile(r"(\*\*|__|\*)(?=\S)(.+?)(?<=\S)\1")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ECHOED_LINE = re.compile(r"(?<!\S)\w[\w.'-]*(?: [\w.'-]+){0,2}(?: said)?: [\"“][^\"”\n]*[\"”]?")
_LOOP = re.compile(r"\b(\w+(?:\W+\w+){0,7}?)(?:\W+\1\b){2,}", re.IGNORECASE)
_NO_STATEMENT = re.compile(r".*:|#.*|(?i:sure|certainly|of course|absolutely|okay|ok|alright)\W*")
"""What a chat model says around its summary: a heading, a label or an introduction ("Here is a summary of
the meeting:", "Key points:"), an "Of course!"."""


def clean_summary(text: str, cut_off: bool = True) -> str:
    """A model's summary made usable: no label, heading, preamble, emphasis, echoed transcript lines, loops
    or, when it may be ``cut_off``, an unfinished last sentence; a list item is a sentence of its own."""
    text = _LEADING_LABEL.sub("", text.strip())
    text = _ECHOED_LINE.sub("", text) if _normalized(_ECHOED_LINE.sub("", text)) else text
    lines = [line for line in (_EMPHASIS.sub(r"\2", _BULLET.sub("", line)).strip() for line in text.splitlines()) if line]
    sentences: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(lines):
        if number < len(lines) - 1 and not line.endswith((".", "!", "?", '"', ":")):
            line += "."  # a list item or a line of its own ends where its line does
        for sentence in _SENTENCE_END.split(_LOOP.sub(r"\1", line)):
            key = _normalized(sentence)
            if key and key not in seen and not _NO_STATEMENT.fullmatch(sentence.strip()):
                seen.add(key)
                sentences.append(sentence.strip())
    if cut_off and len(sentences) > 1 and not sentences[-1].endswith((".", "!", "?", '"')):
        sentences.pop()  # generation stopped at max_tokens mid-sentence
    summary = ""
    for sentence in sentences:
        if summary and len(summary) + 1 + len(sentence) > MAX_SUMMARY_CHARS:
            break
        summary = f"{summary} {sentence}".strip()
    return summary[:MAX_SUMMARY_CHARS]


def _normalized(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))
