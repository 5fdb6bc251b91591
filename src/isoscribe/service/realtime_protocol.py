"""The Realtime transcription protocol's messages, as the pinned ``openai`` client speaks it.

A session is configured by ``session.update`` with ``session.type == "transcription"`` (GA shape:
``session.audio.input.{format, transcription, turn_detection}``) or by the older
``transcription_session.update`` (``session.input_audio_format``, ``input_audio_transcription``,
``turn_detection``), and answered in the same generation's shape. Server events are plain dicts
in the shapes of ``openai.types.realtime``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Any

from isoscribe.languages import check_language
from isoscribe.service.realtime_turns import TurnDetection

__all__ = [
    "TRANSCRIPTION_MODEL_ALIASES",
    "SUPPORTED_RATES_HZ",
    "ProtocolError",
    "SessionClosed",
    "SessionConfig",
    "SessionLimits",
    "new_id",
    "event",
    "error_event",
    "updated_config",
    "session_object",
    "legacy_session_object",
]

TRANSCRIPTION_MODEL_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-realtime-whisper")
"""OpenAI's transcription models; each is served by the configured model (clients default to them)."""
SUPPORTED_RATES_HZ = (24000, 16000)


@dataclass(frozen=True)
class SessionLimits:
    max_session_s: float = 3600.0
    expiry_grace_s: float = 30.0
    """At the session's end, how long committed utterances may still take to be decoded."""
    max_buffer_s: float = 60.0
    """Uncommitted audio a client may hold without server VAD before appends are refused; with it, what is kept."""
    partial_after_s: float = 3.0  # 0 turns partial decodes off
    partial_every_s: float = 1.5
    outbox_events: int = 64
    pending_decodes: int = 4
    served_models: tuple[str, ...] = ("whisper-1",)
    languages: frozenset[str] | None = None
    """The codes the served model has a token for (None: any); another language is refused."""

    def preview_due(self, open_s: float, since_preview_s: float, last_preview_took_s: float) -> bool:
        """Whether an utterance open for ``open_s`` is decoded partially now: not sooner than twice the last
        preview took, since the final decode waits for one in flight (filling the worker cost 0.7 s)."""
        every_s = max(self.partial_every_s, 2 * last_preview_took_s)
        return bool(self.partial_after_s) and open_s >= self.partial_after_s and since_preview_s >= every_s


class ProtocolError(Exception):
    """A client event the session refuses; it becomes an ``error`` event and the session goes on."""

    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


class SessionClosed(Exception):
    """The session ends now; ``error`` (if any) is sent before the socket closes with ``close_code``."""

    def __init__(self, close_code: int, error: dict[str, Any] | None = None) -> None:
        super().__init__(close_code)
        self.close_code = close_code
        self.error = error


@dataclass(frozen=True)
class SessionConfig:
    sample_rate_hz: int = 24000
    model: str = "whisper-1"
    language: str | None = None
    prompt: str = ""
    turn_detection: TurnDetection | None = TurnDetection()
    """None: no server VAD, the client commits the buffer itself."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def event(type: str, **fields: Any) -> dict[str, Any]:
    return {"type": type, "event_id": new_id("event"), **fields}


def error_event(
    message: str, code: str | None = None, type: str = "invalid_request_error", param: str | None = None,
    client_event_id: str | None = None,
) -> dict[str, Any]:
    error = {"type": type, "code": code, "message": message, "param": param, "event_id": client_event_id}
    return event("error", error=error)


def updated_config(
    config: SessionConfig, message: dict[str, Any], served_models: tuple[str, ...],
    languages: frozenset[str] | None = None,
) -> SessionConfig:
    """``config`` with the fields a ``session.update`` or ``transcription_session.update`` sets; a field of the
    wrong type or value is a ProtocolError naming it (the session stays open). ``languages``: the codes
    the model has a token for (None: any)."""
    session = message.get("session")
    if not isinstance(session, dict):
        raise ProtocolError("'session' must be an object", param="session")
    if message["type"] == "session.update":
        if session.get("type") != "transcription":
            raise ProtocolError(
                "this server runs transcription sessions only: set session.type to 'transcription' "
                "(and connect with ?intent=transcription)", param="session.type",
            )
        audio_input = _object(_object(session, "audio", "session"), "input", "session.audio")
        fields = _ga_fields(audio_input)
    else:
        fields = _legacy_fields(session)
    config = replace(config, **fields)
    if config.model not in served_models:
        raise ProtocolError(
            f"model {config.model!r} is not available; use one of: {', '.join(served_models)}",
            code="model_not_found", param="session.audio.input.transcription.model",
        )
    if languages is not None and config.language is not None and config.language not in languages:
        raise ProtocolError(
            f"model {config.model!r} cannot transcribe language {config.language!r}; it knows: {', '.join(sorted(languages))}",
            code="unsupported_language", param="session.audio.input.transcription.language",
        )
    return config


def _ga_fields(audio_input: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "format" in audio_input:
        audio_format = _object(audio_input, "format", "session.audio.input")
        if audio_format.get("type", "audio/pcm") != "audio/pcm":
            raise ProtocolError(
                f"audio format {audio_format.get('type')!r} is not supported; send audio/pcm (PCM16)",
                param="session.audio.input.format.type",
            )
        fields["sample_rate_hz"] = _rate(audio_format.get("rate", 24000))
    if "transcription" in audio_input:
        fields.update(_transcription(_object(audio_input, "transcription", "session.audio.input")))
    if "turn_detection" in audio_input:
        fields["turn_detection"] = _turn_detection(audio_input["turn_detection"])
    return fields


def _legacy_fields(session: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "input_audio_format" in session and session["input_audio_format"] != "pcm16":
        raise ProtocolError(
            f"input_audio_format {session['input_audio_format']!r} is not supported; send pcm16",
            param="session.input_audio_format",
        )
    if "input_audio_transcription" in session:
        fields.update(_transcription(_object(session, "input_audio_transcription", "session")))
    if "turn_detection" in session:
        fields["turn_detection"] = _turn_detection(session["turn_detection"])
    return fields


def _object(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key) or {}
    if not isinstance(value, dict):
        raise ProtocolError(f"'{where}.{key}' must be an object", param=f"{where}.{key}")
    return value


def _rate(rate: Any) -> int:
    if rate not in SUPPORTED_RATES_HZ:
        raise ProtocolError(
            f"sample rate {rate!r} is not supported; send PCM16 at 24000 or 16000 Hz",
            param="session.audio.input.format.rate",
        )
    return int(rate)


def _transcription(transcription: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in ("model", "language", "prompt"):
        if transcription.get(name) is not None and not isinstance(transcription[name], str):
            raise ProtocolError(f"{name} must be a string", param=f"session.audio.input.transcription.{name}")
    if transcription.get("model"):
        fields["model"] = transcription["model"]
    if "language" in transcription:
        try:
            fields["language"] = check_language(transcription["language"] or None)
        except ValueError as unknown:
            raise ProtocolError(str(unknown), param="session.audio.input.transcription.language") from None
    if "prompt" in transcription:
        fields["prompt"] = transcription["prompt"] or ""
    return fields


_MAX_TURN_MS = 60_000


def _turn_detection(value: dict[str, Any] | None) -> TurnDetection | None:
    """server_vad with its three settings; semantic_vad is served by the same server VAD."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError("turn_detection must be an object or null", param="session.audio.input.turn_detection")
    if value.get("type") not in ("server_vad", "semantic_vad"):
        raise ProtocolError(
            f"turn_detection type {value.get('type')!r} is not supported; use server_vad or null",
            param="session.audio.input.turn_detection.type",
        )
    defaults = TurnDetection()
    for name in ("threshold", "prefix_padding_ms", "silence_duration_ms"):
        number = value.get(name)
        if number is not None and (isinstance(number, bool) or not isinstance(number, int | float)
                                   or not -_MAX_TURN_MS <= number <= _MAX_TURN_MS):  # inf and 1e400 too
            raise ProtocolError(f"{name} must be a number of at most {_MAX_TURN_MS}",
                                param=f"session.audio.input.turn_detection.{name}")
    threshold = value.get("threshold")
    padding_ms = value.get("prefix_padding_ms")
    silence_ms = value.get("silence_duration_ms")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ProtocolError("threshold must be between 0 and 1", param="session.audio.input.turn_detection.threshold")
    return TurnDetection(
        threshold=defaults.threshold if threshold is None else float(threshold),
        prefix_padding_s=defaults.prefix_padding_s if padding_ms is None else max(0, padding_ms) / 1000,
        silence_s=defaults.silence_s if silence_ms is None else max(100, silence_ms) / 1000,
    )


def _turn_detection_object(turns: TurnDetection | None) -> dict[str, Any] | None:
    if turns is None:
        return None
    return {
        "type": "server_vad",
        "threshold": turns.threshold,
        "prefix_padding_ms": round(turns.prefix_padding_s * 1000),
        "silence_duration_ms": round(turns.silence_s * 1000),
    }


def session_object(session_id: str, config: SessionConfig, expires_at: int) -> dict[str, Any]:
    """The GA ``session`` of ``session.created`` / ``session.updated`` (RealtimeTranscriptionSessionCreateRequest)."""
    transcription = {"model": config.model, "language": config.language, "prompt": config.prompt}
    audio_input = {
        "format": {"type": "audio/pcm", "rate": config.sample_rate_hz},
        "transcription": transcription,
        "turn_detection": _turn_detection_object(config.turn_detection),
        "noise_reduction": None,
    }
    return {
        "type": "transcription",
        "id": session_id,
        "object": "realtime.transcription_session",
        "expires_at": expires_at,
        "audio": {"input": audio_input},
        "include": [],
    }


def legacy_session_object(session_id: str, config: SessionConfig, expires_at: int) -> dict[str, Any]:
    """The ``session`` of ``transcription_session.updated``, in the older flat shape."""
    return {
        "id": session_id,
        "object": "realtime.transcription_session",
        "expires_at": expires_at,
        "input_audio_format": "pcm16",
        "input_audio_transcription": {"model": config.model, "language": config.language, "prompt": config.prompt},
        "turn_detection": _turn_detection_object(config.turn_detection),
        "input_audio_noise_reduction": None,
        "include": [],
    }
