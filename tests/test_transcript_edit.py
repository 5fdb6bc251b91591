"""An edited segment list becomes the next revision: unchanged words keep their timings, changed ones are
interpolated, segments are sorted, monotonic and renumbered, and bad input names its field."""

from __future__ import annotations

import pytest

from isoscribe.transcript import Segment, SpeakerTurn, Transcript, Word
from isoscribe.transcript_edit import EditedSegment, EditedWord, EditError, apply_edit


def _words(speaker: str, *timed: tuple[float, float, str]) -> list[Word]:
    return [Word(start, end, f" {text}", 0.8, speaker) for start, end, text in timed]


def meeting() -> Transcript:
    """A misheard word ("Summary nation") and a stray one-word segment ("I"), as issue 28 found them."""
    first = Segment(0, 0.0, 2.0, " Summary nation is hard.", _words(
        "SPEAKER_00", (0.0, 0.4, "Summary"), (0.4, 0.8, "nation"), (0.8, 1.0, "is"), (1.0, 1.6, "hard.")), "SPEAKER_00",
        language="en")
    stray = Segment(1, 2.0, 2.3, " I", _words("SPEAKER_01", (2.0, 2.3, "I")), "SPEAKER_01", language="en")
    rest = Segment(2, 2.3, 5.0, " will fix it. Then we ship.", _words(
        "SPEAKER_01", (2.3, 2.6, "will"), (2.6, 2.9, "fix"), (2.9, 3.3, "it."), (3.6, 3.9, "Then"), (3.9, 4.2, "we"),
        (4.2, 4.8, "ship.")), "SPEAKER_01", language="en")
    turns = [SpeakerTurn(0.0, 2.0, "SPEAKER_00"), SpeakerTurn(2.0, 5.0, "SPEAKER_01")]
    return Transcript([first, stray, rest], "en", 0.99, 5.0, "tiny.en", ["SPEAKER_00", "SPEAKER_01"], turns,
                      source="meeting.wav", languages=["en"])


def as_edited(transcript: Transcript) -> list[EditedSegment]:
    return [EditedSegment(s.start, s.end, s.text.strip(), s.speaker) for s in transcript.segments]


def _timings(segment: Segment) -> list[tuple[float, float, str]]:
    return [(w.start, w.end, w.text.strip()) for w in segment.words]


def test_an_unchanged_list_keeps_every_word_and_time() -> None:
    before = meeting()
    after = apply_edit(meeting(), as_edited(before))
    assert [_timings(s) for s in after.segments] == [_timings(s) for s in before.segments]
    assert after.speaker_turns == before.speaker_turns and after.text == before.text


def test_an_edited_word_is_interpolated_and_its_neighbours_keep_their_times() -> None:
    edited = as_edited(meeting())
    edited[0] = EditedSegment(0.0, 2.0, "Summarization is hard.", "SPEAKER_00")
    first = apply_edit(meeting(), edited).segments[0]
    assert first.text == " Summarization is hard."
    assert _timings(first)[1:] == [(0.8, 1.0, "is"), (1.0, 1.6, "hard.")], "unchanged words keep their timings"
    new = first.words[0]
    assert (new.start, new.end, new.text) == (0.0, 0.8, " Summarization"), "the gap the two old words left"
    assert new.probability == 1.0 and new.speaker == "SPEAKER_00"


def test_merge_then_split_renumbers_and_keeps_word_times() -> None:
    edited = as_edited(meeting())
    merged = apply_edit(meeting(), [edited[0], EditedSegment(2.0, 5.0, "I will fix it. Then we ship.", "SPEAKER_01")])
    assert [s.id for s in merged.segments] == [0, 1]
    assert _timings(merged.segments[1])[:2] == [(2.0, 2.3, "I"), (2.3, 2.6, "will")]
    split = apply_edit(merged, [
        EditedSegment(3.6, 5.0, "Then we ship.", "SPEAKER_01"),  # sent out of order: sorted by the server
        as_edited(merged)[0],
        EditedSegment(2.0, 3.6, "I will fix it.", "SPEAKER_01"),
    ])
    assert [(s.id, s.start, s.end, s.text) for s in split.segments] == [
        (0, 0.0, 2.0, " Summary nation is hard."),
        (1, 2.0, 3.6, " I will fix it."),
        (2, 3.6, 5.0, " Then we ship."),
    ]
    assert _timings(split.segments[2]) == [(3.6, 3.9, "Then"), (3.9, 4.2, "we"), (4.2, 4.8, "ship.")]


def test_moving_a_segment_to_another_speaker_rebuilds_the_turns() -> None:
    edited = as_edited(meeting())
    edited[1] = EditedSegment(2.0, 2.3, "I", "Carol")
    after = apply_edit(meeting(), edited)
    assert [s.speaker for s in after.segments] == ["SPEAKER_00", "Carol", "SPEAKER_01"]
    assert after.speakers == ["SPEAKER_00", "SPEAKER_01", "Carol"]
    assert [(t.start, t.end, t.speaker) for t in after.speaker_turns] == [
        (0.0, 2.0, "SPEAKER_00"), (2.0, 2.3, "Carol"), (2.3, 5.0, "SPEAKER_01")]
    assert {w.speaker for w in after.segments[1].words} == {"Carol"}


def test_overlapping_segments_are_cut_so_times_never_go_back() -> None:
    edited = as_edited(meeting())
    edited[0] = EditedSegment(0.0, 2.5, "Summary nation is hard.", "SPEAKER_00")
    after = apply_edit(meeting(), edited)
    times = [(s.start, s.end) for s in after.segments]
    assert times[0] == (0.0, 2.0)
    for (start, end), (next_start, _) in zip(times, times[1:]):
        assert start <= end <= next_start
    for segment in after.segments:
        bounds = [segment.start] + [t for w in segment.words for t in (w.start, w.end)] + [segment.end]
        assert bounds == sorted(bounds), segment


def test_words_the_editor_knows_are_kept_when_they_spell_the_text() -> None:
    edited = as_edited(meeting())
    words = (EditedWord(2.0, 2.1, "I"), EditedWord(2.1, 2.3, "do"))
    edited[1] = EditedSegment(2.0, 2.3, "I do", "SPEAKER_01", words=words)
    assert _timings(apply_edit(meeting(), edited).segments[1]) == [(2.0, 2.1, "I"), (2.1, 2.3, "do")]
    sent_back = tuple(EditedWord(w.start, w.end, w.text) for w in meeting().segments[0].words)
    edited[0] = EditedSegment(0.0, 2.0, "Summary nation is hard.", "SPEAKER_00", words=sent_back)
    assert [w.probability for w in apply_edit(meeting(), edited).segments[0].words] == [0.8] * 4


def test_a_deleted_segment_is_gone_and_the_language_carries_over() -> None:
    edited = as_edited(meeting())
    after = apply_edit(meeting(), [edited[0], edited[2]])
    assert after.text == "Summary nation is hard. will fix it. Then we ship."
    assert [s.language for s in after.segments] == ["en", "en"] and after.languages == ["en"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda e: [], "segments"),
        (lambda e: [EditedSegment(3.0, 2.0, "x", "SPEAKER_00")], "segments[0].start"),
        (lambda e: [e[0], EditedSegment(-1.0, 2.0, "x")], "segments[1].start"),
        (lambda e: [e[0], EditedSegment(1.0, float("nan"), "x")], "segments[1].end"),
        (lambda e: [e[0], EditedSegment(1.0, 1e308, "x")], "segments[1].end"),
        (lambda e: [e[0], EditedSegment(2.0, 3.0, "   ")], "segments[1].text"),
        (lambda e: [EditedSegment(0.0, 2.0, "a b", words=(EditedWord(1.0, 1.5, "a"), EditedWord(0.5, 0.9, "b")))],
         "segments[0].words[1].start"),
    ],
)
def test_bad_input_names_its_field(change, field: str) -> None:
    with pytest.raises(EditError) as refused:
        apply_edit(meeting(), change(as_edited(meeting())))
    assert refused.value.field == field
