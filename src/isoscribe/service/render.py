"""A format of the registry (``isoscribe.formats``) as an HTTP response with the format's media type.

A binary format (DOCX, PDF) goes out as an attachment named after the upload."""

from __future__ import annotations

from urllib.parse import quote

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from isoscribe.formats import RenderContext, find
from isoscribe.transcript import Summary, Transcript

__all__ = ["render"]


def render(
    transcript: Transcript,
    summary: Summary | None,
    name: str,
    where: str,
    context: RenderContext = RenderContext(),
    download_name: str = "transcript",
) -> Response:
    fmt = find(name, where)
    body = fmt.render(transcript, summary, context)
    if isinstance(body, dict):
        return JSONResponse(body, media_type=fmt.media_type)
    if isinstance(body, bytes):
        filename = quote(f"{download_name or 'transcript'}.{fmt.extension}")
        disposition = f"attachment; filename*=UTF-8''{filename}"
        return Response(body, media_type=fmt.media_type, headers={"Content-Disposition": disposition})
    return PlainTextResponse(body, media_type=fmt.media_type)
