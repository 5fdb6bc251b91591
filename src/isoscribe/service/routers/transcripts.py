"""Editing a finished job's transcript: GET and PUT /v1/jobs/{id}/transcript and GET /v1/jobs/{id}/revisions.

The client sends the whole segment list after any edit, based on the revision it loaded; the server
reconciles the words (``isoscribe.transcript_edit``) and keeps every revision (``service.job_edits``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, BeforeValidator, Field, TypeAdapter, ValidationError

from isoscribe.service.auth import caller_of
from isoscribe.service.errors import ApiError
from isoscribe.service.job_edits import finished_job, revision_list, save_edit, transcript_at
from isoscribe.service.schemas import LanguageCode, SpeakerName, blank_is_none
from isoscribe.transcript_edit import EditedSegment, EditedWord

router = APIRouter()
"""Included by ``routers.jobs`` under /v1/jobs, behind the same key check."""

_MAX_SEGMENTS = 50_000
_MAX_TEXT_CHARS = 20_000


class _WordIn(BaseModel):
    model_config = {"extra": "ignore"}
    start: float
    end: float
    text: str = Field(max_length=_MAX_TEXT_CHARS)


class _SegmentIn(BaseModel):
    model_config = {"extra": "ignore"}
    start: float
    end: float
    text: str = Field(max_length=_MAX_TEXT_CHARS)
    speaker: Annotated[SpeakerName | None, BeforeValidator(blank_is_none)] = None
    language: LanguageCode = None
    words: list[_WordIn] | None = None

    def edited(self) -> EditedSegment:
        words = tuple(EditedWord(w.start, w.end, w.text) for w in self.words) if self.words is not None else None
        return EditedSegment(self.start, self.end, self.text, self.speaker, self.language, words)


class _TranscriptEdit(BaseModel):
    base_revision: int = Field(ge=0)
    segments: list[_SegmentIn] = Field(max_length=_MAX_SEGMENTS)


_EDIT = TypeAdapter(_TranscriptEdit)


@router.get("/{job_id}/transcript")
async def get_transcript(
    job_id: str, request: Request, revision: Annotated[int | None, Query(ge=0)] = None
) -> dict[str, Any]:
    """The latest revision of a succeeded job's transcript, or ``revision`` (0: the model's output)."""
    service = request.app.state.service
    job = await finished_job(service, job_id, caller_of(request), status_code=404)
    transcript = await transcript_at(service, job, revision)
    shown = job.revision if revision is None else revision
    return {"revision": shown, "revisions": job.revision, "transcript": transcript.to_dict()}


@router.put("/{job_id}/transcript")
async def put_transcript(job_id: str, request: Request, body: Annotated[Any, Body()] = None) -> dict[str, int]:
    """Body ``{"base_revision": N, "segments": [{"start", "end", "speaker", "text", "words"?}]}``: the next revision."""
    edit = _parsed(body)
    revision = await save_edit(
        request.app.state.service, job_id, caller_of(request), edit.base_revision, [s.edited() for s in edit.segments]
    )
    return {"revision": revision}


@router.get("/{job_id}/revisions")
async def list_revisions(job_id: str, request: Request) -> dict[str, Any]:
    service = request.app.state.service
    job = await finished_job(service, job_id, caller_of(request), status_code=404)
    revisions = await revision_list(service, job)
    return {
        "object": "list",
        "data": [{"revision": r.revision, "created_at": r.created_at, "segments": r.segments} for r in revisions],
    }


def _parsed(body: Any) -> _TranscriptEdit:
    """The edit, or a 400 whose ``param`` names the first bad field (``segments[2].speaker``)."""
    try:
        return _EDIT.validate_python(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = _field_name(error["loc"])
        message = error["msg"]
        if field.endswith(".speaker"):
            message = "unknown speaker label format (SPEAKER_00 or a name: 1-64 characters, no control characters or <>)"
        raise ApiError(400, f"invalid {field or 'body'}: {message}", param=field or None, code="invalid_parameter") from None


def _field_name(loc: tuple) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name
