"""The public view of a job: what GET /v1/jobs/{id}, the job list and the webhook body show.

Server paths (the audio, the voice samples) never appear: a known speaker is shown by its name only.
"""

from __future__ import annotations

from typing import Any

from isoscribe.service.job_store import Job, JobOptions

__all__ = ["job_status", "public_options"]


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
        "attempts": job.attempts,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "timings": job.timings,
        "error": error,
        "options": public_options(job.options),
    }


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
