"""Planted errors for the grounding benchmark: a human summary sentence made wrong in one known way.

* ``number``: a number the transcript never says, changed or added;
* ``participant``: the one participant the sentence names, swapped for another speaker of the meeting;
* ``object``: a content word swapped for a concrete object the transcript never mentions.
"""

from __future__ import annotations

import re
import zlib

from isoscribe.summary.grounding import TranscriptIndex, numbers_in
from isoscribe.summary.text import STOPWORDS, stem

__all__ = ["KINDS", "plant"]

KINDS = ("number", "participant", "object")
OBJECTS = (
    "printer spreadsheet projector contract invoice website database microphone camera brochure server "
    "laptop warehouse helicopter umbrella tractor bicycle refrigerator passport ambulance telescope piano "
    "satellite submarine stadium trampoline vaccine carpet elevator fireworks"
).split()


def plant(kind: str, sentence: str, index: TranscriptIndex) -> str | None:
    """``sentence`` with one error of ``kind``, or None when this sentence cannot carry one."""
    seed = zlib.crc32(sentence.encode())
    if kind == "number":
        return _number(sentence, index, seed)
    if kind == "participant":
        return _participant(sentence, index, seed)
    return _object(sentence, index, seed)


def _number(sentence: str, index: TranscriptIndex, seed: int) -> str:
    value = next(str(n) for n in range(7 + seed % 50, 10_000) if str(n) not in index.numbers)
    digits = re.search(r"\b\d+\b", sentence)
    if digits and digits.group(0) in numbers_in(sentence):
        return sentence[: digits.start()] + value + sentence[digits.end() :]
    target = _last_content_word(sentence)
    if target is None:
        return sentence.rstrip(".") + f" {value} times."
    return sentence[: target.start()] + f"{value} " + sentence[target.start() :]


def _participant(sentence: str, index: TranscriptIndex, seed: int) -> str | None:
    lower = sentence.lower()
    named = [label for key, label in index.speakers.items() if re.search(rf"\b{re.escape(key)}\b", lower)]
    others = sorted(label for label in index.speakers.values() if label not in named)
    if len(named) != 1 or not others:
        return None
    swap = others[seed % len(others)]
    return re.sub(rf"\b{re.escape(named[0])}\b", swap, sentence, flags=re.IGNORECASE)


def _object(sentence: str, index: TranscriptIndex, seed: int) -> str | None:
    target = _last_content_word(sentence)
    absent = [word for word in OBJECTS if not index.knows(stem(word)) and word not in index.lower_words]
    if target is None or not absent:
        return None
    return sentence[: target.start()] + absent[seed % len(absent)] + sentence[target.end() :]


def _last_content_word(sentence: str) -> re.Match[str] | None:
    """The last lower-case content word of four letters or more: most often the object of the sentence."""
    matches = [
        m for m in re.finditer(r"\b[a-z]{4,}\b", sentence) if m.group(0) not in STOPWORDS and not m.group(0).endswith("ly")
    ]
    return matches[-1] if matches else None


