"""The one registry of output formats: name, file extension, media type, renderer, and where each is allowed.

Where a format is allowed:
  ``cli``            ``isoscribe transcribe --format``
  ``batch``          ``[batch] formats`` and ``isoscribe run --formats`` (files written per input)
  ``transcription``  ``response_format`` of POST /v1/audio/transcriptions (OpenAI's names)
  ``translation``    ``response_format`` of POST /v1/audio/translations
  ``job``            ``format`` of GET /v1/jobs/{id}/result
  ``web``            the web page's download buttons (it reads them from GET /v1/formats)

A name is unique where it is allowed. Two names mean different things in different places, as their
users expect: ``json`` is OpenAI's ``{"text"}`` in the API but the full transcript in files, and
``summary`` is a markdown file in a batch but the summary object in a job result.

This module is imported by ``config`` (every process): the OpenAI shapes, which import the ``openai``
package, are imported only when one is rendered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from isoscribe import exports, outputs
from isoscribe.subtitles import SubtitleLayout
from isoscribe.transcript import Summary, Transcript

__all__ = ["Format", "RenderContext", "FORMATS", "allowed", "find", "names", "WHERE"]

WHERE = ("cli", "batch", "transcription", "translation", "job", "web")


@dataclass(frozen=True)
class RenderContext:
    granularities: Sequence[str] = ()
    """verbose_json: "word" and/or "segment" (OpenAI's ``timestamp_granularities[]``)."""
    logprobs: bool = False
    title: str = "Summary"
    task: str = "transcribe"
    subtitles: SubtitleLayout = SubtitleLayout()


Body = str | bytes | dict[str, Any]
"""Text, a document's bytes, or a JSON object."""


@dataclass(frozen=True)
class Format:
    name: str
    extension: str
    media_type: str
    render: Callable[[Transcript, Summary | None, RenderContext], Body]
    where: frozenset[str]
    label: str = ""
    """Button text on the web page."""
    needs_summary: bool = False
    """Renders the summary: not written (batch) or 404 (job) when the file was not summarized."""
    description: str = field(default="", compare=False)


def _openai(shape: str) -> Callable[[Transcript, Summary | None, RenderContext], Body]:
    def render(transcript: Transcript, summary: Summary | None, context: RenderContext) -> Body:
        from isoscribe import openai_shapes

        return openai_shapes.SHAPES[shape](transcript, context)

    return render


def _summary_md(transcript: Transcript, summary: Summary | None, context: RenderContext) -> Body:
    assert summary is not None
    return outputs.to_summary_md(summary, title=context.title)


def _text(writer: Callable[[Transcript], str]) -> Callable[[Transcript, Summary | None, RenderContext], Body]:
    return lambda transcript, summary, context: writer(transcript)


_FILES = frozenset({"cli", "batch"})
_OPENAI = frozenset({"transcription", "translation", "job"})
_DOWNLOADS = frozenset({"cli", "batch", "job", "web"})
_DOCUMENTS = _DOWNLOADS - {"cli"}
"""Binary files: written by a batch or downloaded, never printed by ``isoscribe transcribe``."""

FORMATS: tuple[Format, ...] = (
    Format("json", "json", "application/json", lambda t, s, c: outputs.to_json(t, s), _FILES,
           description="the full transcript (and summary), docs/transcript-schema.md"),
    Format("transcript", "json", "application/json", lambda t, s, c: t.to_dict(), frozenset({"job", "web"}),
           label="JSON", description="the full transcript, docs/transcript-schema.md"),
    Format("json", "json", "application/json", _openai("json"), _OPENAI, description="OpenAI's {text, usage}"),
    Format("text", "txt", "text/plain", lambda t, s, c: t.text + "\n", _OPENAI, description="the text alone"),
    Format("txt", "txt", "text/plain", _text(outputs.to_txt), _DOWNLOADS, label="Text",
           description="one line per segment, speaker-labelled"),
    Format("srt", "srt", "text/plain", lambda t, s, c: outputs.to_srt(t, c.subtitles), _DOWNLOADS | _OPENAI, label="SRT"),
    Format("verbose_json", "json", "application/json", _openai("verbose_json"), _OPENAI,
           description="OpenAI's segments and words (with speakers)"),
    Format("vtt", "vtt", "text/vtt", lambda t, s, c: outputs.to_vtt(t, c.subtitles), _DOWNLOADS | _OPENAI, label="WebVTT"),
    Format("diarized_json", "json", "application/json", _openai("diarized_json"), _OPENAI - {"translation"},
           description="OpenAI's speaker segments"),
    Format("tsv", "tsv", "text/plain", _text(outputs.to_tsv), _DOWNLOADS, label="TSV"),
    Format("rttm", "rttm", "text/plain", _text(outputs.to_rttm), _DOWNLOADS, label="RTTM"),
    Format("docx", "docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
           lambda t, s, c: exports.to_docx(t, s), _DOCUMENTS, label="DOCX",
           description="a Word document: the digest if any, then [hh:mm:ss] Speaker: text per segment"),
    Format("pdf", "pdf", "application/pdf", lambda t, s, c: exports.to_pdf(t, s), _DOCUMENTS, label="PDF",
           description="the DOCX content as a PDF"),
    Format("summary", "summary.md", "text/markdown", _summary_md, frozenset({"batch"}), needs_summary=True),
    Format("summary", "json", "application/json", lambda t, s, c: s.to_dict() if s else {}, frozenset({"job"}),
           needs_summary=True, description="the summary object"),
    Format("summary_md", "summary.md", "text/markdown", _summary_md, frozenset({"job", "web"}), label="Summary",
           needs_summary=True),
)


def allowed(where: str) -> dict[str, Format]:
    """The formats allowed in ``where`` by name, in registry order."""
    if where not in WHERE:
        raise ValueError(f"unknown place {where!r}; one of {', '.join(WHERE)}")
    return {fmt.name: fmt for fmt in FORMATS if where in fmt.where}


def names(where: str) -> tuple[str, ...]:
    return tuple(allowed(where))


def find(name: str, where: str) -> Format:
    found = allowed(where).get(name)
    if found is None:
        raise ValueError(f"unknown output format {name!r} here; choose from {', '.join(names(where))}")
    return found


def _check_unique() -> None:
    for where in WHERE:
        listed = [fmt.name for fmt in FORMATS if where in fmt.where]
        if len(listed) != len(set(listed)):
            raise AssertionError(f"a format name is listed twice for {where}: {listed}")


_check_unique()
