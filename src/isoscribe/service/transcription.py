"""One transcription as the service does it: check the upload, run the speech stage, finish, summarize.

Shared by the synchronous endpoint and the job runner; knows nothing about HTTP except the
status codes that its errors carry.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from isoscribe import pipeline
from isoscribe.audio import AudioError, validate_audio
from isoscribe.config import Settings
from isoscribe.isolation import IsolationError, StageError, StageOutOfMemory, StageTimeout, WorkerCrashed
from isoscribe.service.errors import ApiError
from isoscribe.service.execution import StageRunner
from isoscribe.transcript import Summary, Transcript

__all__ = ["SpeechOptions", "check_audio", "transcribe", "summarize", "isolation_api_error"]


@dataclass(frozen=True)
class SpeechOptions:
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    diarize: bool = False
    num_speakers: int | None = None


async def check_audio(audio_path: Path, settings: Settings) -> float:
    """Duration in seconds; ApiError 415 for undecodable audio, 413 past ``max_duration_s``."""
    try:
        duration_s = await asyncio.to_thread(validate_audio, audio_path)
    except AudioError as exc:
        # the reason may quote the server-side path, which is none of the client's business
        reason = exc.reason.replace(str(audio_path), "the upload")
        raise ApiError(415, f"not decodable audio: {reason}", code="unsupported_audio", param="file") from None
    limit_s = settings.service.max_duration_s
    if duration_s > limit_s:
        raise ApiError(413, f"audio is {duration_s:.1f} s long, over the limit of {limit_s:g} s", code="audio_too_long")
    return duration_s


async def transcribe(
    runner: StageRunner, audio_path: Path, options: SpeechOptions, settings: Settings, stage: str = "speech"
) -> Transcript:
    """The finished transcript (speaker labels assigned when diarized); ApiError on stage failure."""
    overrides: dict = {"diarize": options.diarize or settings.diarization.enabled}
    if options.language:
        overrides["language"] = options.language
    if options.prompt:
        overrides["initial_prompt"] = options.prompt
    if options.num_speakers:
        overrides["num_speakers"] = options.num_speakers
    # temperature 0 (OpenAI's default) means "greedy, raised on failure": the configured fallback list.
    if options.temperature:
        overrides["temperatures"] = (options.temperature,)
    request = pipeline.speech_request(settings, audio_path, **overrides)
    try:
        result = await runner.run(stage, request)
    except IsolationError as exc:
        raise isolation_api_error(exc) from None
    return pipeline.finish_transcript(result.value)


async def summarize(runner: StageRunner, transcript: Transcript) -> Summary:
    """The summary, or an empty one with a warning: a failed summary never fails the transcription."""
    submit = lambda request: runner.executor.submit("summary", request)  # noqa: E731
    return await asyncio.to_thread(pipeline.summarize_safely, submit, transcript)


def isolation_api_error(exc: IsolationError) -> ApiError:
    """A stage failure as a clean HTTP error that keeps its cause."""
    if isinstance(exc, StageError) and exc.exc_type == "AudioError":
        return ApiError(415, f"not decodable audio: {exc.message}", code="unsupported_audio", param="file")
    kinds = {
        WorkerCrashed: "worker_crashed",
        StageTimeout: "stage_timeout",
        StageOutOfMemory: "stage_out_of_memory",
        StageError: "stage_error",
    }
    code = next((name for cls, name in kinds.items() if isinstance(exc, cls)), "isolation_error")
    status = 504 if isinstance(exc, StageTimeout) else 500
    return ApiError(status, str(exc), type="server_error", code=code)
