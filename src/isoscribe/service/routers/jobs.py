"""Async jobs: create, list, status, result, audio, speaker names, cancel and delete under /v1/jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import Field, TypeAdapter, ValidationError

from isoscribe.formats import RenderContext, find
from isoscribe.service.auth import caller_of
from isoscribe.service.errors import ApiError
from isoscribe.service.job_edits import finished_job, public_transcript, transcript_at
from isoscribe.service.job_view import job_status
from isoscribe.service.render import render
from isoscribe.service.routers import job_events, transcripts
from isoscribe.service.routers.forms import receive_form
from isoscribe.service.schemas import SPEAKER_NAME_RULE, JobParams, ResultFormat, SpeakerName
from isoscribe.transcript import Summary

router = APIRouter(prefix="/v1/jobs")

_MAX_LISTED = 200
_SPEAKER_NAMES = TypeAdapter(Annotated[dict[str, SpeakerName], Field(min_length=1, max_length=64)])


@router.post("", status_code=202)
async def create_job(request: Request) -> JSONResponse:
    """Multipart form: file plus the transcription fields, summarize, webhook_url."""
    upload, params = await receive_form(request, JobParams, "job")
    job = await request.app.state.service.submit_job(upload, params, caller_of(request))
    return JSONResponse(job_status(job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


@router.get("")
async def list_jobs(
    request: Request, limit: Annotated[int, Query(ge=1, le=_MAX_LISTED)] = 50, after: str | None = None
) -> dict:
    """The caller's newest jobs first, ``limit`` at a time; ``after`` (the last id of a page) gives the next page."""
    jobs = await request.app.state.service.list_jobs(caller_of(request), limit + 1, after)
    has_more = len(jobs) > limit
    jobs = jobs[:limit]
    return {"object": "list", "data": [job_status(job) for job in jobs], "has_more": has_more,
            "last_id": jobs[-1].id if jobs else None}


@router.get("/{job_id}")
async def get_job(job_id: str, request: Request) -> dict:
    return job_status(await request.app.state.service.get_job(job_id, caller_of(request)))


@router.get("/{job_id}/result")
async def get_job_result(
    job_id: str, request: Request, format: ResultFormat = "json", revision: Annotated[int | None, Query(ge=0)] = None
) -> Response:
    """The result in ``format``, of the latest revision of the transcript or of ``revision``."""
    service = request.app.state.service
    job = await finished_job(service, job_id, caller_of(request))
    summary = Summary.from_dict(job.summary) if job.summary else None
    if find(format, "job").needs_summary and summary is None:
        raise ApiError(404, "the job was not asked to summarize", code="no_summary")
    transcript = await transcript_at(service, job, revision)
    subtitles = service.settings.subtitles.layout()
    context = RenderContext(("word", "segment"), title=f"Summary of {job.options.filename or job.id}", subtitles=subtitles)
    return render(transcript, summary, format, "job", context, download_name=Path(transcript.source).stem)


@router.get("/{job_id}/audio")
async def get_job_audio(job_id: str, request: Request) -> FileResponse:
    """The uploaded audio, with Range support so that a player can seek."""
    audio_path = Path((await request.app.state.service.get_job(job_id, caller_of(request))).audio_path)
    if not audio_path.is_file():
        raise ApiError(404, f"job {job_id} has no audio (only a succeeded job keeps it)", code="no_audio")
    # The stored name's extension is an audio one (uploads.safe_extension); nosniff keeps a browser from
    # reading the bytes as anything else.
    return FileResponse(audio_path, headers={"X-Content-Type-Options": "nosniff"})


@router.patch("/{job_id}/speakers")
async def rename_speakers(job_id: str, request: Request, body: Annotated[Any, Body()] = None) -> dict:
    """Body ``{"SPEAKER_00": "Alice"}``: the names, in the transcript and the summary, as the next revision;
    every format uses them from now on."""
    job = await request.app.state.service.rename_speakers(job_id, _speaker_names(body), caller_of(request))
    transcript = public_transcript(job, job.transcript).to_dict()
    return {"id": job.id, "revision": job.revision, "transcript": transcript, "summary": job.summary}


def _speaker_names(body: Any) -> dict[str, str]:
    """The names, or a 400 that says the rule in words and names the label whose name breaks it (the
    pattern itself means nothing to a person renaming a speaker on the web page)."""
    try:
        return _SPEAKER_NAMES.validate_python(body)
    except ValidationError as exc:
        location = exc.errors()[0]["loc"]
    if not location:
        message = "the body is a JSON object of 1 to 64 speaker labels and their new names"
        raise ApiError(400, message, code="invalid_parameter") from None
    label = str(location[0])
    raise ApiError(
        400, f"invalid name for {label}: a speaker name is {SPEAKER_NAME_RULE}", param=label, code="invalid_parameter"
    ) from None


@router.delete("/{job_id}")
async def cancel_job(job_id: str, request: Request, purge: bool = False) -> dict:
    """Cancel a job that has not finished; ``purge=true`` also deletes the job, its audio and its result."""
    service = request.app.state.service
    if purge:
        await service.delete_job(job_id, caller_of(request))
        return {"id": job_id, "object": "transcription.job.deleted", "deleted": True}
    return job_status(await service.cancel_job(job_id, caller_of(request)))


router.include_router(transcripts.router)
router.include_router(job_events.router)
