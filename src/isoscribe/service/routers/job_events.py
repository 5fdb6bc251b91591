"""GET /v1/jobs/{id}/events: a job as server-sent events, for a page that shows it while it runs.

``event: progress`` when status, stage or progress move (with ``eta_s``); ``event: segment`` for each
segment as it is transcribed, the ones so far replayed on connect (a finished job replays its
transcript); ``event: done`` with the final status, then the stream ends. The feed reads the job
store, so it follows a job whichever service instance runs it; a comment line keeps a quiet stream
open through proxies.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from isoscribe.service.auth import caller_of
from isoscribe.service.errors import ApiError
from isoscribe.service.job_edits import public_transcript
from isoscribe.service.job_store import Job
from isoscribe.service.job_view import eta_s
from isoscribe.service.streaming import SSE_HEADERS, SSE_KEEPALIVE_S, SSE_MEDIA_TYPE

router = APIRouter()
"""Included by ``routers.jobs`` under /v1/jobs, behind the same key check."""

POLL_S = 0.5


@router.get("/{job_id}/events")
async def job_events(job_id: str, request: Request) -> StreamingResponse:
    service = request.app.state.service
    await service.get_job(job_id, caller_of(request))  # 404 for an unknown job or another key's
    return StreamingResponse(_feed(service, job_id, request), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)


async def _feed(service: Any, job_id: str, request: Request) -> AsyncIterator[str]:
    caller = caller_of(request)
    sent_segments, last_progress, last_sent = 0, None, time.monotonic()
    while not await request.is_disconnected():
        try:
            job = await service.get_job(job_id, caller)
            new = [] if job.status == "succeeded" and sent_segments == 0 else await service.off_loop(
                service.store.partial_segments, job_id, sent_segments
            )
        except ApiError as error:
            if error.status_code == 404:
                yield _event("done", {"status": "deleted"})
                return
            yield ": the job store is unreachable; retrying\n\n"  # 503: the feed waits for the store
            await asyncio.sleep(POLL_S)
            continue
        events = []
        if job.status == "succeeded" and sent_segments == 0 and job.transcript is not None:
            events += [("segment", _final_segment(s)) for s in public_transcript(job, job.transcript).segments]
        sent_segments += len(new)
        events += [("segment", {k: v for k, v in s.items() if v is not None}) for s in new]
        progress = _progress(job)
        if _moved(progress, last_progress):
            events.append(("progress", progress))
            last_progress = progress
        for name, data in events:
            yield _event(name, data)
        if job.done:
            yield _event("done", {"status": job.status})
            return
        if events:
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent >= SSE_KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(POLL_S)


def _progress(job: Job) -> dict[str, Any]:
    return {
        "status": job.status,
        "stage": job.stage or None,
        "progress": round(job.progress, 3),
        "audio_done_s": job.audio_done_s,
        "audio_duration_s": job.audio_duration_s,
        "eta_s": eta_s(job),
    }


def _moved(progress: dict[str, Any], before: dict[str, Any] | None) -> bool:
    """Anything but the ETA changed, or the ETA by a second or more (it counts down between events)."""
    if before is None:
        return True
    if {k: v for k, v in progress.items() if k != "eta_s"} != {k: v for k, v in before.items() if k != "eta_s"}:
        return True
    eta, eta_before = progress["eta_s"], before["eta_s"]
    return (eta is None) != (eta_before is None) or (eta is not None and abs(eta - eta_before) >= 1.0)


def _final_segment(segment: Any) -> dict[str, Any]:
    data = {"start": segment.start, "end": segment.end, "text": segment.text.strip()}
    if segment.speaker:
        data["speaker"] = segment.speaker
    if segment.language:
        data["language"] = segment.language
    return data


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
