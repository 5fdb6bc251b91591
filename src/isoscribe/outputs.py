"""Output writers: json, txt, srt, vtt, tsv, rttm and summary.md (DOCX and PDF: ``isoscribe.exports``).

Speakers carry one label scheme everywhere: the name when known (renamed, or a known speaker), else the
diarizer's ``SPEAKER_00``, ``SPEAKER_01`` …; each format escapes it for its syntax (one line in SRT/TXT,
no tabs in TSV, no whitespace in an RTTM field, entities in a VTT voice tag).

One function per format returns the text; the registry ``isoscribe.formats`` says which format is which
writer and where it is allowed. ``write_outputs`` writes the chosen formats atomically (temp file + rename), so a reader never sees a
half-written file and a crash leaves the previous version in place. The json format is
``Transcript.to_dict()`` plus ``summary`` when there is one: see docs/transcript-schema.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

from isoscribe.files import write_atomic
from isoscribe.subtitles import Cue, SubtitleLayout, layout_cues
from isoscribe.summary.markdown import to_summary_md
from isoscribe.transcript import Segment, Summary, Transcript

__all__ = [
    "to_json",
    "to_txt",
    "to_srt",
    "to_vtt",
    "to_tsv",
    "to_rttm",
    "to_summary_md",
    "format_transcript",
    "output_path",
    "write_outputs",
]

def to_json(transcript: Transcript, summary: Summary | None = None) -> str:
    data = transcript.to_dict()
    if summary is not None:
        data["summary"] = summary.to_dict()
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def to_txt(transcript: Transcript) -> str:
    """One line per segment; ``SPEAKER_00: text`` when diarized."""
    lines = [_labelled(segment, "{speaker}: {text}") for segment in transcript.segments]
    return "\n".join(lines) + ("\n" if lines else "")


def to_srt(transcript: Transcript, layout: SubtitleLayout = SubtitleLayout()) -> str:
    """Cues laid out by ``layout``, ``[Speaker]`` first when diarized; karaoke cues underline each word in turn."""
    blocks = []
    for cue in layout_cues(transcript, layout):
        for start, end, lines in _srt_frames(cue, layout.highlight_words):
            label = f"[{_one_line(cue.speaker)}] " if cue.speaker else ""
            text = "\n".join((label if i == 0 else "") + line for i, line in enumerate(lines))
            blocks.append(f"{len(blocks) + 1}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{text}\n")
    return "\n".join(blocks)


def to_vtt(transcript: Transcript, layout: SubtitleLayout = SubtitleLayout()) -> str:
    """Cues laid out by ``layout`` with ``<v Speaker>`` voice tags; karaoke cues carry a timestamp per word."""
    blocks = ["WEBVTT\n"]
    for cue in layout_cues(transcript, layout):
        lines = _vtt_timed_lines(cue) if layout.highlight_words else [_vtt_escape(line) for line in cue.lines]
        text = "\n".join(lines)
        if cue.speaker:
            text = f"<v {_vtt_escape(_one_line(cue.speaker))}>{text}"
        blocks.append(f"{_clock(cue.start, '.')} --> {_clock(cue.end, '.')}\n{text}\n")
    return "\n".join(blocks)


def _srt_frames(cue: Cue, highlight_words: bool) -> list[tuple[float, float, list[str]]]:
    """The cue once, or once per word with that word underlined, each shown until the next word starts."""
    if not highlight_words:
        return [(cue.start, cue.end, list(cue.lines))]
    starts = [cue.start] + [min(max(w.start, cue.start), cue.end) for w in cue.words[1:]]
    ends = starts[1:] + [cue.end]
    frames = zip(starts, ends)
    # a word with no time of its own (its start clamped to a neighbour's) gets no frame: a cue must last
    return [(start, end, _underlined(cue.lines, index)) for index, (start, end) in enumerate(frames)
            if round(end, 3) > round(start, 3)] or [(cue.start, cue.end, list(cue.lines))]


def _underlined(lines: tuple[str, ...], word_index: int) -> list[str]:
    out, seen = [], 0
    for line in lines:
        tokens = line.split(" ")
        out.append(" ".join(f"<u>{t}</u>" if seen + i == word_index else t for i, t in enumerate(tokens)))
        seen += len(tokens)
    return out


def _vtt_timed_lines(cue: Cue) -> list[str]:
    """Each word after the first is preceded by its start time (WebVTT's karaoke timestamps)."""
    out, seen = [], 0
    last = round(cue.start, 3)
    for line in cue.lines:
        tokens = []
        for token in line.split(" "):
            escaped = _vtt_escape(token)
            moment = round(cue.words[seen].start, 3)
            if seen and last < moment < round(cue.end, 3):  # WebVTT: strictly later than the one before
                escaped = f"<{_clock(moment, '.')}>{escaped}"
                last = moment
            tokens.append(escaped)
            seen += 1
        out.append(" ".join(tokens))
    return out


def to_tsv(transcript: Transcript) -> str:
    """Whisper's tsv (start and end in integer milliseconds) with speaker and language columns."""
    rows = ["start\tend\tspeaker\tlanguage\ttext"]
    for segment in transcript.segments:
        text = re.sub(r"[\t\r\n]+", " ", segment.text.strip())
        rows.append(
            f"{round(segment.start * 1000)}\t{round(segment.end * 1000)}\t{_one_line(segment.speaker or '')}\t"
            f"{segment.language or ''}\t{text}"
        )
    return "\n".join(rows) + "\n"


def to_rttm(transcript: Transcript) -> str:
    """NIST RTTM from the speaker turns; without diarization, segments labelled with their speaker or UNKNOWN.
    The file id is the source's name without its extension, in letters, digits, ``.``, ``_`` and ``-``."""
    uri = re.sub(r"[^\w.-]+", "_", Path(transcript.source).stem).strip("_") or "audio"
    spans: Iterable[tuple[float, float, str]]
    if transcript.speaker_turns:
        spans = ((t.start, t.end, t.speaker) for t in transcript.speaker_turns)
    else:
        spans = ((s.start, s.end, s.speaker or "UNKNOWN") for s in transcript.segments)
    lines = [
        f"SPEAKER {uri} 1 {start:.3f} {end - start:.3f} <NA> <NA> {_rttm_name(speaker)} <NA> <NA>"
        for start, end, speaker in spans
        if end > start
    ]
    return "\n".join(lines) + ("\n" if lines else "")


def format_transcript(
    transcript: Transcript, fmt: str, summary: Summary | None = None, subtitles: SubtitleLayout = SubtitleLayout()
) -> str:
    """The text of one transcript format of ``isoscribe transcribe`` (json, txt, srt, vtt, tsv, rttm)."""
    from isoscribe.formats import RenderContext, find  # the registry imports these writers

    text = find(fmt, "cli").render(transcript, summary, RenderContext(subtitles=subtitles))
    assert isinstance(text, str)
    return text


def output_path(out_dir: Path, stem: str, fmt: str) -> Path:
    from isoscribe.formats import find

    return Path(out_dir) / f"{stem}.{find(fmt, 'batch').extension}"


def write_outputs(
    transcript: Transcript,
    summary: Summary | None,
    out_dir: Path,
    stem: str,
    formats: Iterable[str],
    subtitles: SubtitleLayout = SubtitleLayout(),
) -> dict[str, Path]:
    """Write each format to ``out_dir/stem.EXTENSION`` (``stem.summary.md``); summary is skipped when None."""
    from isoscribe.formats import RenderContext, find

    written: dict[str, Path] = {}
    for name in formats:
        fmt = find(name, "batch")
        if fmt.needs_summary and summary is None:
            continue
        body = fmt.render(transcript, summary, RenderContext(title=f"Summary of {stem}", subtitles=subtitles))
        assert isinstance(body, (str, bytes))
        path = output_path(out_dir, stem, name)
        write_atomic(path, body)
        written[name] = path
    return written


def _labelled(segment: Segment, pattern: str) -> str:
    text = segment.text.strip()
    return pattern.format(speaker=_one_line(segment.speaker), text=text) if segment.speaker else text


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _rttm_name(name: str) -> str:
    """RTTM fields are separated by spaces: a name keeps its words joined by underscores."""
    return re.sub(r"\s+", "_", name.strip()) or "UNKNOWN"


def _one_line(name: str) -> str:
    """A speaker name inside a line-, tab- or tag-structured format: whitespace runs become one space."""
    return re.sub(r"\s+", " ", name).strip()


def _vtt_escape(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("-->", "--&gt;")
