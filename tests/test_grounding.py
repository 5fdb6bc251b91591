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


def test_ordinals_and_scaled_numbers_are_read_as_numbers() -> None:
    index = TranscriptIndex.of(speaker_sentences(turns_from_text(
        "A: The report is due on the 1st of June, and we expect 1.5 million users.\n"
        "B: A rubber case and a scroll wheel, that's what I propose for the new remote."
    )))  # fmt: skip
    for faithful in ("The report is due on June 1st.", "They expect 1.5M users.",
                     "A rubber case and a scroll wheel were proposed for the new remote."):  # "A" the article
        assert check_sentence(faithful, index).supported, (faithful, check_sentence(faithful, index).reason)
    for invented, number in (("The report is due on June 15th.", "15"), ("They expect 9M users.", "9")):
        checked = check_sentence(invented, index)
        assert not checked.supported and f"number {number}" in checked.reason, checked.reason


def test_a_name_in_another_alphabet_or_with_accents_is_checked_whole() -> None:
    index = TranscriptIndex.of(speaker_sentences(turns_from_text("Anna: I talked to Schmidt about the contract.")))
    assert check_sentence("Anna talked to Schmidt about the contract.", index).supported
    checked = check_sentence("Anna talked to Müller about the contract.", index)
    assert not checked.supported and "Müller is not in the transcript" in checked.reason, checked.reason
