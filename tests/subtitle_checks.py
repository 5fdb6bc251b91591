"""Shared by the subtitle tests: what makes cues readable, and SRT/VTT read back with standard parsers."""

from __future__ import annotations

import io
import re

import srt
import webvtt

from isoscribe.subtitles import SubtitleLayout

SRT_LABEL = re.compile(r"^\[([^\]]*)\] ")


def check_readable(
    blocks: list[tuple[float, float, str]], layout: SubtitleLayout = SubtitleLayout(), audio_end_s: float | None = None
) -> None:
    """Each cue: 1..max_line_count lines of at most max_line_width, shown min..max cue duration, at most
    max_chars_per_s (the speaker label not counted), in time order without overlap; with ``audio_end_s``, none
    past it, and the last ones, pulled back to end there one after another, may be shorter and faster (the
    audio leaves them no more time)."""
    pulled_back = len(blocks)
    if audio_end_s is not None and blocks and blocks[-1][1] >= round(audio_end_s, 3) - 1e-6:
        pulled_back -= 1
        while pulled_back and blocks[pulled_back - 1][1] >= blocks[pulled_back][0] - 1e-6:
            pulled_back -= 1
    previous_end = 0.0
    for index, (start, end, text) in enumerate(blocks):
        lines = text.splitlines()
        assert 1 <= len(lines) <= layout.max_line_count, text
        assert all(len(line) <= layout.max_line_width for line in lines), text
        assert end - start <= layout.max_cue_duration_s + 1e-6, (start, end, text)
        assert start >= previous_end - 1e-6, (start, previous_end)
        previous_end = end
        if audio_end_s is not None:
            assert end <= round(audio_end_s, 3) + 1e-6, (start, end, text, audio_end_s)
        if index >= pulled_back:
            continue
        assert end - start >= layout.min_cue_duration_s - 1e-6, (start, end, text)
        spoken = SRT_LABEL.sub("", " ".join(lines))
        assert len(spoken) / (end - start) <= layout.max_chars_per_s + 1e-6, (start, end, text)


def srt_blocks(text: str) -> list[tuple[float, float, str]]:
    return [(s.start.total_seconds(), s.end.total_seconds(), s.content) for s in srt.parse(text)]


def vtt_captions(text: str) -> list[webvtt.Caption]:
    return list(webvtt.from_buffer(io.StringIO(text)))
