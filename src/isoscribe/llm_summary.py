"""Summaries of transcripts of any length: prompts, token-budgeted chunks, map-reduce, output cleanup.

A transcript that fits the context is summarized in one call. A longer one is cut between lines
(speaker labels kept on every line) into chunks that each fit ``n_ctx - max_tokens - template``;
each chunk is summarized (map), then the chunk summaries are summarized together (reduce),
recursively until one remains. Action items come from a separate call per chunk, parsed as a
bulleted list: small models follow one instruction per prompt far better than two.

Nothing here is checked against the transcript: the parent's ``isoscribe.grounding.ground_summary``
drops unsupported sentences and keeps the model's action items only where a transcript turn backs them.

Labelled lines reach the model as reported speech (``Diane said: "…"``): given ``Diane: …`` lines,
a small model such as SmolLM2-135M continues the dialogue instead of summarizing it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from isoscribe.config import LlmSettings
from isoscribe.llm import ChatBackend
from isoscribe.logs import log_event
from isoscribe.transcript import Summary

__all__ = [
    "Summarizer",
    "Templates",
    "SYSTEM_PROMPT",
    "SUMMARY_PROMPT",
    "REDUCE_PROMPT",
    "ACTION_ITEMS_PROMPT",
    "pack_lines",
    "reported_speech",
    "speaker_label",
    "clean_summary",
    "parse_action_items",
]

SYSTEM_PROMPT = "You are a careful assistant who writes short, factual summaries of conversations."
SUMMARY_PROMPT = "Summarize the following conversation in two or three sentences.\n\n{transcript}"
REDUCE_PROMPT = (
    "Combine these summaries of consecutive parts of one conversation into one summary "
    "of two or three sentences.\n\n{summaries}"
)
# Transcript first, instruction last: SmolLM2-135M then names who does what on the demo dialogue and
# answers "None" for the pyannote call and JFK, where the instruction-first wording copied lines.
ACTION_ITEMS_PROMPT = (
    "Conversation:\n{transcript}\n\nWrite the action items from this conversation (who will do what). "
    'Use one line per item starting with "- ". If there are none, write "None".'
)

CHAT_OVERHEAD_TOKENS = 32
"""Role markers and special tokens the chat template adds around the system and user messages."""
MIN_CHUNK_TOKENS = 48
MAX_SUMMARY_CHARS = 1500
MAX_ACTION_ITEMS = 10
ACTION_ITEMS_MAX_TOKENS = 192
"""Ten short items fit; a small model that finds none otherwise rambles up to max_tokens."""
MAX_ACTION_ITEM_CHARS = 200

logger = logging.getLogger("isoscribe.llm")


@dataclass(frozen=True)
class Templates:
    summary: str = SUMMARY_PROMPT
    reduce: str = REDUCE_PROMPT
    action_items: str = ACTION_ITEMS_PROMPT

    @classmethod
    def from_settings(cls, settings: LlmSettings) -> Templates:
        templates = cls(
            summary=settings.summary_prompt or SUMMARY_PROMPT,
            reduce=settings.reduce_prompt or REDUCE_PROMPT,
            action_items=settings.action_items_prompt or ACTION_ITEMS_PROMPT,
        )
        for name, template, slot in (
            ("summary_prompt", templates.summary, "{transcript}"),
            ("reduce_prompt", templates.reduce, "{summaries}"),
            ("action_items_prompt", templates.action_items, "{transcript}"),
        ):
            if slot not in template:
                raise ValueError(f"llm.{name} must contain the placeholder {slot}")
        return templates


class Summarizer:
    """Turns transcript text into a ``Summary`` with one chat backend."""

    def __init__(self, backend: ChatBackend, settings: LlmSettings) -> None:
        self.backend = backend
        self.templates = Templates.from_settings(settings)
        self.max_tokens = settings.max_tokens
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._generation_s = 0.0

    def summarize(self, transcript_text: str) -> Summary:
        lines = [line.strip() for line in transcript_text.splitlines() if line.strip()]
        if not lines:
            return Summary(summary="", model=self.backend.model_name, chunks=0, warning="empty transcript")
        self._prompt_tokens = self._completion_tokens = 0
        self._generation_s = 0.0
        chunks = [
            "\n".join(reported_speech(line) for line in chunk.splitlines())
            for chunk in pack_lines(lines, self._chunk_budget(), self._count_reported)
        ]
        partials = [clean_summary(self._ask(self.templates.summary, "{transcript}", chunk)) for chunk in chunks]
        summary = partials[0] if len(partials) == 1 else self._reduce(partials)
        model_action_items = _merge_items(
            parse_action_items(self._ask(self.templates.action_items, "{transcript}", chunk, ACTION_ITEMS_MAX_TOKENS))
            for chunk in chunks
        )
        log_event(
            logger,
            "summary_generated",
            model=self.backend.model_name,
            chunks=len(chunks),
            prompt_tokens=self._prompt_tokens,
            completion_tokens=self._completion_tokens,
            generation_s=self._generation_s,
            completion_tokens_per_s=self._completion_tokens / self._generation_s if self._generation_s else 0.0,
        )
        return Summary(
            summary=summary,
            model_action_items=model_action_items,
            model=self.backend.model_name,
            prompt_tokens=self._prompt_tokens,
            completion_tokens=self._completion_tokens,
            chunks=len(chunks),
            warning=None if summary else "the model returned no summary text",
        )

    def _reduce(self, partials: list[str]) -> str:
        budget = self._budget(self.templates.reduce)
        partials = [partial for partial in partials if partial]
        while len(partials) > 1:
            items = [f"- {partial}" for partial in partials]
            groups = pack_lines(items, budget, self.backend.count_tokens)
            if len(groups) >= len(items):
                # Each summary fills a prompt on its own: shorten them so that at least two share one.
                items = [_truncate_words(item, budget // 2, self.backend.count_tokens) for item in items]
                groups = pack_lines(items, budget, self.backend.count_tokens)
            if len(groups) >= len(items):  # token counts of joined text differ slightly: force progress
                groups = ["\n".join(items[start : start + 2]) for start in range(0, len(items), 2)]
            replies = (self._ask(self.templates.reduce, "{summaries}", group) for group in groups)
            partials = [summary for summary in map(clean_summary, replies) if summary]
        return partials[0] if partials else ""

    def _count_reported(self, line: str) -> int:
        return self.backend.count_tokens(reported_speech(line))

    def _chunk_budget(self) -> int:
        """Each chunk goes out twice, with the summary and the action-items template: fit the longer."""
        return min(self._budget(self.templates.summary), self._budget(self.templates.action_items))

    def _budget(self, template: str) -> int:
        template_tokens = self.backend.count_tokens(SYSTEM_PROMPT + template) + CHAT_OVERHEAD_TOKENS
        budget = self.backend.context_tokens - self.max_tokens - template_tokens
        if budget < MIN_CHUNK_TOKENS:
            raise ValueError(
                f"llm.n_ctx={self.backend.context_tokens} leaves {budget} tokens for the transcript after "
                f"max_tokens={self.max_tokens} and a {template_tokens}-token prompt; raise n_ctx or lower max_tokens"
            )
        return budget

    def _ask(self, template: str, slot: str, text: str, max_tokens: int | None = None) -> str:
        started = time.perf_counter()
        max_tokens = min(self.max_tokens, max_tokens or self.max_tokens)
        completion = self.backend.chat(SYSTEM_PROMPT, template.replace(slot, text), max_tokens)
        self._generation_s += time.perf_counter() - started
        self._prompt_tokens += completion.prompt_tokens
        self._completion_tokens += completion.completion_tokens
        return completion.text


def pack_lines(lines: list[str], budget_tokens: int, count_tokens: Callable[[str], int]) -> list[str]:
    """Join lines into chunks of at most ``budget_tokens`` tokens, cutting only between lines.

    A line longer than the budget is cut between words; its speaker label, if any, is repeated on
    every piece so that the model still knows who speaks.
    """
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


_SPEAKER_LABEL = re.compile(r"^(\w[\w.'-]*(?: [\w.'-]+){0,2}):\s+")
"""A "SPEAKER_00: " or "Diane Smith: " prefix: at most three words before the colon."""


def speaker_label(line: str) -> tuple[str | None, str]:
    """(speaker, words) of a ``Diane: Hello?`` line; (None, line) for a line without a label."""
    label = _SPEAKER_LABEL.match(line)
    if not label:
        return None, line
    return label.group(1), line[label.end() :].strip()


def reported_speech(line: str) -> str:
    """``Diane: Hello?`` becomes ``Diane said: "Hello?"``; a line without a speaker label is kept."""
    speaker, words = speaker_label(line)
    return f'{speaker} said: "{words}"' if speaker else line


def _split_long_line(line: str, budget_tokens: int, count_tokens: Callable[[str], int]) -> Iterator[str]:
    if count_tokens(line) + 1 <= budget_tokens:
        yield line
        return
    label_match = _SPEAKER_LABEL.match(line)
    label = label_match.group(0) if label_match else ""
    words = line[len(label) :].split()
    room = budget_tokens - count_tokens(label) - 1
    piece: list[str] = []
    used = 0
    for word in words:
        tokens = count_tokens(" " + word)
        if piece and used + tokens > room:
            yield label + " ".join(piece)
            piece, used = [], 0
        piece.append(word)
        used += tokens
    if piece:
        yield label + " ".join(piece)


def _truncate_words(text: str, budget_tokens: int, count_tokens: Callable[[str], int]) -> str:
    return next(_split_long_line(text, budget_tokens, count_tokens))


_LEADING_LABEL = re.compile(
    r"^\s*(?:#+\s*)?\**\s*(?:summary|combined summary|overall summary)\s*\**\s*:?\s*\**\s*", re.IGNORECASE
)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ECHOED_LINE = re.compile(r"(?<!\S)\w[\w.'-]*(?: [\w.'-]+){0,2}(?: said)?: [\"“][^\"”\n]*[\"”]?")
_LOOP = re.compile(r"\b(\w+(?:\W+\w+){0,7}?)(?:\W+\1\b){2,}", re.IGNORECASE)


def clean_summary(text: str) -> str:
    """A small model's summary made usable: no label, no repeated sentences or loops, no cut-off tail."""
    text = _LEADING_LABEL.sub("", text.strip())
    # 'Diane said: "…"' is the prompt's transcript format (and 'Diane: "…"' the raw one): lines the model
    # copied instead of summarizing.
    text = _ECHOED_LINE.sub("", text) if _normalized(_ECHOED_LINE.sub("", text)) else text
    sentences: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        line = _BULLET.sub("", line).strip()
        for sentence in _SENTENCE_END.split(_LOOP.sub(r"\1", line)):
            key = _normalized(sentence)
            if key and key not in seen:
                seen.add(key)
                sentences.append(sentence.strip())
    if len(sentences) > 1 and not sentences[-1].endswith((".", "!", "?", '"')):
        sentences.pop()  # generation stopped at max_tokens mid-sentence
    summary = ""
    for sentence in sentences:
        if summary and len(summary) + 1 + len(sentence) > MAX_SUMMARY_CHARS:
            break
        summary = f"{summary} {sentence}".strip()
    return summary[:MAX_SUMMARY_CHARS]


_REPORTED = re.compile(r'^(\w[\w.\'-]*(?: [\w.\'-]+){0,2}) said: "(.*?)"?$')
_NONE_ITEM = re.compile(r"^(?:none|n/?a|no action items?.*|there are no action items.*)\W*$", re.IGNORECASE)


def parse_action_items(text: str) -> list[str]:
    """The bulleted or numbered lines of an answer, without 'None', duplicates or markup."""
    items: list[str] = []
    for line in text.splitlines():
        if not _BULLET.match(line):
            continue
        item = _LOOP.sub(r"\1", _BULLET.sub("", line)).strip().strip("*_ ").strip()
        item = _REPORTED.sub(r"\1: \2", item)
        if item and not _NONE_ITEM.match(item):
            items.append(_shorten(item, MAX_ACTION_ITEM_CHARS))
    return _merge_items([items])


def _merge_items(item_lists) -> list[str]:
    merged: list[str] = []
    seen: set[str] = set()
    for items in item_lists:
        for item in items:
            key = _normalized(item)
            if key and key not in seen:
                seen.add(key)
                merged.append(item)
    return merged[:MAX_ACTION_ITEMS]


def _shorten(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return text[: max_chars - 1].rsplit(" ", 1)[0].rstrip(",;: ") + "…"


def _normalized(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))
