"""A live transcription client built on the official ``openai`` package, for the bench and the tests.

It streams PCM16 through ``client.realtime.connect`` in chunks at a chosen pace (1.0: real time, as
a microphone would), then keeps sending silence, as a microphone does, until every committed
utterance has its ``completed`` (or failed) event. Each received event is kept with the time it
arrived and the audio position the stream had reached then.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ReceivedEvent", "LiveRecord", "stream_pcm16", "connect", "pcm16_of"]

CHUNK_S = 0.1
MIN_TAIL_S = 3.0
QUIET_S = 2.0
"""Silence sent after the recording before the session may count as settled: the server's VAD may
still be catching up with the last chunks when they have all been sent."""


@dataclass
class ReceivedEvent:
    type: str
    data: dict[str, Any]
    arrived_s: float
    """Seconds since the first chunk was sent."""


@dataclass
class LiveRecord:
    events: list[ReceivedEvent] = field(default_factory=list)
    audio_s: float = 0.0
    audio_end_sent_s: float = 0.0
    """When the last chunk of the recording (before the trailing silence) was sent."""
    sent_at_s: list[tuple[float, float]] = field(default_factory=list)
    """(audio position in s, time it was sent) per chunk."""

    def of_type(self, kind: str) -> list[ReceivedEvent]:
        return [e for e in self.events if e.type == kind]

    @property
    def transcripts(self) -> list[str]:
        return [e.data["transcript"] for e in self.of_type("conversation.item.input_audio_transcription.completed")]

    @property
    def text(self) -> str:
        return " ".join(t.strip() for t in self.transcripts if t.strip())

    def sent_time_of(self, audio_s: float) -> float:
        """When the stream had sent the audio up to ``audio_s``."""
        return next((sent for position, sent in self.sent_at_s if position >= audio_s - 1e-6), self.sent_at_s[-1][1])


def connect(base_url: str, api_key: str):
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", websocket_base_url=f"{base_url.replace('http', 'ws', 1)}/v1",
                           api_key=api_key)
    return client.realtime.connect(model="whisper-1", extra_query={"intent": "transcription"})


def stream_pcm16(
    base_url: str, api_key: str, pcm16: bytes, sample_rate_hz: int = 24000, pace: float = 1.0,
    session: dict[str, Any] | None = None, max_tail_s: float = 30.0, during: Any = None,
) -> LiveRecord:
    """Stream ``pcm16`` and collect the events; ``during(connection, record)`` runs once per chunk."""
    record = LiveRecord(audio_s=len(pcm16) / 2 / sample_rate_hz)
    with connect(base_url, api_key) as connection:
        audio_input = {"format": {"type": "audio/pcm", "rate": sample_rate_hz},
                       "transcription": {"model": "whisper-1"}, "turn_detection": {"type": "server_vad"}}
        connection.session.update(session=session or {"type": "transcription", "audio": {"input": audio_input}})
        started = time.monotonic()
        done = threading.Event()
        receiver = threading.Thread(target=_receive, args=(connection, record, started, done), daemon=True)
        receiver.start()
        chunk_bytes = int(CHUNK_S * sample_rate_hz) * 2
        silence = bytes(chunk_bytes)
        position = 0
        tail_until_s = float("inf")
        while position < len(pcm16) or not (
            (position - len(pcm16)) / 2 / sample_rate_hz >= MIN_TAIL_S and _settled(record, time.monotonic() - started)
            or time.monotonic() - started > tail_until_s
        ):
            chunk = pcm16[position : position + chunk_bytes] if position < len(pcm16) else silence
            time.sleep(max(0.0, _send_time(position, len(pcm16), sample_rate_hz, pace, started, record) - time.monotonic()))
            connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            position += len(chunk)
            sent_s = time.monotonic() - started
            record.sent_at_s.append((position / 2 / sample_rate_hz, sent_s))
            if position >= len(pcm16) and not record.audio_end_sent_s:
                record.audio_end_sent_s = sent_s
                tail_until_s = sent_s + max_tail_s
            if during is not None:
                during(connection, record)
        done.set()
    receiver.join(timeout=10)
    return record


def _send_time(position: int, recording_bytes: int, sample_rate_hz: int, pace: float, started: float,
               record: LiveRecord) -> float:
    """When the chunk at byte ``position`` is due: the recording at ``pace``, the silence after it in real time."""
    if position >= recording_bytes:
        return started + record.audio_end_sent_s + (position - recording_bytes) / 2 / sample_rate_hz
    return started + position / 2 / sample_rate_hz / pace if pace > 0 else 0.0


def _settled(record: LiveRecord, now_s: float) -> bool:
    """Nothing arrived for QUIET_S, every committed item has its completed or failed event, and no
    speech is open."""
    events = list(record.events)
    if events and now_s - events[-1].arrived_s < QUIET_S:
        return False
    committed = {e.data["item_id"] for e in events if e.type == "input_audio_buffer.committed"}
    finished = {e.data.get("item_id") for e in events if e.type.startswith("conversation.item.input_audio_transcription.")
                and e.type.rsplit(".", 1)[1] in ("completed", "failed")}
    started = sum(e.type == "input_audio_buffer.speech_started" for e in events)
    stopped = sum(e.type == "input_audio_buffer.speech_stopped" for e in events)
    return bool(record.audio_end_sent_s) and started == stopped and committed <= finished


def _receive(connection: Any, record: LiveRecord, started: float, done: threading.Event) -> None:
    while not done.is_set():
        try:
            raw = connection.recv_bytes()
        except Exception:  # noqa: BLE001 - the connection closed: nothing more to record
            return
        data = json.loads(raw)
        record.events.append(ReceivedEvent(data["type"], data, time.monotonic() - started))


def pcm16_of(audio_path: str | Path, sample_rate_hz: int = 24000) -> bytes:
    """A file as a microphone would send it: mono PCM16 at ``sample_rate_hz``."""
    import numpy as np
    from scipy.signal import resample_poly

    from isoscribe.audio import SAMPLE_RATE, decode_audio

    audio = decode_audio(audio_path)
    common = np.gcd(sample_rate_hz, SAMPLE_RATE)
    resampled = resample_poly(audio, sample_rate_hz // common, SAMPLE_RATE // common)
    return (np.clip(resampled, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()
