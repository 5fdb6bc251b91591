"""DOCX and PDF exports (issue 28) and the one speaker label scheme, escaped per format (issue 23)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import webvtt
from docx import Document
from pypdf import PdfReader
from test_transcript_edit import meeting

from isoscribe.exports import segment_clock
from isoscribe.formats import allowed, find
from isoscribe.logs import configure_logging
from isoscribe.outputs import to_rttm, to_srt, to_tsv, to_txt, to_vtt, write_outputs
from isoscribe.summary.renaming import rename_speakers
from isoscribe.transcript import ActionItem, Decision, SourceSpan, Summary


def _summary() -> Summary:
    source = SourceSpan(2.3, 3.3, "SPEAKER_01", "will fix it.")
    return Summary(
        "The team finds summarization hard.",
        action_items=[ActionItem("SPEAKER_01", "Fix it", "by Friday", source)],
        decisions=[Decision("Ship after the fix", source)],
    )


def _docx(transcript, summary=None) -> Document:
    body = find("docx", "job").render(transcript, summary, None)
    assert isinstance(body, bytes)
    return Document(io.BytesIO(body))


def test_a_docx_opens_and_holds_every_segment_with_speaker_and_time() -> None:
    transcript = meeting()
    document = _docx(transcript)
    lines = [p.text for p in document.paragraphs]
    for segment in transcript.segments:
        line = f"[{segment_clock(segment.start)}] {segment.speaker}: {segment.text.strip()}"
        assert line in lines, (line, lines)
    assert lines[0] == "Transcript of meeting.wav" and document.core_properties.title == lines[0]
    bold = [run.text for p in document.paragraphs[1:] for run in p.runs if run.bold]
    assert bold[0] == "[00:00:00] SPEAKER_00: "


def test_a_docx_and_a_pdf_carry_the_digest_when_summarized() -> None:
    transcript, summary = meeting(), _summary()
    lines = [p.text for p in _docx(transcript, summary).paragraphs]
    assert lines.index("Summary") < lines.index("The team finds summarization hard.") < lines.index("Transcript")
    assert "[SPEAKER_01, by Friday] Fix it (00:02)" in lines and "Ship after the fix (00:02)" in lines
    pdf = find("pdf", "job").render(transcript, summary, None)
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "The team finds summarization hard." in text and "[00:00:02] SPEAKER_01: I" in text
    assert "Summary nation is hard." in text


def test_a_pdf_prints_text_beyond_latin_1() -> None:
    transcript = meeting()
    transcript.segments[0].text = " Über Straße, Ελληνικά и кириллица."
    rename_speakers(transcript, {"SPEAKER_00": "Zoë"})
    pdf = find("pdf", "job").render(transcript, None, None)
    text = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert "Zoë: Über Straße, Ελληνικά и кириллица." in text


def test_documents_are_downloads_and_batch_files_but_not_printed_by_the_cli(tmp_path: Path) -> None:
    for name in ("docx", "pdf"):
        assert name in allowed("job") and name in allowed("web") and name in allowed("batch")
        assert name not in allowed("cli")
    written = write_outputs(meeting(), None, tmp_path, "meeting", ["docx", "pdf", "txt"])
    assert written["docx"].read_bytes()[:2] == b"PK" and written["pdf"].read_bytes()[:5] == b"%PDF-"


def test_the_rttm_file_id_is_the_sources_name_sanitised() -> None:
    transcript = meeting()
    transcript.source = "Team call (Mon) 2.wav"
    assert {line.split()[1] for line in to_rttm(transcript).splitlines()} == {"Team_call_Mon_2"}
    transcript.source = "/data/job-audio/abc123.wav"
    assert to_rttm(transcript).split()[1] == "abc123"


def test_one_label_scheme_with_names_escaped_per_format() -> None:
    transcript = meeting()
    rename_speakers(transcript, {"SPEAKER_00": "Ann  Lee & Co"})
    assert to_txt(transcript).splitlines()[0] == "Ann Lee & Co: Summary nation is hard."
    assert "[Ann Lee & Co] Summary nation" in to_srt(transcript)
    vtt = to_vtt(transcript)
    assert "<v Ann Lee &amp; Co>Summary nation" in vtt
    assert [c.voice for c in webvtt.from_buffer(io.StringIO(vtt))][0] == "Ann Lee &amp; Co"
    rows = [row.split("\t") for row in to_tsv(transcript).splitlines()]
    assert all(len(row) == 5 for row in rows) and rows[1][2] == "Ann Lee & Co"
    fields = [line.split() for line in to_rttm(transcript).splitlines()]
    assert all(len(f) == 10 for f in fields) and fields[0][7] == "Ann_Lee_&_Co" and fields[1][7] == "SPEAKER_01"
    assert {s.speaker for s in transcript.segments} == {"Ann  Lee & Co", "SPEAKER_01"}


def test_a_pdf_adds_no_line_to_the_log() -> None:
    """A batch with --formats pdf logged some 70 fontTools.subset INFO lines per file ('maxp pruned', glyph lists)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    records: list[logging.LogRecord] = []
    configure_logging("info")
    collector = logging.Handler()
    collector.emit = records.append  # type: ignore[method-assign]
    root.addHandler(collector)
    try:
        find("pdf", "job").render(meeting(), None, None)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert [record.getMessage() for record in records if record.levelno < logging.WARNING] == []
