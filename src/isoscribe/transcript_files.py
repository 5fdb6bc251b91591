"""Transcripts a user brings to ``isoscribe summarize`` besides isoscribe JSON and plain text: SRT, WebVTT and
TSV, as isoscribe, Whisper and subtitle editors write them. Each cue or row keeps its times and its speaker
(``[SPEAKER_00] `` in SRT, ``<v SPEAKER_00>`` in WebVTT, a ``Name: `` label, the speaker column of a TSV);
cue numbers, timings, tags and headers are no part of the text."""

from __future__ import annotations

import csv
import html
import re

from isoscribe.summary.text import speaker_label
from isoscribe.transcript import Segment, Transcript

__all__ = ["SUBTITLE_SUFFIXES", "is_subtitles", "transcript_from_subtitles", "transcript_from_tsv"]

SUBTITLE_SUFFIXES = (".srt", ".vtt")
_CUE_TIMES = re.compile(r"^\s*((?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})\s*-->\s*((?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})")
_VOICE = re.compile(
    r"^<v(?:\.[^\s>]*)?\s+([^>]+)>"
    r"|^\[(?!(?i:music|applause|laughter|noise|silence|inaudible|crosstalk|blank_audio)\])([A-Z0-9][^\]]*)\]\s+(?=\S)"
)
"""A cue's speaker: WebVTT's voice tag, or "[SPEAKER_00] " as isoscribe writes it, but not a sound ("[laughs] ",
"[Music] "), which the summary's cleaner drops with the other markup."""
_TAG = re.compile(r"<[^>]*>")
_DIALOGUE_DASH = re.compile(r"^-\s+")
"""A subtitle line's "- " that marks a line of dialogue."""


def is_subtitles(suffix: str, text: str) -> bool:
    return suffix.lower() in SUBTITLE_SUFFIXES or text.lstrip().startswith("WEBVTT")


def transcript_from_subtitles(text: str, kind: str) -> Transcript:
    """SRT or WebVTT cues; a cue shown once per word (karaoke) is one segment."""
    segments: list[Segment] = []
    for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        lines = block.strip("\n").splitlines()
        timing = next((index for index, line in enumerate(lines) if _CUE_TIMES.match(line)), None)
        if timing is None:
            continue  # the WEBVTT header, NOTE, STYLE and REGION blocks, or a stray line
        start, end = (_seconds(value) for value in _CUE_TIMES.match(lines[timing]).groups())
        words = " ".join(_DIALOGUE_DASH.sub("", line.strip()) for line in lines[timing + 1 :] if line.strip())
        speaker = None
        if voice := _VOICE.match(words):
            speaker, words = html.unescape(voice[1] or voice[2]).strip(), words[voice.end() :]
        words = html.unescape(_TAG.sub("", words)).strip()
        if speaker is None:
            speaker, words = speaker_label(words)
        if segments and (segments[-1].text, segments[-1].speaker) == (words, speaker):
            segments[-1].end = max(segments[-1].end, end)
        elif words:
            segments.append(Segment(id=len(segments), start=start, end=end, text=words, speaker=speaker))
    if not segments and text.strip():
        raise ValueError(f"no {kind} cue with text (a cue is a 'start --> end' line and its text)")
    return _transcript(segments, kind)


def transcript_from_tsv(text: str) -> Transcript:
    """Whisper's TSV (start, end in milliseconds, text) and isoscribe's (with speaker and language columns)."""
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or not {"start", "end", "text"} <= set(rows[0]):
        raise ValueError("a TSV transcript has a header line with start, end and text columns")
    segments = []
    for number, row in enumerate(rows, start=2):
        try:
            start, end = float(row["start"]) / 1000, float(row["end"]) / 1000
        except (TypeError, ValueError):
            raise ValueError(f"line {number}: start and end are milliseconds") from None
        if (row["text"] or "").strip():
            speaker = (row.get("speaker") or "").strip() or None
            segments.append(Segment(id=len(segments), start=start, end=end, text=row["text"].strip(), speaker=speaker))
    return _transcript(segments, "tsv")


def _seconds(clock: str) -> float:
    parts = clock.replace(",", ".").split(":")
    return sum(float(part) * 60**power for power, part in enumerate(reversed(parts)))


def _transcript(segments: list[Segment], kind: str) -> Transcript:
    speakers = list(dict.fromkeys(segment.speaker for segment in segments if segment.speaker))
    duration_s = max((segment.end for segment in segments), default=0.0)
    return Transcript(
        segments=segments, language="", language_probability=0.0, duration_s=duration_s, model=kind, speakers=speakers
    )
