"""Rendered recordings for the known-speaker and translation tests: a three-voice meeting, voice
samples of the same voices saying other sentences, a German recording (espeak-ng via ``render_script``)."""

from __future__ import annotations

import base64
from pathlib import Path

from service_support import words

from isoscribe.demo import render_script

GERMAN_SCRIPT = (
    ("anna", "Guten Morgen. Heute ist das Wetter sehr schön, und wir gehen in den Park."),
    ("anna", "Am Abend essen wir zusammen mit unseren Freunden."),
)
GERMAN_VOICE = {"anna": ("de", 50, 140)}


VOICES = {
    "alice": ("en-us+m3", 30, 160),
    "bob": ("en-gb+f5", 90, 140),
    "carol": ("en-029+m7", 20, 150),
    "dave": ("en-us+m5", 55, 175),
}
"""Four of ``benchmarks.meetings.MEETING_VOICES``, chosen there to be told apart by the diarizer;
dave is not in the meeting."""
MEETING = (
    ("alice", "Let's start with the budget, because the numbers for the third quarter came in yesterday."),
    ("bob", "I looked at the sales report and the northern region is still behind its target."),
    ("carol", "We should ask the finance team to check the travel costs before we approve anything."),
    ("alice", "The new website goes live next Tuesday if the testing finishes on time."),
    ("carol", "I can take care of the customer survey, but I need the list of contacts first."),
    ("bob", "Our supplier raised the price of the packaging by almost ten percent this month."),
    ("alice", "Maybe we can move the training session to Thursday morning instead of Friday."),
    ("bob", "The warehouse team reported two delayed shipments and one damaged pallet last week."),
    ("carol", "I agree, but we have to tell the board about the delay in the next report."),
)
REFERENCE_LINES = {
    "alice": "Please remember that the office will be closed on Monday for the public holiday.",
    "bob": "Our largest client wants a discount if they renew the contract for three years.",
    "dave": "The printer on the second floor is broken again and nobody has called the technician.",
}


def render_meeting(path: Path, script: tuple[tuple[str, str], ...] = MEETING) -> Path:
    return render_script(path, script, VOICES, pause_s=0.4)


def render_references(folder: Path) -> dict[str, Path]:
    """One voice sample per name (Alice, Bob, Dave), each a sentence the meeting does not contain."""
    return {
        name.capitalize(): render_script(folder / f"{name.capitalize()}.wav", [(name, line)], VOICES, pause_s=0.1)
        for name, line in REFERENCE_LINES.items()
    }


def render_german(path: Path) -> Path:
    return render_script(path, GERMAN_SCRIPT, GERMAN_VOICE)


GERMAN_WORDS = {"guten", "wetter", "abend", "freunden", "zusammen", "heute", "ist", "wir", "und", "mit", "den"}
ENGLISH_WORDS = {"the", "a", "is", "we", "and", "of", "with", "our", "to", "good", "morning", "day", "evening",
                 "friends", "park", "together", "weather"}


def reads_as_english(text: str) -> bool:
    """English words and no German ones. ``base`` translates espeak's German loosely, and what it says
    changes with the thread count ("Good morning, today is the day…", "A very good thing."), so the
    check is on the language, not on the sentences."""
    said = set(words(text))
    return len(said & ENGLISH_WORDS) >= 2 and not said & GERMAN_WORDS


def data_url(path: Path) -> str:
    return "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode()


def spoken_by(segment_start: float, segment_end: float, turns: list[dict]) -> str:
    """The script speaker whose turn overlaps the segment most."""
    return max(turns, key=lambda t: min(segment_end, t["end"]) - max(segment_start, t["start"]))["speaker"]
