"""Typed request parameters of the HTTP API, validated from multipart form fields."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from isoscribe.decoding import MAX_BEAM_SIZE
from isoscribe.languages import check_language
from isoscribe.service.errors import ApiError
from isoscribe.service.known_speakers import MAX_KNOWN_SPEAKERS
from isoscribe.formats import names
from isoscribe.openai_shapes import Granularity
from isoscribe.service.transcription import SpeechOptions
from isoscribe.service.uploads import UploadedForm
from isoscribe.transcript import UNNAMED_SPEAKER_LABEL

__all__ = [
    "TranscriptionParams", "TranslationParams", "JobParams", "ResultFormat", "SpeakerName", "SPEAKER_NAME_RULE",
    "from_form", "check_fields",
]

# The names come from the format registry (isoscribe.formats), where each format says where it is allowed.
ResponseFormat = Literal[names("transcription")]  # type: ignore[valid-type]
TranslationFormat = Literal[names("translation")]  # type: ignore[valid-type]
ResultFormat = Literal[names("job")]  # type: ignore[valid-type]

_LIST_FIELDS = {
    "timestamp_granularities[]": "timestamp_granularities",
    "timestamp_granularities": "timestamp_granularities",
    "include[]": "include",
    "include": "include",
    "known_speaker_names[]": "known_speaker_names",
    "known_speaker_names": "known_speaker_names",
    "known_speaker_references[]": "known_speaker_references",
    "known_speaker_references": "known_speaker_references",
}
SpeakerName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f<>]*[^\x00-\x1f\x7f<>0-9][^\x00-\x1f\x7f<>]*$"
    ),
]
"""A known speaker's name: one line without control characters or angle brackets (they would break TSV
columns and VTT voice tags), not only digits (cluster numbers are digits until relabelled)."""
SPEAKER_NAME_RULE = "1-64 characters on one line, without < or >, not only digits"
"""SpeakerName's pattern in words, for the errors people read."""


def blank_is_none(value: Any) -> Any:
    """An empty or blank form field means "not given"."""
    return None if isinstance(value, str) and not value.strip() else value


LanguageCode = Annotated[str | None, BeforeValidator(blank_is_none), AfterValidator(check_language)]
"""A language code the service knows, or None when blank."""


class _SpeechParams(BaseModel):
    """What every form shares; ``speech_options`` is the one mapping of a form to SpeechOptions."""

    # Unknown fields are ignored, as newer OpenAI clients send fields we lack.
    model_config = {"extra": "ignore"}
    task: ClassVar[Literal["transcribe", "translate"]] = "transcribe"

    model: str = "whisper-1"
    prompt: str | None = None
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    """0 or None (OpenAI's default): the server's fallback list."""
    # The other decoding options (isoscribe.decoding); None: the server's [asr] setting.
    hotwords: str | None = Field(None, max_length=1000)
    beam_size: int | None = Field(None, ge=1, le=MAX_BEAM_SIZE)
    vad_filter: bool | None = None
    condition_on_previous_text: bool | None = None
    word_timestamps: bool | None = None
    no_speech_threshold: float | None = Field(None, ge=0.0, le=1.0)

    @field_validator(
        "prompt", "hotwords", "beam_size", "temperature", "vad_filter", "condition_on_previous_text", "word_timestamps",
        "no_speech_threshold", mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def diarized(self) -> bool:
        return False

    @property
    def wants_words(self) -> bool | None:
        """Whether to align words: ``word_timestamps`` (None: the server's setting), on when the answer needs words."""
        return self.word_timestamps

    def speech_options(self) -> SpeechOptions:
        return SpeechOptions(
            language=getattr(self, "language", None),
            prompt=self.prompt,
            temperature=self.temperature or None,
            diarize=self.diarized,
            num_speakers=getattr(self, "num_speakers", None),
            task=self.task,
            hotwords=self.hotwords,
            beam_size=self.beam_size,
            vad_filter=self.vad_filter,
            condition_on_previous_text=self.condition_on_previous_text,
            word_timestamps=self.wants_words,
            no_speech_threshold=self.no_speech_threshold,
        )


class _Params(_SpeechParams):
    language: LanguageCode = Field(None, max_length=16)
    diarize: bool = False
    num_speakers: int | None = Field(None, ge=1, le=32)
    known_speaker_names: list[SpeakerName] = Field([], max_length=MAX_KNOWN_SPEAKERS)
    known_speaker_references: list[str] = Field([], max_length=MAX_KNOWN_SPEAKERS)
    """Voice samples as data URLs, one per name (see service.known_speakers)."""

    @model_validator(mode="after")
    def _names_pair_with_references(self) -> _Params:
        names, references = self.known_speaker_names, self.known_speaker_references
        if len(names) != len(references):
            raise ValueError(f"{len(names)} known_speaker_names[] but {len(references)} known_speaker_references[]")
        if len(set(names)) != len(names):
            raise ValueError("known_speaker_names[] must differ from each other")
        if unnamed := [name for name in names if UNNAMED_SPEAKER_LABEL.fullmatch(name)]:
            raise ValueError(f"known_speaker_names[] {', '.join(unnamed)}: the labels of unnamed speakers")
        return self

    @property
    def diarized(self) -> bool:
        return self.diarize or bool(self.known_speaker_names)


class TranscriptionParams(_Params):
    response_format: ResponseFormat = "json"
    timestamp_granularities: list[Granularity] = []
    stream: bool = False
    include: list[Literal["logprobs"]] = []
    """``logprobs``: each word's log-probability (see formats.logprobs)."""
    chunking_strategy: str | None = Field(None, max_length=4096)
    """Accepted for OpenAI's clients ("auto" or a server_vad object as JSON); Silero VAD always chunks here."""

    @property
    def diarized(self) -> bool:
        return super().diarized or self.response_format == "diarized_json"

    @property
    def logprobs(self) -> bool:
        return "logprobs" in self.include

    @property
    def wants_words(self) -> bool | None:
        """Words for logprobs, or for word timestamps in an answer that carries them (OpenAI's json and text
        ignore timestamp_granularities: aligning for them would only cost time)."""
        shows_words = "word" in self.timestamp_granularities and self.response_format not in ("json", "text")
        return True if shows_words or self.logprobs else self.word_timestamps


class TranslationParams(_SpeechParams):
    """OpenAI's translation form: no language (the output is English), no streaming."""

    task: ClassVar[Literal["transcribe", "translate"]] = "translate"
    response_format: TranslationFormat = "json"


class JobParams(_Params):
    summarize: bool = False
    webhook_url: str | None = Field(None, pattern=r"^https?://", max_length=2048)


def check_fields(cls: type[BaseModel], fields: dict[str, list[str]]) -> None:
    """Validate the fields received so far (before the file part); ApiError 400 for the first bad one.
    Rules across fields (names paired with samples) wait for the whole form."""
    try:
        cls.model_validate(_values(fields))
    except ValidationError as exc:
        for error in exc.errors():
            if error["loc"] and str(error["loc"][0]) in _values(fields):
                raise _invalid(error) from None


def from_form(cls: type[BaseModel], form: UploadedForm) -> Any:
    """Validate form fields into ``cls``; ApiError 400 that names the field on failure."""
    try:
        return cls.model_validate(_values(form.fields))
    except ValidationError as exc:
        raise _invalid(exc.errors()[0]) from None


def _values(fields: dict[str, list[str]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, items in fields.items():
        if name in _LIST_FIELDS:
            values.setdefault(_LIST_FIELDS[name], []).extend(items)
        else:
            values[name] = items[-1]
    return values


def _invalid(error: Any) -> ApiError:
    field = ".".join(str(p) for p in error["loc"])
    what = f"parameter {field}" if field else "parameters"
    return ApiError(400, f"invalid {what}: {error['msg']}", param=field or None, code="invalid_parameter")
