"""The language codes Whisper models know, checkable in a parent without importing faster-whisper."""

from __future__ import annotations

__all__ = ["WHISPER_LANGUAGES", "check_language"]

WHISPER_LANGUAGES = frozenset(
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he hi hr ht hu "
    "hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl nn no oc pa pl ps pt "
    "ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz vi yi yo zh yue".split()
)
"""faster_whisper.tokenizer._LANGUAGE_CODES (ISO 639-1, plus haw and yue)."""


def check_language(code: str | None) -> str | None:
    """``code`` lower-cased when Whisper knows it; ValueError naming the code otherwise."""
    if code is None:
        return None
    normalized = code.strip().lower()
    if normalized not in WHISPER_LANGUAGES:
        raise ValueError(f"unknown language {code!r}; use an ISO 639-1 code such as en, de or fr")
    return normalized
