"""Subtitle layout: readable cues cut from word timestamps, a speaker a cue, karaoke variants that parse."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from pathlib import Path

import pytest
import srt
import webvtt
from asr_helpers import run_cli
from speaker_fixtures import render_meeting
from subtitle_checks import check_readable, srt_blocks

from isoscribe.outputs import to_srt, to_vtt
from isoscribe.subtitles import SubtitleLayout, layout_cues, wrap_lines
from isoscribe.transcript import Segment, Transcript, Word

STORY = (
    "The committee met on Monday to review the budget. Several members asked why the travel costs had "
    "doubled since last year, and the treasurer promised a detailed answer. After a long discussion, "
    "everyone agreed to postpone the decision until the auditors have finished their report. "
    "The next meeting will take place in two weeks, in the same room as always."
)


def _timed(text: str, start: float, words_per_s: float, speaker: str | None = None) -> list[Word]:
    """Words spoken at a steady rate, with a 0.6 s pause after each sentence."""
    words, clock = [], start
    for token in text.split():
        words.append(Word(clock, clock + 0.8 / words_per_s, " " + token, 0.9, speaker))
        clock += 1 / words_per_s + (0.6 if token.endswith(".") else 0.0)
    return words


def _transcript(*segments: list[Word]) -> Transcript:
    built = [
        Segment(i, words[0].start, words[-1].end, "".join(w.text for w in words), words, speaker=words[0].speaker)
        for i, words in enumerate(segments)
    ]
    return Transcript(built, "en", 0.99, built[-1].end + 1, "tiny.en", speakers=sorted({w.speaker for s in segments for w in s if w.speaker}))


def test_a_paragraph_becomes_readable_cues_cut_at_sentence_ends() -> None:
    transcript = _transcript(_timed(STORY, 1.0, 2.6))
    blocks = srt_blocks(to_srt(transcript))
    check_readable(blocks)
    assert " ".join(" ".join(text.splitlines()) for _, _, text in blocks) == " ".join(STORY.split())
    cue_starts = [text.split()[0] for _, _, text in blocks]
    assert sum(text.rstrip().endswith(".") for _, _, text in blocks) == 4, blocks
    assert {"The", "Several", "After"} <= set(cue_starts), blocks
    assert all(0 <= cue.start - cue.words[0].start <= 1.0 for cue in layout_cues(transcript))


def test_narrow_cues_on_fast_speech_stay_in_time() -> None:
    """One word a cue cannot each have 0.8 s when three words come a second: the reading time gives way
    rather than let every cue wait for the last (a minute of speech once ran two minutes of cues)."""
    transcript = _transcript(_timed(" ".join([STORY] * 3), 0.0, 3.0, "SPEAKER_01"))
    layout = SubtitleLayout(max_line_width=20, max_line_count=1)
    cues = layout_cues(transcript, layout)
    assert all(0 <= cue.start - cue.words[0].start <= 3.0 + 1e-6 for cue in cues)
    assert all(later.start >= earlier.end for earlier, later in zip(cues, cues[1:]))
    assert cues[-1].end <= transcript.segments[-1].end + 3.0 + layout.min_cue_duration_s


def test_the_last_cue_ends_with_the_audio_however_long_its_reading_time() -> None:
    """A long last sentence spoken fast near the end: its reading time once ran the cue past the audio's end
    (LibriSpeech 61-70968-0000, 4.905 s long, had its last cue until 5.2 s)."""
    words = _timed("who had vanished behind the curtain on the left.", 2.8, 5.0)
    transcript = _transcript(words)
    transcript.duration_s = words[-1].end + 0.2
    cues = layout_cues(transcript)
    assert cues[-1].end == pytest.approx(transcript.duration_s)
    for text in (to_srt(transcript), to_vtt(transcript)):
        assert "00:00:05.2" not in text.replace(",", ".")
    assert [c.end for c in srt.parse(to_srt(transcript))][-1].total_seconds() <= transcript.duration_s


def test_cues_lagging_behind_fast_speech_are_pulled_back_inside_the_audio() -> None:
    """Narrow cues on fast speech wait for the one before (up to 3 s behind their words): near the end of the
    audio the last of them started after it (sense_and_sensibility 0930, 3.29 s: a cue until 4.09 s)."""
    transcript = _transcript(_timed(STORY, 0.0, 4.0, "SPEAKER_01"))
    transcript.duration_s = transcript.segments[-1].end + 0.1
    layout = SubtitleLayout(max_line_width=10, max_line_count=1)
    assert layout_cues(replace(transcript, duration_s=0.0), layout)[-1].end > transcript.duration_s + 1  # how far they lag
    for karaoke in (False, True):
        blocks = srt_blocks(to_srt(transcript, SubtitleLayout(max_line_width=10, max_line_count=1, highlight_words=karaoke)))
        assert all(0 <= start < end <= round(transcript.duration_s, 3) for start, end, _ in blocks)
        assert all(later[0] >= earlier[1] for earlier, later in zip(blocks, blocks[1:]))


def test_a_speaker_change_starts_a_new_cue_marked_with_the_speaker() -> None:
    words = _timed("I think we should ship on Friday", 0.0, 2.5, "Alice") + _timed("No, Monday is safer", 3.0, 2.5, "Bob")
    transcript = _transcript(words)
    cues = layout_cues(transcript)
    assert [cue.speaker for cue in cues] == ["Alice", "Bob"]
    assert all(len({w.speaker for w in cue.words}) == 1 for cue in cues)
    assert [s.content for s in srt.parse(to_srt(transcript))] == ["[Alice] I think we should ship on Friday", "[Bob] No, Monday is safer"]
    captions = list(webvtt.from_buffer(io.StringIO(to_vtt(transcript))))
    assert [c.voice for c in captions] == ["Alice", "Bob"]


def test_a_word_without_a_leading_space_keeps_the_segments_word_times_and_speakers() -> None:
    """Whisper gives "10%" as " 10" and "%": the cues still follow the words, so a speaker change inside
    the segment still starts a new cue (spreading the text over the segment would give both to one speaker)."""
    words = [
        Word(1.0, 1.3, " Prices", 0.9, "Alice"), Word(1.3, 1.5, " rose", 0.9, "Alice"), Word(1.5, 1.8, " 10", 0.9, "Alice"),
        Word(1.8, 1.9, "%", 0.9, "Alice"), Word(1.9, 2.3, " today.", 0.9, "Alice"), Word(3.0, 3.4, " Really?", 0.9, "Bob"),
    ]
    segment = Segment(0, 0.0, 3.4, " Prices rose 10% today. Really?", words, speaker="Alice")
    cues = layout_cues(Transcript([segment], "en", 0.99, 4.0, "tiny.en", speakers=["Alice", "Bob"]))
    assert [(cue.speaker, cue.text, cue.start) for cue in cues] == [("Alice", "Prices rose 10% today.", 1.0), ("Bob", "Really?", 3.0)]


def test_lines_are_balanced_and_a_long_word_is_never_split() -> None:
    assert wrap_lines("one two three four five six seven".split(), 42, 2) == ("one two three four five six seven",)
    assert wrap_lines("one two three four five six seven".split(), 42, 2, first_indent=13) == (
        "one two", "three four five six seven",
    )
    assert wrap_lines(("word " * 12).split(), 42, 2) == ("word word word word word word", "word word word word word word")
    assert wrap_lines(("word " * 20).split(), 42, 2) is None
    assert wrap_lines(["a" * 50], 42, 2) == ("a" * 50,)


def test_a_segment_without_word_times_is_spread_over_its_span() -> None:
    segment = Segment(0, 0.0, 30.0, " " + STORY)
    transcript = Transcript([segment], "en", 0.99, 30.0, "tiny.en")
    blocks = srt_blocks(to_srt(transcript))
    assert all(end - start <= 7.0 + 1e-6 for start, end, _ in blocks)
    assert " ".join(" ".join(text.splitlines()) for *_, text in blocks) == " ".join(STORY.split())


def test_karaoke_srt_underlines_each_word_in_turn_and_parses() -> None:
    transcript = _transcript(_timed("Ship it on Friday.", 2.0, 2.0, "Alice"))
    layout = SubtitleLayout(highlight_words=True)
    frames = list(srt.parse(to_srt(transcript, layout)))
    assert [re.findall(r"<u>(.*?)</u>", f.content) for f in frames] == [["Ship"], ["it"], ["on"], ["Friday."]]
    assert all(f.content.startswith("[Alice] ") for f in frames)
    assert [f.start.total_seconds() for f in frames] == pytest.approx([2.0, 2.5, 3.0, 3.5])
    assert all(a.end == b.start for a, b in zip(frames, frames[1:]))


def test_karaoke_words_without_time_of_their_own_make_no_empty_cue_or_backward_timestamp() -> None:
    words = _timed("Ship it on Friday.", 2.0, 2.0, "Alice")
    words[1] = Word(words[0].start, words[0].start, words[1].text, 0.9, "Alice")  # Whisper's zero-length words
    words[2] = Word(words[0].start, words[0].start, words[2].text, 0.9, "Alice")
    transcript = _transcript(words)
    frames = list(srt.parse(to_srt(transcript, SubtitleLayout(highlight_words=True))))
    assert frames and all(f.end > f.start for f in frames)
    vtt = to_vtt(transcript, SubtitleLayout(highlight_words=True))
    stamps = re.findall(r"<(\d\d:\d\d:\d\d\.\d\d\d)>", vtt)
    assert stamps == sorted(set(stamps)) and "00:00:02.000" not in stamps


def test_karaoke_vtt_carries_word_timestamps_and_parses() -> None:
    transcript = _transcript(_timed("Ship it on Friday.", 2.0, 2.0))
    vtt = to_vtt(transcript, SubtitleLayout(highlight_words=True))
    captions = list(webvtt.from_buffer(io.StringIO(vtt)))
    assert len(captions) == 1
    assert re.findall(r"<(\d\d:\d\d:\d\d\.\d\d\d)>", vtt) == ["00:00:02.500", "00:00:03.000", "00:00:03.500"]
    assert re.sub(r"<[^>]+>", "", captions[0].text) == "Ship it on Friday."


@pytest.mark.slow
def test_a_diarized_meeting_from_the_cli_has_readable_one_speaker_cues(tmp_path: Path) -> None:
    meeting = render_meeting(tmp_path / "meeting.wav")
    out = tmp_path / "meeting.srt"
    result = run_cli("transcribe", str(meeting), "--diarize", "--format", "srt", "--out", str(out), cwd=tmp_path, timeout_s=300)
    assert result.returncode == 0, result.stderr
    blocks = srt_blocks(out.read_text())
    assert len(blocks) >= 9
    check_readable(blocks)
    assert all(re.fullmatch(r"\[SPEAKER_\d\d\] .*", text.splitlines()[0]) for *_, text in blocks), blocks


def test_the_layout_comes_from_the_settings(tmp_path: Path) -> None:
    from isoscribe.config import load_settings
    from isoscribe.outputs import format_transcript, write_outputs

    settings = load_settings(overrides={"subtitles": {"max_line_width": 24, "max_line_count": 1, "highlight_words": True}})
    transcript = _transcript(_timed(STORY, 0.0, 2.6))
    printed = format_transcript(transcript, "srt", subtitles=settings.subtitles.layout())
    written = write_outputs(transcript, None, tmp_path, "story", ["vtt"], settings.subtitles.layout())
    assert all(len(s.content.replace("<u>", "").replace("</u>", "")) <= 24 for s in srt.parse(printed))
    assert "<u>" in printed and re.search(r"<\d\d:\d\d:\d\d\.\d\d\d>", written["vtt"].read_text())


def test_cli_flags_set_the_layout() -> None:
    from isoscribe.cli.parser import build_parser, settings_overrides
    from isoscribe.config import load_settings

    args = build_parser().parse_args(
        ["run", "a.wav", "--out", "o", "--max-line-width", "30", "--max-line-count", "1", "--max-cue-duration", "4",
         "--highlight-words"]
    )
    layout = load_settings(overrides=settings_overrides(args)).subtitles.layout()
    assert (layout.max_line_width, layout.max_line_count, layout.max_cue_duration_s, layout.highlight_words) == (
        30, 1, 4.0, True
    )
