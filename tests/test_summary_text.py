"""The summary's text utilities: cleanup of speech, sentences, speaker turns, deadlines."""

from __future__ import annotations

import pytest

from isoscribe.summary.dates import find_due, without_due
from isoscribe.summary.extraction import extract_action_items
from isoscribe.summary.text import clean_disfluencies, lemma, speaker_sentences, split_sentences, turns_of
from isoscribe.transcript import Segment, Transcript


@pytest.mark.parametrize(
    ("spoken", "written"),
    [
        ("Um well this is the kick-off meeting for our our project .", "Well this is the kick-off meeting for our project."),
        ("So uh {vocalsound} we we need a a new design .", "So we need a new design."),
        ("I think I think it's w we should go .", "I think it's we should go."),
        ("Mm-hmm . Yeah , th the buttons .", "Yeah, the buttons."),
        ("So i it's w- we th there I I'll send it .", "So it's we there I'll send it."),
        # a word that begins the next one is said, not stuttered: "to Tom", "we were", "an answer", "be better"
        ("We were going to talk to Tom , we need an answer , it would be better .",
         "We were going to talk to Tom, we need an answer, it would be better."),
        ("Sort of off the cuff I integrated it in intensity on one battery .",
         "Sort of off the cuff I integrated it in intensity on one battery."),
    ],
)
def test_disfluencies_are_cleaned(spoken: str, written: str) -> None:
    assert clean_disfluencies(spoken) == written


def test_sentences_split_after_end_punctuation_only() -> None:
    assert split_sentences("We met at 3.5 p.m. today. Did we? yes, at noon!") == [
        "We met at 3.5 p.m. today.", "Did we?", "yes, at noon!",
    ]  # fmt: skip


def test_a_title_does_not_end_a_sentence_and_cjk_punctuation_does() -> None:
    assert split_sentences("I'll ask Dr. Smith to review it. Mr. Jones agreed. No. Fine.") == [
        "I'll ask Dr. Smith to review it.", "Mr. Jones agreed.", "No.", "Fine.",
    ]  # fmt: skip
    assert split_sentences("我们需要完成预算。谁来预订会议室？好的") == ["我们需要完成预算。", "谁来预订会议室？", "好的"]


def test_segments_out_of_order_make_turns_in_time_order() -> None:
    """An edited transcript may list its segments out of order: no turn or sentence ends before it starts."""
    turns = _turns((10.0, 14.0, "Later words.", "A"), (2.0, 5.0, "Earlier words.", "A"), (20.0, 25.0, "Mine.", "B"))
    assert [(t.start, t.end, t.text) for t in turns] == [
        (2.0, 5.0, "Earlier words."), (10.0, 14.0, "Later words."), (20.0, 25.0, "Mine."),
    ]  # fmt: skip
    assert all(s.start <= s.end for s in speaker_sentences(turns))


def _turns(*said: tuple[float, float, str, str]) -> list:
    """Turns of segments given as (start, end, text, speaker)."""
    segments = [Segment(i, start, end, f" {text}", speaker=speaker) for i, (start, end, text, speaker) in enumerate(said)]
    return turns_of(Transcript(segments, "en", 1.0, segments[-1].end, "m", sorted({s.speaker for s in segments})))


def test_turns_join_one_speakers_segments_and_time_their_sentences() -> None:
    turns = _turns((0.0, 2.0, "Hello there.", "A"), (2.0, 4.0, "Shall we start? Yes.", "A"), (4.0, 5.0, "Sure.", "B"))
    assert [(t.speaker, t.start, t.end, t.text) for t in turns] == [
        ("A", 0.0, 4.0, "Hello there. Shall we start? Yes."), ("B", 4.0, 5.0, "Sure."),
    ]  # fmt: skip
    sentences = speaker_sentences(turns)
    assert [s.text for s in sentences] == ["Hello there.", "Shall we start?", "Yes.", "Sure."]
    assert sentences[0].start == 0.0 and sentences[2].end == 4.0 and sentences[1].start > sentences[0].start


def test_a_long_pause_parts_one_speakers_turns_so_what_follows_keeps_its_time() -> None:
    turns = _turns(
        (0.0, 4.0, "Let's look at the budget first.", "A"),
        (600.0, 604.0, "I will send the budget report to finance by Friday.", "A"),
        (604.5, 606.0, "Sounds good.", "B"),
    )
    assert [(t.speaker, t.start) for t in turns] == [("A", 0.0), ("A", 600.0), ("B", 604.5)]
    [item] = extract_action_items(speaker_sentences(turns))
    assert item.source.start == 600.0 and item.owner == "A"


@pytest.mark.parametrize(
    ("text", "due"),
    [
        ("We need to finalize the budget by May 5th", "by May 5th"),
        ("send it by the fifth of May", "by the fifth of May"),
        ("we may go there", None),
        ("I'll do it before the next meeting", "before the next meeting"),
        ("ready by the end of the week", "by the end of the week"),
        ("tomorrow morning works", "tomorrow morning"),
        ("I'm gonna work on that today and tomorrow", "today and tomorrow"),
        ("we should firm it up by next Thursday's meeting", "by next Thursday's meeting"),
        ("in two weeks", "in two weeks"),
        ("let's march on", None),
        ("in March", "in March"),
        ("I will fix the login bug this weekend", "this weekend"),
        ("I'll send the invoices by the end of June", "by the end of June"),
        ("I'll update the budget by the end of May", "by the end of May"),
        ("send Bob the budget by March 3rd 2025", "by March 3rd 2025"),
        ("book the venue by Wednesday next week", "by Wednesday next week"),
        ("order the prototypes a week from Friday", "a week from Friday"),
        ("finish the test plan by 2pm Friday", "by 2pm Friday"),
        ("review the contract by early next week", "by early next week"),
        ("call the supplier by Monday or Tuesday", "by Monday or Tuesday"),
        ("update the roadmap two weeks from now", "two weeks from now"),
        ("by 15 March", "by 15 March"),
        ("by this afternoon", "by this afternoon"),
        ("by EOD", "by EOD"),
        ("the second may be better", None),
        *[(f"by {month} 3rd", f"by {month} 3rd") for month in (
            "January February March April May June July August September October November December".split()
        )],
    ],
)
def test_deadlines_are_found_as_said(text: str, due: str | None) -> None:
    assert find_due(text) == due


def test_a_deadline_leaves_the_task_whole() -> None:
    assert without_due("order the posters by next Tuesday") == "order the posters"
    assert without_due("work on that today and tomorrow") == "work on that"
    assert without_due("firm it up by next Thursday's meeting") == "firm it up"


@pytest.mark.parametrize(
    ("word", "expected"),
    [("servers", "server"), ("discussing", "discuss"), ("ideas", "idea"), ("batteries", "battery"), ("glass", "glass")],
)
def test_lemma_drops_the_inflection_and_keeps_the_derivation(word, expected):
    assert lemma(word) == expected


def test_cleaning_joins_split_contractions_and_cleaning_again_changes_nothing():
    cleaned = clean_disfluencies("So I 'll uh {disfmarker} there 's a {disfmarker} there 's a a very big one .")
    assert cleaned == "So I'll there's a very big one."
    assert clean_disfluencies(cleaned) == cleaned
