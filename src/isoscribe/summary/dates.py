"""Deadlines as said: "by May 5th", "next Tuesday", "by the end of the week", "before the next meeting",
"by 2pm Friday", "a week from Friday", "by 15 March 2025".

"Next time I need to …" opens a condition, not a deadline.
"May" is a month only where a modal verb cannot be: with a day ("May 5th", "the 5th of May") or
after "by", "in", "until", "before" or "end of".
"""

from __future__ import annotations

import re

__all__ = ["find_due", "without_due"]

_WEEKDAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH_NOT_MAY = r"(?:january|february|march|april|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec)"
_BARE_MONTH = r"(?:january|february|april|june|july|august|september|october|november|december)"
"""Months that are no other word alone ("march" and "may" are verbs)."""
_ORDINAL = (
    r"(?:\d{1,2}(?:st|nd|rd|th)?|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh"
    r"|twelfth|\w+teenth|twentieth|twenty[- ]\w+|thirtieth|thirty[- ]first)"
)
_YEAR = r"(?:,?\s+(?:19|20)\d\d\b)?"
_MONTH_DAY = (
    rf"(?:(?:{_MONTH_NOT_MAY}|may)\s+(?:the\s+)?{_ORDINAL}\b|(?:the\s+)?{_ORDINAL}\s+of\s+(?:{_MONTH_NOT_MAY}|may)\b"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH_NOT_MAY}\b){_YEAR}"
)
_PERIOD = r"(?:day|week|month|year|quarter|sprint|weekend|meeting|session|call)\b"
_TIME_PERIOD = r"(?:day|week|month|year|quarter|sprint|weekend)\b"
"""Unlike "next meeting", "this meeting" is now, not a deadline."""
_BY = r"(?:by|before|until|till|no\s+later\s+than|for|on)"
_PART = r"(?:\s+(?:morning|afternoon|evening|night))?"
_CLOCK = r"(?:(?:at\s+)?\d{1,2}(?::\d\d)?\s*(?:am|pm|a\.m\.|p\.m\.|o'clock)\s+(?:on\s+)?)?"
""""by 2pm Friday": a time of day before the day."""
_WEEKDAYS = rf"{_WEEKDAY}(?:\s+or\s+{_WEEKDAY})?(?:\s+(?:next|this)\s+week)?"
""""Monday or Tuesday", "Wednesday next week"."""
_DAY = r"(?:today|tomorrow|tonight|the\s+day\s+after\s+tomorrow)"
_OF_DAY = r"(?:'s\s+(?:meeting|call|session))?"
""""by next Thursday's meeting": the day's meeting is the deadline, not a word of the task."""
_DUE = re.compile(
    rf"\b(?:{_BY}\s+)?{_MONTH_DAY}"
    rf"|\b(?:by|before|until|till|in)\s+(?:early\s+|late\s+|mid-?\s*)?(?:{_MONTH_NOT_MAY}|may)\b{_YEAR}"
    rf"|\b{_BARE_MONTH}\b"
    rf"|\b(?:{_BY}\s+)?(?:the\s+)?end\s+of\s+(?:(?:the\s+|this\s+|next\s+)?{_PERIOD}|{_MONTH_NOT_MAY}\b|may\b)"
    rf"|\b(?:by|before|for|until)\s+(?:the\s+)?(?:next|following)\s+{_PERIOD}"
    rf"|\b(?:a|one|two|three|four|\d+)\s+(?:days?|weeks?)\s+from\s+(?:now|today|tomorrow|{_WEEKDAY})\b"
    rf"|\b(?:{_BY}\s+)?(?:(?:early|late)\s+)?(?:next|coming)\s+(?:{_PERIOD}|{_WEEKDAY}|time(?!\s+(?:I|we|you|he|she|they)\b)){_PART}{_OF_DAY}"
    rf"|\b(?:{_BY}\s+)?this\s+(?:{_TIME_PERIOD}|{_WEEKDAY}|morning|afternoon|evening){_PART}"
    rf"|\b(?:{_BY}\s+)?{_CLOCK}{_WEEKDAYS}{_PART}{_OF_DAY}"
    rf"|\b(?:by|before)\s+(?:noon|midday|eod|cob|(?:the\s+)?close\s+of\s+business)\b"
    rf"|\b(?:{_BY}\s+)?{_DAY}{_PART}(?:\s+(?:and|or)\s+{_DAY}{_PART})?"
    rf"|\b(?:within|in)\s+(?:a|an|one|two|three|four|five|six|seven|eight|nine|ten|a\s+couple\s+of|\d+)\s+"
    rf"(?:hours?|days?|weeks?|months?)\b"
    rf"|\b(?:after|by|before)\s+(?:the|this)\s+(?:meeting|call|break|lunch)\b",
    re.IGNORECASE,
)
_DANGLING = re.compile(r"(?:\s+(?:by|at|on|before|until|for|to|the|in))+(?=[\s.?!,]*$)", re.IGNORECASE)


def find_due(text: str) -> str | None:
    """The first deadline phrase in ``text`` as said ("by Tuesday"), or None."""
    match = _DUE.search(text)
    return match.group(0).strip() if match else None


def without_due(text: str) -> str:
    """``text`` with its deadline phrase taken out: "order the posters by Tuesday" → "order the posters"."""
    return _DANGLING.sub("", re.sub(r"\s+", " ", _DUE.sub(" ", text, count=1))).strip()
