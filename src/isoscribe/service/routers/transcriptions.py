"""OpenAI-compatible: POST /v1/audio/transcriptions (streamed or not), POST /v1/audio/translations; GET /v1/formats."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from isoscribe.formats import FORMATS, RenderContext
from isoscribe.pipeline import PipelineError
from isoscribe.service.errors import ApiError, error_body
from isoscribe.service.render import render
from isoscribe.service.routers.forms import receive_form
from isoscribe.service.schemas import TranscriptionParams, TranslationParams
from isoscribe.service.streaming import SSE_HEADERS, SSE_MEDIA_TYPE, cancel_on_disconnect, sse_body, transcription_events
from isoscribe.transcript import Transcript

router = APIRouter(prefix="/v1")


@router.post("/audio/transcriptions")
async def create_transcription(request: Request) -> Response:
    """Multipart form as OpenAI's: file, model, language, prompt, response_format, temperature,
    timestamp_granularities[], include[], stream, chunking_strategy; plus diarize and num_speakers."""
    service = request.app.state.service
    upload, params = await receive_form(request, TranscriptionParams, "request")
    run = await service.transcribe(upload, params)
    if params.stream:
        events = transcription_events(run, params.diarized, params.logprobs)
        body = sse_body(events, run, request.receive, lambda error: _stream_error(service, error, run))
        return StreamingResponse(body, media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)
    transcript = await _unless_disconnected(request, service, run)
    context = RenderContext(params.timestamp_granularities, params.logprobs, subtitles=service.settings.subtitles.layout())
    return render(transcript, None, params.response_format, "transcription", context)


@router.post("/audio/translations")
async def create_translation(request: Request) -> Response:
    """Multipart form as OpenAI's: file, model, prompt, response_format, temperature; English text
    from speech in any language (Whisper's translate task; multilingual models only)."""
    service = request.app.state.service
    upload, params = await receive_form(request, TranslationParams, "request")
    run = await service.transcribe(upload, params)
    transcript = await _unless_disconnected(request, service, run)
    context = RenderContext(task="translate", subtitles=service.settings.subtitles.layout())
    return render(transcript, None, params.response_format, "translation", context)


async def _unless_disconnected(request: Request, service, run) -> Transcript:
    """The run's transcript; a client that goes away meanwhile cancels the run (its worker is killed),
    so a client that retries on timeout does not leave the same work running several times."""
    watcher = asyncio.ensure_future(cancel_on_disconnect(request.receive, run))
    try:
        return await service.transcript_of(run)
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():  # the client left; nobody reads this answer
            raise ApiError(499, "the client disconnected", code="client_disconnected") from None
        raise
    finally:
        watcher.cancel()


def _stream_error(service, error: Exception, run) -> dict:
    if isinstance(error, PipelineError):
        api_error = service.api_error(error, run)
        return error_body(api_error.message, api_error.type, api_error.code, api_error.param)
    return error_body(f"transcription failed: {error}", "server_error")


@router.get("/formats")
async def list_formats() -> dict:
    """The format registry: each format's name, file extension, media type and where it is allowed
    (the web page builds its download buttons from the ``web`` ones)."""
    listed = [
        {"name": fmt.name, "extension": fmt.extension, "media_type": fmt.media_type, "label": fmt.label,
         "where": sorted(fmt.where), "needs_summary": fmt.needs_summary}
        for fmt in FORMATS
    ]
    return {"object": "list", "data": listed}
