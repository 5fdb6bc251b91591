"""A succeeded job's transcript by revision, its revision list, and edits saved as new revisions.

The job row holds the latest revision; older ones come from the store's kept revisions (see
``job_store``). The transcript a client sees carries the upload's name as its source, never the server's
path of the audio.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from isoscribe.logs import log_event
from isoscribe.service.auth import Caller
from isoscribe.service.errors import ApiError
from isoscribe.service.job_store import Job, Revision
from isoscribe.transcript import Transcript
from isoscribe.transcript_edit import EditedSegment, EditError, apply_edit

__all__ = ["finished_job", "transcript_at", "revision_list", "save_edit", "public_transcript", "conflict"]

logger = logging.getLogger("isoscribe.service")


async def finished_job(service: Any, job_id: str, caller: Caller, status_code: int = 409) -> Job:
    """The caller's job if it succeeded; else ``status_code`` (404 for the transcript routes, 409 for results)."""
    job = await service.get_job(job_id, caller)
    if job.status != "succeeded" or job.transcript is None:
        raise ApiError(status_code, f"job {job_id} is {job.status}, it has no transcript yet", code="job_not_finished")
    return job


async def transcript_at(service: Any, job: Job, revision: int | None) -> Transcript:
    """Revision ``revision`` of the job's transcript (None: the latest)."""
    if revision is None or revision == job.revision:
        data = job.transcript
    elif 0 <= revision < job.revision:
        data = await service.off_loop(service.store.transcript_at, job.id, revision)
    else:
        data = None
    if data is None:
        raise ApiError(
            404, f"job {job.id} has no revision {revision} (the latest is {job.revision})",
            param="revision", code="revision_not_found",
        )
    return public_transcript(job, data)


def public_transcript(job: Job, data: dict[str, Any]) -> Transcript:
    """The stored transcript with the upload's name as its source (it names the RTTM file id, for one)."""
    transcript = Transcript.from_dict(data)
    transcript.source = job.options.filename or f"{job.id}.audio"
    return transcript


async def revision_list(service: Any, job: Job) -> list[Revision]:
    kept = await service.off_loop(service.store.revisions, job.id)
    if kept:
        return kept
    return [Revision(0, job.finished_at or job.created_at, len(job.transcript.get("segments", [])))]


async def save_edit(service: Any, job_id: str, caller: Caller, base_revision: int, edited: list[EditedSegment]) -> int:
    """The edited segments as the job's next revision; 409 when ``base_revision`` is not the latest."""
    job = await finished_job(service, job_id, caller, status_code=404)
    if base_revision != job.revision:
        raise conflict(job, base_revision)
    try:
        transcript = apply_edit(Transcript.from_dict(job.transcript), edited)
    except EditError as error:
        raise ApiError(400, f"invalid {error.field}: {error.message}", param=error.field, code="invalid_parameter") from None
    # The stored source stays what the pipeline wrote; only views replace it with the upload's name.
    transcript = replace(transcript, source=job.transcript.get("source", Path(job.audio_path).name))
    new = await service.off_loop(service.store.add_revision, job_id, base_revision, transcript.to_dict())
    if new is None:
        raise conflict(job, base_revision)
    log_event(logger, "job_transcript_edited", id=job_id, revision=new, segments=len(transcript.segments))
    return new


def conflict(job: Job, base_revision: int) -> ApiError:
    return ApiError(
        409, f"revision {base_revision} is not the latest of job {job.id}; load the latest and edit again",
        param="base_revision", code="revision_conflict",
    )
