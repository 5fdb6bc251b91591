"""The realtime stage: voice activity and utterance decoding for live transcription sessions.

The server keeps a live session's audio as PCM16 bytes and sends each task only the stretch it is
about (a VAD window of about a second, or one utterance of at most ``max_utterance_s``), so any
worker of the pool can serve any session and a crashed worker costs one task. The requests and
results here are what crosses the process boundary; numpy and the models load in the worker only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "VAD_FRAME_SAMPLES",
    "VAD_FRAME_S",
    "VoiceActivityRequest",
    "VoiceActivity",
    "UtteranceRequest",
    "UtteranceText",
    "RealtimeModels",
    "load",
    "run",
]

_MODEL_RATE_HZ = 16000
VAD_FRAME_SAMPLES = 512
"""Silero VAD scores 512-sample frames of 16 kHz audio."""
VAD_FRAME_S = VAD_FRAME_SAMPLES / _MODEL_RATE_HZ


@dataclass(frozen=True)
class VoiceActivityRequest:
    pcm16: bytes
    """Little-endian mono PCM16 at ``sample_rate_hz``."""
    sample_rate_hz: int


@dataclass(frozen=True)
class VoiceActivity:
    speech_probabilities: list[float]
    """One per whole ``VAD_FRAME_S`` frame from the start of the request's audio; a partial last frame gets none."""


@dataclass(frozen=True)
class UtteranceRequest:
    pcm16: bytes
    sample_rate_hz: int
    language: str | None = None
    prompt: str | None = None
    final: bool = True
    """False: a partial decode of an utterance that is still open (a preview, for the live deltas)."""
    prefix: str | None = None
    """The words already sent as deltas: the decode continues them rather than revising them."""


@dataclass(frozen=True)
class UtteranceText:
    text: str
    language: str
    duration_s: float


@dataclass
class RealtimeModels:
    transcriber: Any
    """isoscribe.stages.transcribe.Transcriber"""
    vad: Any
    """faster_whisper.vad.SileroVADModel"""


def load(settings: Any) -> RealtimeModels:
    from faster_whisper.vad import get_vad_model

    from isoscribe.stages import transcribe as transcribe_stage

    return RealtimeModels(transcribe_stage.load(settings), get_vad_model())


def run(model: RealtimeModels, request: VoiceActivityRequest | UtteranceRequest) -> VoiceActivity | UtteranceText:
    audio = _model_audio(request.pcm16, request.sample_rate_hz)
    if isinstance(request, VoiceActivityRequest):
        return _voice_activity(model, audio)
    return _decode(model, audio, request)


def _model_audio(pcm16: bytes, sample_rate_hz: int):
    import numpy as np

    samples = np.frombuffer(pcm16[: len(pcm16) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    if sample_rate_hz == _MODEL_RATE_HZ or samples.size == 0:
        return samples
    from math import gcd

    from scipy.signal import resample_poly

    common = gcd(_MODEL_RATE_HZ, sample_rate_hz)
    return resample_poly(samples, _MODEL_RATE_HZ // common, sample_rate_hz // common).astype(np.float32)


def _voice_activity(model: RealtimeModels, audio) -> VoiceActivity:
    frames = audio.size // VAD_FRAME_SAMPLES
    if frames == 0:
        return VoiceActivity([])
    probabilities = model.vad(audio[: frames * VAD_FRAME_SAMPLES])
    return VoiceActivity([float(p) for p in probabilities.reshape(-1)[:frames]])


def _decode(model: RealtimeModels, audio, request: UtteranceRequest) -> UtteranceText:
    from isoscribe.stages import transcribe as transcribe_stage
    from isoscribe.transcript import SpeechRequest

    speech = SpeechRequest(
        audio_path="realtime",
        language=request.language,
        initial_prompt=request.prompt or None,
        prefix=request.prefix,
        temperatures=None if request.final else (0.0,),
        word_timestamps=False,
    )
    transcriber = model.transcriber if request.final else _preview(model.transcriber)
    transcript = transcribe_stage.transcribe(transcriber, audio, speech)
    text = " ".join(segment.text.strip() for segment in transcript.segments if segment.text.strip())
    return UtteranceText(text, transcript.language, audio.size / _MODEL_RATE_HZ)


def _preview(transcriber):
    """A partial decode is a preview whose agreed words the whole utterance's decode continues: one
    temperature, without the loop and skipped-speech second passes, so that it rarely delays that decode
    on the same worker. It keeps the beam, because the words it sends are final: continued greedy previews
    took 10 % less time and cost 0.3 points more WER (``isoscribe bench deltas``)."""
    from dataclasses import replace

    asr = transcriber.asr.model_copy(update={"loop_detection": False, "recover_skipped_speech": False})
    return replace(transcriber, asr=asr)
