"""A format of the registry (``isoscribe.formats``) as an HTTP response with the format's media type."""

from __future__ import annotations

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from isoscribe.formats import RenderContext, find
from isoscribe.transcript import Summary, Transcript

__all__ = ["render"]


def render(
    transcript: Transcript, summary: Summary | None, name: str, where: str, context: RenderContext = RenderContext()
) -> Response:
    fmt = find(name, where)
    body = fmt.render(transcript, summary, context)
    if isinstance(body, dict):
        return JSONResponse(body, media_type=fmt.media_type)
    return PlainTextResponse(body, media_type=fmt.media_type)
