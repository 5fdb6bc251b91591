"""summary.md: the digest as markdown, every statement with the time it comes from.

What the meeting and the model said is shown literally: markdown's own characters in it are escaped, so
"*" or "<b>" in speech neither formats nor hides anything, and it stays on its line.
"""

from __future__ import annotations

import re

from isoscribe.summary.types import ActionItem, Summary, SummarySentence

__all__ = ["to_summary_md", "clock", "literal"]


def to_summary_md(summary: Summary, title: str = "Summary") -> str:
    """Overview, then topics with key points, decisions, action items (``- [OWNER, DUE] Task (MM:SS)``)
    and open questions. Unsupported overview sentences are listed apart, with the reason."""
    parts = [f"# {literal(title)}\n"]
    parts += [f"> {literal(warning)}\n" for warning in summary.warnings]
    if summary.overview.strip():
        parts.append(literal(summary.overview) + "\n")
    unsupported = [sentence for sentence in summary.sentences if not sentence.supported]
    if unsupported:
        parts.append(
            "_Left out, the transcript does not support them:_\n"
            + "".join(f"- ~~{literal(s.text)}~~ ({literal(s.reason)})\n" for s in unsupported)
        )
    if summary.topics:
        parts.append("## Topics\n")
        parts.append("".join(_topic_lines(topic.start, topic.end, topic.title, topic.key_points) for topic in summary.topics))
    if summary.decisions:
        parts.append("## Decisions\n")
        parts.append("".join(f"- {literal(d.text)} ({clock(d.source.start)})\n" for d in summary.decisions))
    if summary.action_items:
        parts.append("## Action items\n")
        parts.append("".join(_action_item_line(item) for item in summary.action_items))
    if summary.open_questions:
        parts.append("## Open questions\n")
        parts.append("".join(f"- {literal(q.text)} ({clock(q.source.start)})\n" for q in summary.open_questions))
    return "\n".join(parts)


def _topic_lines(start: float, end: float, title: str, points: list[SummarySentence]) -> str:
    lines = [f"- **{clock(start)}–{clock(end)} {literal(title)}**\n"]
    lines += [f"  - {literal(point.text)}\n" for point in points]
    return "".join(lines)


def _action_item_line(item: ActionItem) -> str:
    who = ", ".join(literal(part) for part in (item.owner or "unassigned", item.due) if part)
    return f"- [{who}] {literal(item.task)} ({clock(item.source.start)})\n"


_MARKDOWN_CHARACTERS = re.compile(r"([\\`*{}\[\]<>#~|]|(?<!\w)_|_(?!\w))")
"""``_`` inside a word (SPEAKER_01) never makes emphasis: it stays as it is."""
_BLOCK_START = re.compile(r"^(\d+)([.)])(?=\s|$)|^([-+=])(?=\s|$)")
"""What at the start of a line makes a list item or a heading underline."""


def literal(text: str) -> str:
    """``text`` on one line, as markdown shows it: its markdown characters escaped."""
    flat = _MARKDOWN_CHARACTERS.sub(r"\\\1", " ".join(text.split()))
    return _BLOCK_START.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"\\{m[3]}", flat)


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
