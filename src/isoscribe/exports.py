"""Documents to send to people: DOCX (python-docx) and PDF (fpdf2), with the same content.

A title, the digest when the file was summarized (overview, decisions, action items, open questions),
then one paragraph per segment: ``[hh:mm:ss] Speaker: text``. The PDF embeds DejaVu Sans, the font
matplotlib ships, so that text beyond Latin-1 prints.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from isoscribe.summary.markdown import clock
from isoscribe.transcript import ActionItem, Summary, Transcript

__all__ = ["Block", "document_blocks", "to_docx", "to_pdf", "segment_clock"]

_NOT_IN_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
"""Characters an Office document (XML 1.0) cannot hold."""


@dataclass(frozen=True)
class Block:
    kind: str
    """title, heading, paragraph, bullet or segment."""
    text: str
    lead: str = ""
    """A segment's ``[hh:mm:ss] Speaker:`` part, set in bold."""


def segment_clock(seconds: float) -> str:
    total = max(0, int(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def document_blocks(transcript: Transcript, summary: Summary | None) -> list[Block]:
    name = Path(transcript.source).name or "audio"
    blocks = [Block("title", _clean(f"Transcript of {name}"))]
    if summary is not None:
        blocks += _digest(summary)
        blocks.append(Block("heading", "Transcript"))
    for segment in transcript.segments:
        speaker = f" {segment.speaker}:" if segment.speaker else ""
        blocks.append(Block("segment", _clean(segment.text.strip()), _clean(f"[{segment_clock(segment.start)}]{speaker}")))
    return blocks


def _digest(summary: Summary) -> list[Block]:
    blocks = [Block("heading", "Summary")]
    if summary.overview.strip():
        blocks.append(Block("paragraph", _clean(summary.overview.strip())))
    sections = (
        ("Decisions", [f"{d.text} ({clock(d.source.start)})" for d in summary.decisions]),
        ("Action items", [_action_item(item) for item in summary.action_items]),
        ("Open questions", [f"{q.text} ({clock(q.source.start)})" for q in summary.open_questions]),
    )
    for heading, lines in sections:
        if lines:
            blocks.append(Block("heading", heading))
            blocks += [Block("bullet", _clean(line)) for line in lines]
    return blocks


def _action_item(item: ActionItem) -> str:
    who = ", ".join(part for part in (item.owner or "unassigned", item.due) if part)
    return f"[{who}] {item.task} ({clock(item.source.start)})"


def to_docx(transcript: Transcript, summary: Summary | None) -> bytes:
    from docx import Document

    document = Document()
    for block in document_blocks(transcript, summary):
        if block.kind == "title":
            document.core_properties.title = block.text
            document.add_heading(block.text, level=1)
        elif block.kind == "heading":
            document.add_heading(block.text, level=2)
        elif block.kind == "bullet":
            document.add_paragraph(block.text, style="List Bullet")
        elif block.kind == "segment":
            paragraph = document.add_paragraph()
            paragraph.add_run(block.lead + " ").bold = True
            paragraph.add_run(block.text)
        else:
            document.add_paragraph(block.text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


_PDF_FONT = "DejaVu"
_PDF_LINE_MM = 6.0


def to_pdf(transcript: Transcript, summary: Summary | None) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(True, margin=15)
    fonts = _dejavu_folder()
    pdf.add_font(_PDF_FONT, "", str(fonts / "DejaVuSans.ttf"))
    pdf.add_font(_PDF_FONT, "B", str(fonts / "DejaVuSans-Bold.ttf"))
    pdf.add_page()
    for block in document_blocks(transcript, summary):
        if block.kind == "title":
            pdf.set_title(block.text)
            _pdf_text(pdf, block.text, "B", 16)
        elif block.kind == "heading":
            _pdf_text(pdf, block.text, "B", 13)
        elif block.kind == "segment":
            pdf.set_font(_PDF_FONT, "B", 11)
            pdf.write(_PDF_LINE_MM, block.lead + " ")
            _pdf_text(pdf, block.text, "", 11)
        else:
            _pdf_text(pdf, ("• " if block.kind == "bullet" else "") + block.text, "", 11)
    return bytes(pdf.output())


def _pdf_text(pdf, text: str, style: str, size: int) -> None:
    pdf.set_font(_PDF_FONT, style, size)
    pdf.write(_PDF_LINE_MM, text)
    pdf.ln(_PDF_LINE_MM * 1.4)


def _dejavu_folder() -> Path:
    """matplotlib's own fonts (a dependency already): found without importing matplotlib."""
    spec = find_spec("matplotlib")
    assert spec is not None and spec.origin is not None, "matplotlib is a dependency of isoscribe"
    return Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"


def _clean(text: str) -> str:
    return _NOT_IN_XML.sub("", text)
