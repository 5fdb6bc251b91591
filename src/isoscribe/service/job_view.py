"""The public view of a job: what GET /v1/jobs/{id}, the job list and the webhook body show.

Server paths (the audio, the voice samples) never appear: a known speaker is shown by its name only.
"""

from __future__ import annotations

import time
from typing import Any

from isoscribe.service.job_store import Job, JobOptions

__all__ = ["job_status", "public_options", "eta_s"]


def job_status(job: Job) -> dict[str, Any]:
    error = {"type": job.error_type, "message": job.error} if job.error else None
    return {
        "id": job.id,
        "object": "transcription.job",
        "status": job.status,
        "progress": round(job.progress, 3),
        "stage": job.stage or None,
        "audio_duration_s": job.audio_duration_s,
        "audio_done_s": job.audio_done_s,
        "eta_s": eta_s(job),
        "languages": job.languages,
        "speakers": job.speakers,
        "revision": job.revision,
        "filename": job.options.filename,
        "attempts": job.attempts,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "timings": job.timings,
        "error": error,
        "options": public_options(job.options),
    }


def eta_s(job: Job) -> float | None:
    """Seconds until a running job should be done (see ``service.job_progress``); None until known."""
    if job.status != "running" or job.expected_done_at is None:
        return None
    return max(0.0, round(job.expected_done_at - time.time(), 1))


def public_options(options: JobOptions) -> dict[str, Any]:
    return {
        "model": options.model,
        "language": options.language,
        "prompt": options.prompt,
        "temperature": options.temperature,
        "hotwords": options.hotwords,
        "beam_size": options.beam_size,
        "vad_filter": options.vad_filter,
        "condition_on_previous_text": options.condition_on_previous_text,
        "word_timestamps": options.word_timestamps,
        "no_speech_threshold": options.no_speech_threshold,
        "diarize": options.diarize,
        "num_speakers": options.num_speakers,
        "summarize": options.summarize,
        "filename": options.filename,
        "known_speakers": sorted(options.known_speakers),
    }
