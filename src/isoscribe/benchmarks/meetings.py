"""Rendered test recordings for the accuracy bench and tests: espeak-ng meetings and a language switch.

Meetings have 2–5 voices taking turns of 4–6 s in a seeded random order (never the same voice twice
in a row); the reference RTTM is written beside the WAV. The mixed-language recording reads English
for about 30 s and then German for about 30 s, like the issue's report; its script (with each turn's
language) is written beside it. Everything is rendered with ``isoscribe.demo.render_script``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from isoscribe.demo import dialogue_script_path, render_script

__all__ = [
    "MEETING_VOICES",
    "MIXED_LANGUAGE_SCRIPT",
    "make_meeting",
    "make_mixed_language",
    "meeting_rttm_path",
    "script_turns",
]

MEETING_VOICES: tuple[tuple[str, int, int], ...] = (
    ("en-us+m3", 30, 160),
    ("en-029+m7", 20, 150),
    ("en-gb+f5", 90, 140),
    ("en-us+m5", 55, 175),
    ("en-us+f1", 80, 150),
    ("en-029+f4", 85, 160),
    ("en-us+grandma", 50, 140),
)
"""(espeak-ng voice, pitch 0-99, words per minute); a meeting of k speakers takes k of them, seeded.

Chosen from 22 candidates so that no two are closer than 0.82 in resemblyzer's space (cosine of
their centroids): some espeak-ng pairs (en-gb+f4 / en-gb+f5, en-gb-scotland+m1 / en-us+m3) reach
0.95, as close as two halves of one voice, and no speaker count can tell them apart."""

_SENTENCES = (
    "Let's start with the budget, because the numbers for the third quarter came in yesterday.",
    "I looked at the sales report and the northern region is still behind its target.",
    "We should ask the finance team to check the travel costs before we approve anything.",
    "The new website goes live next Tuesday if the testing finishes on time.",
    "I can take care of the customer survey, but I need the list of contacts first.",
    "Our supplier raised the price of the packaging by almost ten percent this month.",
    "Maybe we can move the training session to Thursday morning instead of Friday.",
    "The warehouse team reported two delayed shipments and one damaged pallet last week.",
    "I agree, but we have to tell the board about the delay in the next report.",
    "Can somebody send me the slides from the presentation so I can review them tonight?",
    "The hiring process for the two engineers should be finished by the end of the month.",
    "We received good feedback on the mobile app, especially about the new search page.",
    "I think we need a second meeting with the design agency about the brochure.",
    "The printer on the second floor is broken again and nobody has called the technician.",
    "Please remember that the office will be closed on Monday for the public holiday.",
    "Our largest client wants a discount if they renew the contract for three years.",
    "I will draft the answer to the client and share it with everyone before noon.",
    "The security audit found a few old accounts that should have been closed long ago.",
    "We could save money by sharing the delivery trucks with the partner company.",
    "Let's write down the action items so that everyone knows what to do next.",
)

MIXED_LANGUAGE_SCRIPT: tuple[tuple[str, str], ...] = (
    ("en", "Copyright notice. Permission is hereby granted, free of charge, to any person obtaining a copy of "
           "this software and associated documentation files,"),
    ("en", "to deal in the software without restriction, including without limitation the rights to use, copy, "
           "modify, merge, publish, and distribute copies of the software."),
    ("en", "The above copyright notice and this permission notice shall be included in all copies or "
           "substantial portions of the software."),
    ("de", "Am Montag fahren wir mit dem Zug nach Hamburg und besuchen den Hafen."),
    ("de", "Das Wetter soll schön werden, aber wir nehmen trotzdem einen Regenschirm mit."),
    ("de", "Am Abend essen wir Fisch in einem kleinen Restaurant an der Elbe."),
    ("de", "Danach gehen wir früh ins Bett, weil der Zug am nächsten Morgen sehr früh fährt."),
    ("de", "Am Dienstag besuchen wir das Museum und kaufen Geschenke für die Kinder."),
)
"""(language, text): 30 s of the MIT licence's English, then 30 s of German (64 s rendered)."""

_LANGUAGE_VOICES = {"en": ("en-us", 50, 140), "de": ("de", 50, 140)}


def make_meeting(path: str | Path, speakers: int, seed: int, turns: int = 12) -> Path:
    """Render a meeting of ``speakers`` voices and ``turns`` turns to ``path``; the RTTM goes beside it."""
    rng = random.Random(seed * 100 + speakers)
    voices = dict(zip((f"S{k}" for k in range(speakers)), rng.sample(MEETING_VOICES, speakers)))
    order = list(voices)
    rng.shuffle(order)
    while len(order) < turns:
        order.append(rng.choice([name for name in voices if name != order[-1]]))
    sentences = rng.sample(_SENTENCES, turns)
    path = render_script(path, list(zip(order, sentences)), voices, pause_s=0.4)
    uri = Path(path).stem
    lines = [
        f"SPEAKER {uri} 1 {turn['start']:.3f} {turn['end'] - turn['start']:.3f} <NA> <NA> {turn['speaker']} <NA> <NA>"
        for turn in script_turns(path)
    ]
    meeting_rttm_path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_mixed_language(path: str | Path, script: tuple[tuple[str, str], ...] = MIXED_LANGUAGE_SCRIPT) -> Path:
    """Render (language, text) turns, each in that language's espeak-ng voice, to ``path``."""
    return render_script(path, script, _LANGUAGE_VOICES, pause_s=0.8)


def meeting_rttm_path(wav_path: str | Path) -> Path:
    return Path(wav_path).with_suffix(".rttm")


def script_turns(wav_path: str | Path) -> list[dict]:
    """The rendered turns (speaker, voice, text, start, end) recorded beside ``wav_path``."""
    return json.loads(dialogue_script_path(wav_path).read_text(encoding="utf-8"))["turns"]
