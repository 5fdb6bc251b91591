"""Typed request parameters of the HTTP API, validated from multipart form fields."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from isoscribe.languages import check_language
from isoscribe.service.errors import ApiError
from isoscribe.service.formats import Granularity, ResponseFormat
from isoscribe.service.transcription import SpeechOptions
from isoscribe.service.uploads import UploadedForm

__all__ = ["TranscriptionParams", "JobParams", "ResultFormat", "from_form"]

ResultFormat = Literal[
    "json", "text", "srt", "verbose_json", "vtt", "transcript", "txt", "tsv", "rttm", "summary", "summary_md"
]
"""Job results: OpenAI's formats; isoscribe's full transcript JSON; the batch's txt (speaker-labelled
lines), tsv and rttm; the summary as JSON and as the batch's markdown."""

_LIST_FIELDS = {
    "timestamp_granularities[]": "timestamp_granularities",
    "timestamp_granularities": "timestamp_granularities",
}


class _Params(BaseModel):
    # Unknown fields are ignored, as newer OpenAI clients send fields (chunking_strategy, include[]) we lack.
    model_config = {"extra": "ignore"}

    model: str = "whisper-1"
    language: str | None = Field(None, max_length=16)
    prompt: str | None = None
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    diarize: bool = False
    num_speakers: int | None = Field(None, ge=1, le=32)

    @field_validator("language", "prompt", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        return check_language(value)

    def speech_options(self) -> SpeechOptions:
        return SpeechOptions(self.language, self.prompt, self.temperature or None, self.diarize, self.num_speakers)


class TranscriptionParams(_Params):
    response_format: ResponseFormat = "json"
    timestamp_granularities: list[Granularity] = []
    stream: bool = False


class JobParams(_Params):
    summarize: bool = False
    webhook_url: str | None = Field(None, pattern=r"^https?://", max_length=2048)


def from_form(cls: type[_Params], form: UploadedForm) -> Any:
    """Validate form fields into ``cls``; ApiError 400 that names the field on failure."""
    values: dict[str, Any] = {}
    for name, items in form.fields.items():
        if name in _LIST_FIELDS:
            values.setdefault(_LIST_FIELDS[name], []).extend(items)
        else:
            values[name] = items[-1]
    try:
        params = cls.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ApiError(
            400, f"invalid parameter {field}: {first['msg']}", param=field, code="invalid_parameter"
        ) from None
    if getattr(params, "stream", False):
        raise ApiError(400, "stream=true is not supported", param="stream", code="unsupported_parameter")
    return params
