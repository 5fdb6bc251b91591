"""Every output format parses back with a real parser; files are written atomically."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import srt
import webvtt

from isoscribe.outputs import (
    format_transcript,
    to_json,
    to_rttm,
    to_srt,
    to_summary_md,
    to_tsv,
    to_txt,
    to_vtt,
    write_outputs,
)
from isoscribe.transcript import ActionItem, Decision, Segment, SourceSpan, SpeakerTurn, Summary, Transcript, Word
from isoscribe.summary.types import SummarySentence

_SOURCE = SourceSpan(start=24.3, end=27.0, speaker="SPEAKER_01", quote="I will send the budget draft to finance by Tuesday.")
_ITEM = ActionItem(owner="SPEAKER_01", task="Send the budget draft to finance", due="by Tuesday", source=_SOURCE)


def _transcript(diarized: bool) -> Transcript:
    speaker = (lambda s: s) if diarized else (lambda s: None)
    segments = [
        Segment(0, 0.0, 2.5, "Hello, and welcome <everyone> --> to the meeting.",
                [
                    Word(0.0, 0.5, " Hello,", 0.9, speaker("SPEAKER_00")),
                    Word(0.6, 2.5, " and welcome", 0.8, speaker("SPEAKER_00")),
                ],
                speaker=speaker("SPEAKER_00")),
        Segment(1, 2.7, 3661.25, "Thanks.\tSee you & bye.",
                [Word(2.7, 3661.25, " Thanks.", 0.7, speaker("SPEAKER_01"))],
                speaker=speaker("SPEAKER_01")),
    ]
    turns = [SpeakerTurn(0.0, 2.5, "SPEAKER_00"), SpeakerTurn(2.7, 3661.25, "SPEAKER_01")] if diarized else []
    return Transcript(
        segments=segments, language="en", language_probability=0.98, duration_s=3662.0, model="tiny.en",
        speakers=["SPEAKER_00", "SPEAKER_01"] if diarized else [], speaker_turns=turns,
        timings_s={"transcribe": 1.5}, source="/data/team meeting.wav",
    )


@pytest.mark.parametrize("diarized", [True, False])
def test_json_round_trips_to_the_same_transcript(diarized: bool) -> None:
    transcript = _transcript(diarized)
    data = json.loads(to_json(transcript))
    assert data["schema_version"] == 1 and data["text"] == transcript.text
    assert Transcript.from_dict(data) == transcript


def test_json_carries_the_summary_with_structured_action_items() -> None:
    dropped = SummarySentence("We met on Mars.", False, [], "Mars is not in the transcript")
    summary = Summary("We met.", [_ITEM], model="smollm2", sentences=[dropped])
    data = json.loads(to_json(_transcript(True), summary))
    assert data["summary"]["action_items"] == [
        {
            "owner": "SPEAKER_01",
            "task": "Send the budget draft to finance",
            "due": "by Tuesday",
            "source": {"start": 24.3, "end": 27.0, "speaker": "SPEAKER_01", "quote": _SOURCE.quote},
        }
    ]
    assert data["summary"]["sentences"][0]["supported"] is False
    assert Summary.from_dict(data["summary"]) == summary


@pytest.mark.parametrize("diarized", [True, False])
def test_srt_parses_with_speaker_labels(diarized: bool) -> None:
    subtitles = list(srt.parse(to_srt(_transcript(diarized))))
    assert [s.index for s in subtitles] == list(range(1, len(subtitles) + 1))
    assert subtitles[0].start.total_seconds() == pytest.approx(0.0)
    assert subtitles[0].content.startswith("[SPEAKER_00] Hello") == diarized
    assert subtitles[-1].content.endswith("bye.")
    assert all(s.end - s.start <= timedelta(seconds=7) for s in subtitles)
    spoken = " ".join(re.sub(r"\[SPEAKER_0\d\] ", "", s.content).replace("\n", " ") for s in subtitles)
    assert spoken == " ".join(_transcript(diarized).text.split())


@pytest.mark.parametrize("diarized", [True, False])
def test_vtt_parses_with_voice_tags(diarized: bool) -> None:
    captions = list(webvtt.from_buffer(io.StringIO(to_vtt(_transcript(diarized)))))
    assert captions[0].start == "00:00:00.000"
    if diarized:
        assert captions[0].voice == "SPEAKER_00" and captions[-1].voice == "SPEAKER_01"
    assert html.unescape(captions[0].text).replace("\n", " ") == "Hello, and welcome <everyone> --> to the meeting."


def test_tsv_parses_with_milliseconds_speaker_and_language() -> None:
    transcript = _transcript(True)
    transcript.segments[1].language = "de"
    rows = list(csv.DictReader(io.StringIO(to_tsv(transcript)), delimiter="\t"))
    assert rows[1] == {
        "start": "2700", "end": "3661250", "speaker": "SPEAKER_01", "language": "de", "text": "Thanks. See you & bye."
    }
    assert rows[0]["language"] == ""


def test_rttm_lines_follow_the_nist_fields() -> None:
    from pyannote.core import Annotation, Segment as Span

    lines = to_rttm(_transcript(True)).splitlines()
    assert len(lines) == 2
    annotation = Annotation()
    for line in lines:
        kind, uri, channel, start, duration, ortho, stype, name, conf, lookahead = line.split(" ")
        assert (kind, uri, channel) == ("SPEAKER", "team_meeting", "1")
        assert (ortho, stype, conf, lookahead) == ("<NA>", "<NA>", "<NA>", "<NA>")
        annotation[Span(float(start), float(start) + float(duration))] = name
    assert annotation.labels() == ["SPEAKER_00", "SPEAKER_01"]
    assert to_rttm(_transcript(False)).split()[7] == "UNKNOWN"


def test_txt_labels_speakers_only_when_diarized() -> None:
    assert to_txt(_transcript(True)).splitlines()[0].startswith("SPEAKER_00: Hello")
    assert to_txt(_transcript(False)).splitlines()[0].startswith("Hello")
    named = _transcript(True)
    named.segments[0].speaker = "Bo\nb\tLee"  # a voice sample's file name may hold any of these
    assert to_txt(named).splitlines()[0].startswith("Bo b Lee: Hello")


def test_a_speaker_named_with_other_digits_keeps_the_name() -> None:
    from isoscribe.stages.diarize import _relabel
    from isoscribe.transcript import SpeakerTurn

    turns = _relabel([SpeakerTurn(0, 1, "3"), SpeakerTurn(1, 2, "²"), SpeakerTurn(2, 3, "0")])
    assert [turn.speaker for turn in turns] == ["SPEAKER_00", "²", "SPEAKER_01"]


def test_summary_markdown_lists_action_items_decisions_unsupported_sentences_or_the_warning() -> None:
    decision = Decision(text="We agreed to ship on Friday", source=replace(_SOURCE, start=3725.0))
    dropped = SummarySentence("We met on Mars.", False, [], "Mars is not in the transcript")
    summary = Summary("We planned the release.", [_ITEM], [decision], sentences=[dropped])
    text = to_summary_md(summary)
    assert "We planned the release." in text and "~~We met on Mars.~~ (Mars is not in the transcript)" in text
    assert "## Action items\n\n- [SPEAKER_01, by Tuesday] Send the budget draft to finance (00:24)\n" in text
    assert "## Decisions\n\n- We agreed to ship on Friday (1:02:05)\n" in text
    unowned = replace(_ITEM, owner=None, due=None)
    assert "- [unassigned] Send the budget draft" in to_summary_md(Summary("", [unowned]))
    assert "LLM crashed" in to_summary_md(Summary.empty("LLM crashed"))


def test_summary_markdown_shows_what_was_said_literally() -> None:
    """Speech or a model's text with markdown's characters neither formats, nor hides, nor breaks a line."""
    item = replace(_ITEM, owner="Ann_Lee", task="Review the *draft* and <b>sign</b> it _today_")
    summary = Summary("1. The budget grew by 3.5 %.\n# Not a heading", [item], sentences=[
        SummarySentence("- [link](http://x)", False, [], "not said"),
    ])
    text = to_summary_md(summary, title="team_meeting")
    assert text.startswith("# team_meeting\n")
    assert "\n1\\. The budget grew by 3.5 %. \\# Not a heading\n" in text
    assert "- [Ann_Lee, by Tuesday] Review the \\*draft\\* and \\<b\\>sign\\</b\\> it \\_today\\_ (00:24)\n" in text
    assert "- ~~\\- \\[link\\](http://x)~~ (not said)\n" in text


def test_write_outputs_writes_every_format_atomically(tmp_path: Path) -> None:
    transcript = _transcript(True)
    summary = Summary("We met.", [_ITEM])
    formats = ["json", "txt", "srt", "vtt", "tsv", "rttm", "summary"]
    written = write_outputs(transcript, summary, tmp_path, "meeting", formats)
    assert sorted(written) == sorted(formats)
    assert written["summary"].name == "meeting.summary.md"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written.values()), "no temp files"
    for fmt in formats[:-1]:
        expected = format_transcript(transcript, fmt, summary)
        assert written[fmt].read_text(encoding="utf-8") == expected
    assert "summary" not in write_outputs(transcript, None, tmp_path / "nosummary", "meeting", formats)


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown output format"):
        format_transcript(_transcript(False), "docx")


def test_speaker_names_cannot_break_a_format() -> None:
    """A name with spaces (or a tab, or tags, from an older job) keeps each format's structure."""
    words = [Word(0.0, 0.5, " Hi", 0.9, "Ann\tLee <b>")]
    transcript = Transcript([Segment(0, 0.0, 0.5, " Hi", words, "Ann\tLee <b>")], "en", 1.0, 0.5, "tiny.en",
                            ["Ann\tLee <b>"])
    rttm = to_rttm(transcript).split()
    assert len(rttm) == 10 and rttm[7] == "Ann_Lee_<b>", rttm
    row = to_tsv(transcript).splitlines()[1].split("\t")
    assert len(row) == 5 and row[2] == "Ann Lee <b>", row
    assert "<v Ann Lee &lt;b&gt;>Hi" in to_vtt(transcript)
