"""Overlapped speech: the second voice gets its own (overlapping) turn; words stay with the dominant one."""

from __future__ import annotations

import numpy as np

from isoscribe.speakers import assign_speakers
from isoscribe.stages.local_speakers import CHUNK_S, LocalActivity
from isoscribe.stages.overlap import TWO_VOICES_PROBABILITY, add_overlap_turns, overlap_regions
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


def test_overlap_is_where_the_chunks_hearing_a_frame_give_two_voices_a_mean_probability_above_the_threshold() -> None:
    """Chunks at 0 s and 5 s. At 6-7 s both give two voices 0.3 (mean 0.3); at 8-9 s the first gives 0.3
    and the second 0.05 (mean 0.175); at 3-4 s only the first hears it (0.3); at 2-2.1 s it is too
    short: overlaps 3-4 s and 6-7 s at the 0.2 shipped, and none at 0.5."""
    step_s = 0.02
    times = np.arange(int(CHUNK_S / step_s)) * step_s
    two_voices = np.zeros((2, times.size), dtype=np.float32)
    two_voices[0, (times >= 6.0) & (times < 7.0)] = 0.3
    two_voices[1, (times >= 1.0) & (times < 2.0)] = 0.3
    two_voices[0, (times >= 2.0) & (times < 2.1)] = 0.9
    two_voices[0, (times >= 3.0) & (times < 4.0)] = 0.3
    two_voices[0, (times >= 8.0) & (times < 9.0)] = 0.3
    two_voices[1, (times >= 3.0) & (times < 4.0)] = 0.05
    active = np.zeros((2, times.size, 3), dtype=np.uint8)
    activity = LocalActivity(np.array([0.0, 5.0]), active, step_s, two_voices)
    assert TWO_VOICES_PROBABILITY == 0.2
    regions = overlap_regions(activity, frame_duration_s=0.0)
    assert [(round(a, 2), round(b, 2)) for a, b in regions] == [(3.0, 4.0), (6.0, 7.0)]
    assert overlap_regions(activity, frame_duration_s=0.0, threshold=0.5) == []
