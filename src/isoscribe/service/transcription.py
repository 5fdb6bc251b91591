"""What a request asks of the per-file pipeline (its speech options and speech request), and how a failed
file becomes an HTTP error. Shared by the synchronous endpoint and the job loops; the limits and the
retry policy are in ``service.policy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from isoscribe.config import Settings
from isoscribe.pipeline import FailureKind, PipelineError, speech_request
from isoscribe.service.errors import ApiError
from isoscribe.transcript import SpeechRequest

__all__ = ["SpeechOptions", "service_speech_request", "pipeline_api_error"]

@dataclass(frozen=True)
class SpeechOptions:
    """What a client may ask of the speech stage; the one mapping to a SpeechRequest is service_speech_request."""

    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    diarize: bool = False
    num_speakers: int | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    hotwords: str | None = None
    beam_size: int | None = None
    vad_filter: bool | None = None
    condition_on_previous_text: bool | None = None
    word_timestamps: bool | None = None
    no_speech_threshold: float | None = None
    """None (this and the five above): the server's ``[asr]`` setting."""


_DECODING = ("hotwords", "beam_size", "vad_filter", "condition_on_previous_text", "word_timestamps", "no_speech_threshold")


def service_speech_request(settings: Settings, audio_path: Path, options: SpeechOptions) -> SpeechRequest:
    overrides: dict = {"diarize": options.diarize or settings.diarization.enabled, "task": options.task}
    if options.language:
        overrides["language"] = options.language
    if options.prompt:
        overrides["initial_prompt"] = options.prompt
    if options.num_speakers:
        overrides["num_speakers"] = options.num_speakers
    # temperature 0 (OpenAI's default) means "greedy, raised on failure": the configured fallback list.
    if options.temperature:
        overrides["temperatures"] = (options.temperature,)
    overrides.update({name: getattr(options, name) for name in _DECODING if getattr(options, name) is not None})
    return speech_request(settings, audio_path, **overrides)


_ERRORS = {
    FailureKind.BAD_AUDIO: (415, "invalid_request_error", "unsupported_audio"),
    FailureKind.TOO_LONG: (413, "invalid_request_error", "audio_too_long"),
    FailureKind.TOO_SHORT: (400, "invalid_request_error", "audio_too_short"),
    FailureKind.CRASHED: (500, "server_error", "worker_crashed"),
    FailureKind.TIMEOUT: (504, "server_error", "stage_timeout"),
    FailureKind.OUT_OF_MEMORY: (500, "server_error", "stage_out_of_memory"),
    FailureKind.STAGE_ERROR: (500, "server_error", "stage_error"),
    FailureKind.CANCELLED: (503, "server_error", "cancelled"),
}


def pipeline_api_error(error: PipelineError, audio_path: Path) -> ApiError:
    """A failed file as a clean HTTP error that keeps its cause; the server-side path is not shown."""
    status, error_type, code = _ERRORS[error.kind]
    message = error.message.replace(f"{audio_path}: ", "").replace(str(audio_path), "the upload")
    if error.kind == FailureKind.BAD_AUDIO:
        message = f"not decodable audio: {message}"
    param = "file" if status in (400, 413, 415) else None
    return ApiError(status, message, type=error_type, code=code, param=param)
