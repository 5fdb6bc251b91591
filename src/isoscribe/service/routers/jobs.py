"""Async jobs: create, list, status, result, audio, speaker names, cancel and delete under /v1/jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from pydantic import StringConstraints

from isoscribe import outputs
from isoscribe.service.errors import ApiError
from isoscribe.service.formats import render
from isoscribe.service.job_runner import job_status
from isoscribe.service.job_store import Job
from isoscribe.service.schemas import JobParams, ResultFormat, from_form
from isoscribe.transcript import Summary, Transcript

router = APIRouter(prefix="/v1/jobs")

SpeakerName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^\r\n]+$")
]
_OUTPUT_FORMATS = {"txt", "tsv", "rttm"}
"""The batch's writers (``isoscribe.outputs``): speaker-labelled text, whisper's tsv, NIST RTTM."""
_MAX_LISTED = 200


@router.post("", status_code=202)
async def create_job(request: Request) -> JSONResponse:
    """Multipart form: file plus the transcription fields, summarize, webhook_url."""
    job = await request.app.state.service.submit_job(request, lambda form: from_form(JobParams, form))
    return JSONResponse(job_status(job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


@router.get("")
async def list_jobs(request: Request, limit: Annotated[int, Query(ge=1, le=_MAX_LISTED)] = 50) -> dict:
    """The newest jobs first."""
    jobs = request.app.state.service.store.recent(limit)
    return {"object": "list", "data": [job_status(job) for job in jobs]}


@router.get("/{job_id}")
async def get_job(job_id: str, request: Request) -> dict:
    return job_status(request.app.state.service.get_job(job_id))


@router.get("/{job_id}/result")
async def get_job_result(job_id: str, request: Request, format: ResultFormat = "json") -> Response:
    job = _finished_job(request, job_id)
    if format in ("summary", "summary_md"):
        return _summary(job, format)
    if format == "transcript":
        return JSONResponse(job.transcript)
    transcript = Transcript.from_dict(job.transcript)
    if format in _OUTPUT_FORMATS:
        return PlainTextResponse(outputs.format_transcript(transcript, format))
    return render(transcript, format, ("word", "segment"))


@router.get("/{job_id}/audio")
async def get_job_audio(job_id: str, request: Request) -> FileResponse:
    """The uploaded audio, with Range support so that a player can seek."""
    audio_path = Path(request.app.state.service.get_job(job_id).audio_path)
    if not audio_path.is_file():
        raise ApiError(404, f"job {job_id} has no audio (only a succeeded job keeps it)", code="no_audio")
    return FileResponse(audio_path)


@router.patch("/{job_id}/speakers")
async def rename_speakers(
    job_id: str, request: Request, names: Annotated[dict[str, SpeakerName], Body(min_length=1, max_length=64)]
) -> dict:
    """Body ``{"SPEAKER_00": "Alice"}``: every format and the summary use the new names from now on."""
    job = request.app.state.service.rename_speakers(job_id, names)
    return {"id": job.id, "transcript": job.transcript, "summary": job.summary}


@router.delete("/{job_id}")
async def cancel_job(job_id: str, request: Request, purge: bool = False) -> dict:
    """Cancel a job that has not finished; ``purge=true`` also deletes the job, its audio and its result."""
    service = request.app.state.service
    if purge:
        service.delete_job(job_id)
        return {"id": job_id, "object": "transcription.job.deleted", "deleted": True}
    return job_status(service.cancel_job(job_id))


def _finished_job(request: Request, job_id: str) -> Job:
    job = request.app.state.service.get_job(job_id)
    if job.status != "succeeded" or job.transcript is None:
        raise ApiError(409, f"job {job_id} is {job.status}, it has no result", code="job_not_finished")
    return job


def _summary(job: Job, format: str) -> Response:
    if job.summary is None:
        raise ApiError(404, "the job was not asked to summarize", code="no_summary")
    if format == "summary":
        return JSONResponse(job.summary)
    markdown = outputs.to_summary_md(Summary.from_dict(job.summary), title=f"Summary of {job.options.filename or job.id}")
    return PlainTextResponse(markdown, media_type="text/markdown")
