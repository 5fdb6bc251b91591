"""OpenAI-compatible: POST /v1/audio/transcriptions and GET /v1/models."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from isoscribe.service.formats import render
from isoscribe.service.schemas import TranscriptionParams, from_form

router = APIRouter(prefix="/v1")


@router.post("/audio/transcriptions")
async def create_transcription(request: Request) -> Response:
    """Multipart form as OpenAI's: file, model, language, prompt, response_format, temperature,
    timestamp_granularities[]; plus diarize and num_speakers."""
    service = request.app.state.service
    transcript, params = await service.transcribe_upload(request, lambda form: from_form(TranscriptionParams, form))
    return render(transcript, params.response_format, params.timestamp_granularities)


@router.get("/models")
async def list_models(request: Request) -> dict:
    service = request.app.state.service
    models = [{"id": name, "object": "model", "created": 0, "owned_by": "isoscribe"} for name in service.model_ids()]
    return {"object": "list", "data": models}
