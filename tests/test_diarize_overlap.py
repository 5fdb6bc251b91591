"""Overlapped speech: the second voice gets its own (overlapping) turn; words stay with the dominant one."""

from __future__ import annotations

from isoscribe.speakers import assign_speakers
from isoscribe.stages.overlap import add_overlap_turns
from isoscribe.transcript import Segment, SpeakerTurn, Transcript, Word


def _turns() -> list[SpeakerTurn]:
    return [SpeakerTurn(0.0, 6.0, "A"), SpeakerTurn(6.5, 10.0, "B"), SpeakerTurn(10.0, 14.0, "C")]


def test_an_overlap_inside_a_turn_goes_to_the_nearest_other_speaker() -> None:
    """A back-channel at 5-6 s inside A's turn: B speaks next, 0.5 s later, so B is the second voice."""
    turns = add_overlap_turns(_turns(), [(5.0, 6.0)])
    extra = [t for t in turns if t.overlapped]
    assert [(t.start, t.end, t.speaker) for t in extra] == [(5.0, 6.0, "B")]
    assert [t.start for t in turns] == sorted(t.start for t in turns)


def test_the_second_voice_gets_only_the_part_it_does_not_already_hold() -> None:
    """An overlap at 9-11 s across B's end and C's start, a second in each: B (first) is taken as
    dominant, C as the second voice, and C's own turn already covers 10-11 s: only 9-10 s is added."""
    turns = add_overlap_turns(_turns(), [(9.0, 11.0)])
    extra = [(t.start, t.end, t.speaker) for t in turns if t.overlapped]
    assert extra == [(9.0, 10.0, "C")]


def test_a_single_speaker_file_gets_no_overlap_turns() -> None:
    turns = [SpeakerTurn(0.0, 10.0, "A")]
    assert add_overlap_turns(turns, [(2.0, 3.0)]) == turns


def test_words_in_overlapped_speech_go_to_the_dominant_speaker() -> None:
    """The overlapped turn covers the words as fully as the dominant one and starts first: still A."""
    turns = [SpeakerTurn(0.0, 3.0, "B"), SpeakerTurn(3.0, 8.0, "A"), SpeakerTurn(3.0, 4.5, "B", overlapped=True)]
    words = [Word(3.2, 3.6, " yes", 0.9), Word(3.7, 4.2, " right", 0.9), Word(5.0, 5.5, " then", 0.9)]
    segment = Segment(id=0, start=3.2, end=5.5, text="yes right then", words=words)
    transcript = assign_speakers(Transcript(segments=[segment], language="en", language_probability=1.0,
                                            duration_s=8.0, model="test", speaker_turns=turns))
    assert [w.speaker for s in transcript.segments for w in s.words] == ["A", "A", "A"]
    assert transcript.speakers == ["B", "A"]
