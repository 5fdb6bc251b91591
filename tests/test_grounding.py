"""Grounding on a small written meeting: what a faithful summary writes differently from the speech is kept,
a concrete object the meeting never mentions is still caught."""

from __future__ import annotations

import pytest

from isoscribe.summary.grounding import TranscriptIndex, check_sentence
from isoscribe.summary.text import speaker_sentences, turns_from_text


@pytest.fixture(scope="module")
def index() -> TranscriptIndex:
    return TranscriptIndex.of(speaker_sentences(turns_from_text(
        "Anna: Let me draw the plan on the white board, then we look at the data set.\n"
        "Bob: I ran the workshop and sent the schedule, and the budget is fine.\n"
        "Anna: We train the model on the small data sets first."
    )))  # fmt: skip


@pytest.mark.parametrize(
    "faithful",
    [
        "Anna sketched the plan on the whiteboard.",  # "white board" written as one word
        "They suspected that the smaller dataset was at fault.",  # "data set(s)" written as one word
        "Bob hosted the workshop.",  # a verb form, though its lemma "host" is mostly said as a noun
        "Anna called the plan clumsy but vivid.",  # words English never says as nouns
        "The team agreed on the methodology.",  # an abstract noun ("-logy")
        "Approximately half of the schedule was discussed.",  # a first word is capitalised whatever it is
    ],
)
def test_what_a_summary_writes_differently_is_kept(index, faithful):
    checked = check_sentence(faithful, index)
    assert checked.supported, checked.reason


@pytest.mark.parametrize(
    ("invented", "word"),
    [
        ("Anna sketched the plan on the blackboard.", "blackboard"),
        ("Bob brought the umbrella to the workshop.", "umbrella"),
        ("Umbrellas were handed out at the workshop.", "Umbrellas"),  # a first word is still checked
    ],
)
def test_an_object_the_meeting_never_mentions_is_caught_and_kept_with_its_reason(index, invented, word):
    checked = check_sentence(invented, index)
    assert not checked.supported and f"{word} is not in the transcript" in checked.reason
