"""summary.md: the digest as markdown, every statement with the time it comes from."""

from __future__ import annotations

from isoscribe.summary.types import ActionItem, Summary, SummarySentence

__all__ = ["to_summary_md", "clock"]


def to_summary_md(summary: Summary, title: str = "Summary") -> str:
    """Overview, then topics with key points, decisions, action items (``- [OWNER, DUE] Task (MM:SS)``)
    and open questions. Unsupported overview sentences are listed apart, with the reason."""
    parts = [f"# {title}\n"]
    parts += [f"> {warning}\n" for warning in summary.warnings]
    if summary.overview.strip():
        parts.append(summary.overview.strip() + "\n")
    unsupported = [sentence for sentence in summary.sentences if not sentence.supported]
    if unsupported:
        parts.append(
            "_Left out, the transcript does not support them:_\n"
            + "".join(f"- ~~{s.text}~~ ({s.reason})\n" for s in unsupported)
        )
    if summary.topics:
        parts.append("## Topics\n")
        parts.append("".join(_topic_lines(topic.start, topic.end, topic.title, topic.key_points) for topic in summary.topics))
    if summary.decisions:
        parts.append("## Decisions\n")
        parts.append("".join(f"- {d.text} ({clock(d.source.start)})\n" for d in summary.decisions))
    if summary.action_items:
        parts.append("## Action items\n")
        parts.append("".join(_action_item_line(item) for item in summary.action_items))
    if summary.open_questions:
        parts.append("## Open questions\n")
        parts.append("".join(f"- {q.text} ({clock(q.source.start)})\n" for q in summary.open_questions))
    return "\n".join(parts)


def _topic_lines(start: float, end: float, title: str, points: list[SummarySentence]) -> str:
    lines = [f"- **{clock(start)}–{clock(end)} {title}**\n"]
    lines += [f"  - {point.text}\n" for point in points]
    return "".join(lines)


def _action_item_line(item: ActionItem) -> str:
    who = ", ".join(part for part in (item.owner or "unassigned", item.due) if part)
    return f"- [{who}] {item.task} ({clock(item.source.start)})\n"


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
