"""Async jobs: POST /v1/jobs (202), GET /v1/jobs/{id}, GET /v1/jobs/{id}/result, DELETE /v1/jobs/{id}."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from isoscribe.service.errors import ApiError
from isoscribe.service.formats import render
from isoscribe.service.job_runner import job_status
from isoscribe.service.schemas import JobParams, ResultFormat, from_form
from isoscribe.transcript import Transcript

router = APIRouter(prefix="/v1/jobs")


@router.post("", status_code=202)
async def create_job(request: Request) -> JSONResponse:
    """Multipart form: file plus the transcription fields, summarize, webhook_url."""
    job = await request.app.state.service.submit_job(request, lambda form: from_form(JobParams, form))
    return JSONResponse(job_status(job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


@router.get("/{job_id}")
async def get_job(job_id: str, request: Request) -> dict:
    return job_status(request.app.state.service.get_job(job_id))


@router.get("/{job_id}/result")
async def get_job_result(job_id: str, request: Request, format: ResultFormat = "json") -> Response:
    job = request.app.state.service.get_job(job_id)
    if job.status != "succeeded" or job.transcript is None:
        raise ApiError(409, f"job {job_id} is {job.status}, it has no result", code="job_not_finished")
    if format == "transcript":
        return JSONResponse(job.transcript)
    if format == "summary":
        if job.summary is None:
            raise ApiError(404, "the job was not asked to summarize", code="no_summary")
        return JSONResponse(job.summary)
    return render(Transcript.from_dict(job.transcript), format, ("word", "segment"))


@router.delete("/{job_id}")
async def cancel_job(job_id: str, request: Request) -> dict:
    return job_status(request.app.state.service.cancel_job(job_id))
