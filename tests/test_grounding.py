"""The grounding check and the rule-based action items, on text (no model, no audio)."""

from __future__ import annotations

import json
import pickle

import pytest

from isoscribe.action_items import find_due, speaker_names, speaker_sentences
from isoscribe.grounding import Evidence, ground_summary, normalize_word, transcript_from_text, unsupported_terms
from isoscribe.transcript import Segment, Summary, Transcript, Word

MEETING = """\
Alice: Good morning Bob. Let's review the budget for the four thousand euro trade fair.
Bob: Morning Alice. The hotel booking is done, but the flights are still open.
Alice: Okay. Can you book the flights and send me the invoices by Tuesday?
Bob: Yes, I will do that by Tuesday.
Carol: My brother says he will move to Berlin next month.
Alice: I'll ask finance for the second payment before the end of the month.
Carol: Could you also print the posters, Bob?
Bob: Sorry, I can't, I am away next week.
Alice: So we agreed to travel on the 3rd of June.
"""


@pytest.fixture()
def meeting() -> Transcript:
    return transcript_from_text(MEETING)


def test_a_sentence_with_an_invented_name_or_number_is_dropped_and_counted(meeting):
    raw = Summary(
        summary=(
            "Alice and Bob review the budget for the trade fair. "
            "Dave will book the flights. "
            "The budget is 5000 euros. "
            "They discuss data recovery when a disaster occurs. "
            'Carol: "Thanks. The hotel booking is done." '
            "They book the flights."
        )
    )
    grounded = ground_summary(raw, meeting)
    assert grounded.summary == "Alice and Bob review the budget for the trade fair."
    assert grounded.sentences_checked == 7 and grounded.sentences_dropped == 6
    assert grounded.grounded


def test_normalisation_covers_case_inflection_and_number_words(meeting):
    vocabulary = Evidence.of(meeting)
    assert unsupported_terms("BOB BOOKED the Flight and sends invoices.", vocabulary) == []
    assert unsupported_terms("The trade fair budget is 4000 euros.", vocabulary) == []
    assert unsupported_terms("They travel on the third of June.", vocabulary) == []
    assert unsupported_terms("They travel on the 4th of July.", vocabulary) == ["4", "july"]
    assert normalize_word("shipping") == normalize_word("shipped") == normalize_word("ships") == "ship"
    assert normalize_word("said") == "say"


def test_a_sentence_must_be_supported_by_one_stretch_of_the_transcript_not_scattered_words():
    lines = ["Ann: Ben booked the flights.", "Cid: The weather is nice.", "Ann: The coffee is cold."]
    lines += ["Cid: The printer is broken.", "Ann: The train is late.", "Cid: My sister moves to Berlin."]
    grounded = ground_summary(Summary(summary="Ben moves to Berlin. Cid's sister moves to Berlin."), transcript_from_text("\n".join(lines)))
    assert grounded.summary == "Cid's sister moves to Berlin." and grounded.sentences_dropped == 1


def test_commitments_and_accepted_requests_become_items_with_owner_due_and_source(meeting):
    items = ground_summary(None, meeting).action_items
    assert [(item.owner, item.task, item.due) for item in items] == [
        ("Bob", "Book the flights and send Alice the invoices", "by Tuesday"),
        ("Alice", "Ask finance for the second payment", "before the end of the month"),
    ]
    request = items[0].source
    assert request.speaker == "Alice" and request.quote.startswith("Can you book the flights")
    assert (request.start, request.end) == (2.0, 3.0)


def test_someone_elses_plan_and_a_declined_request_are_not_items(meeting):
    tasks = " ".join(item.task for item in ground_summary(None, meeting).action_items)
    assert "Berlin" not in tasks and "posters" not in tasks


def test_decisions_come_from_the_transcript_with_their_source(meeting):
    [decision] = ground_summary(Summary(summary=""), meeting).decisions
    assert decision.text == "We agreed to travel on the 3rd of June"
    assert decision.source.speaker == "Alice"


def test_items_survive_a_failed_summary_stage_and_the_model_text_is_never_kept(meeting):
    failed = Summary.empty("summary stage failed: WorkerCrashed")
    grounded = ground_summary(failed, meeting)
    assert grounded.warning == failed.warning and grounded.summary == ""
    assert len(grounded.action_items) == 2
    with_model = ground_summary(Summary(summary="", model_action_items=["Dave: buy a boat"]), meeting)
    assert with_model.model_action_items == []
    assert all("boat" not in item.task for item in with_model.action_items)


def test_the_models_wording_is_used_only_when_the_source_turn_backs_every_word():
    transcript = transcript_from_text("Ann: Ben, can you send the slides to Maria?\nBen: Sure, I will send them tonight.")
    plain = ground_summary(None, transcript).action_items[0]
    assert (plain.owner, plain.task, plain.due) == ("Ben", "Send the slides to Maria", "tonight")
    backed = ["Ben: Send the slides to Maria, who asked."]
    assert ground_summary(Summary(summary="", model_action_items=backed), transcript).action_items[0].task == plain.task
    worded = ["Ben: send Maria the slides"]
    assert ground_summary(Summary(summary="", model_action_items=worded), transcript).action_items[0].task == (
        "Send Maria the slides"
    )


def test_a_dated_statement_is_a_commitment_even_when_asr_dropped_its_will():
    transcript = transcript_from_text("Ann: I send the slides my Friday.\nBen: I liked the talk.\nAnn: I am away next week.")
    [item] = ground_summary(None, transcript).action_items
    assert (item.owner, item.task, item.due) == ("Ann", "Send the slides", "Friday")


@pytest.mark.parametrize(
    ("text", "due"),
    [
        ("I will send it by Tuesday.", "by Tuesday"),
        ("I'll do it before the end of the month.", "before the end of the month"),
        ("Let me check next week.", "next week"),
        ("We ship on Friday afternoon.", "on Friday afternoon"),
        ("Send it by the 15th of March.", "by the 15th of March"),
        ("I'll call them within two days.", "within two days"),
        ("By the way, I will call him.", None),
    ],
)
def test_find_due_reads_the_deadline_as_said(text, due):
    assert find_due(text) == due


def test_names_are_mapped_to_the_speaker_labels_they_address():
    segments = [
        Segment(id=0, start=0, end=2, text="Thanks. Can you draft the agenda, Carol?", speaker="SPEAKER_00"),
        Segment(id=1, start=2, end=4, text="Sure, I will draft it by Monday.", speaker="SPEAKER_02"),
        Segment(id=2, start=4, end=6, text="Hi, this is Dan from sales.", speaker="SPEAKER_01"),
    ]
    transcript = Transcript(segments=segments, language="en", language_probability=1, duration_s=6, model="m")
    assert speaker_names(speaker_sentences(transcript)) == {"Carol": "SPEAKER_02", "Dan": "SPEAKER_01"}
    [item] = ground_summary(None, transcript).action_items
    assert (item.owner, item.task, item.due) == ("SPEAKER_02", "Draft the agenda", "by Monday")


def test_word_timestamps_give_each_sentence_its_own_span():
    words = [
        Word(0.0, 0.4, " Okay.", 0.9),
        Word(1.0, 1.3, " I", 0.9),
        Word(1.3, 1.6, " will", 0.9),
        Word(1.6, 2.0, " call", 0.9),
        Word(2.0, 2.5, " Maria", 0.9),
        Word(2.5, 3.0, " tomorrow.", 0.9),
    ]
    segment = Segment(id=0, start=0.0, end=3.0, text="".join(w.text for w in words), words=words, speaker="SPEAKER_01")
    transcript = Transcript(segments=[segment], language="en", language_probability=1, duration_s=3, model="m")
    [item] = ground_summary(None, transcript).action_items
    assert (item.source.start, item.source.end, item.source.quote) == (1.0, 3.0, "I will call Maria tomorrow.")
    assert (item.owner, item.task, item.due) == ("SPEAKER_01", "Call Maria", "tomorrow")


def test_a_grounded_summary_round_trips_through_json_and_pickle(meeting):
    grounded = ground_summary(Summary(summary="Alice and Bob review the budget.", model="m.gguf"), meeting)
    assert Summary.from_dict(json.loads(json.dumps(grounded.to_dict()))) == grounded
    assert pickle.loads(pickle.dumps(grounded)) == grounded
    data = grounded.to_dict()
    assert data["action_items"][0]["source"]["quote"].startswith("Can you book")
    assert data["sentences_dropped"] == 0 and data["decisions"][0]["source"]["speaker"] == "Alice"


def test_plain_text_lines_keep_their_speaker():
    transcript = transcript_from_text("Diane: Hello?\n\nnarration without a label\nSheila Smith: Hi there.")
    assert [(s.speaker, s.text, s.start) for s in transcript.segments] == [
        ("Diane", "Hello?", 0.0),
        (None, "narration without a label", 1.0),
        ("Sheila Smith", "Hi there.", 2.0),
    ]
    assert transcript.speakers == ["Diane", "Sheila Smith"]
