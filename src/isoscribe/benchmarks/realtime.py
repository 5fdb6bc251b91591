"""``isoscribe bench realtime``: live transcription through ``/v1/realtime`` at real-time pace.

A real ``isoscribe serve`` (the configured model, CPU) and the official ``openai`` client, streaming
PCM16 at 24 kHz in 100 ms chunks exactly as fast as a microphone would:

- **latency**: 5 s utterances (cut from continuous reading, ``long/sonnet001.wav``, so speech runs up
  to each cut) with 2 s of silence after each; the time from sending an utterance's last chunk to its
  ``completed`` event, p50 and p95. The server VAD's default 500 ms of silence is part of it.
- **accuracy**: WER of the session's joined text against a file transcription of the same stream
  (``/v1/audio/transcriptions``, same server and model), and the share of reference words found on
  the pyannote sample (two real speakers) with the time from the end of its audio to its last words.
- **concurrency**: 1, 2, 3… sessions streaming the utterances at once; a level is held when every
  utterance of every session completes with p95 latency ≤ ``HELD_P95_S``. Stops at the first level
  not held. Results in ``realtime.json``.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import statistics
import tempfile
import wave
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from isoscribe.benchmarks.accuracy import wer
from isoscribe.benchmarks.realtime_client import LiveRecord, pcm16_of, stream_pcm16
from isoscribe.benchmarks.server import ServerProcess
from isoscribe.config import Settings
from isoscribe.logs import log_event
from isoscribe.repetition import words_of
from isoscribe.service.realtime_turns import TurnDetection

__all__ = ["main", "utterance_stream", "latencies_s"]

logger = logging.getLogger("isoscribe.bench.realtime")

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
SOURCE = "long/sonnet001.wav"
SAMPLE = "diarization/sample.wav"
RATE_HZ = 24000
UTTERANCE_S = 5.0
SILENCE_S = 2.0
HELD_P95_S = 3.0
_API_KEY = "bench-realtime"


def main(quick: bool, results_dir: Path, settings: Settings, data_dir: Path = SHARED_DATA) -> dict[str, Any]:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    utterances = 6 if quick else 16
    stream, speech_ends_s = utterance_stream(data_dir / SOURCE, utterances)
    with tempfile.TemporaryDirectory(prefix="isoscribe-bench-realtime-") as tmp:
        server = ServerProcess(Path(tmp), _server_config(settings, Path(tmp) / "data")).start()
        try:
            stream_pcm16(server.url, _API_KEY, stream[: 2 * RATE_HZ * 7], RATE_HZ, pace=0)  # warm the pool
            latency = _latency_section(server, stream, speech_ends_s, Path(tmp))
            sample = _sample_section(server, data_dir)
            concurrency = _concurrency_section(server, *utterance_stream(data_dir / SOURCE, 4 if quick else 8))
        finally:
            server.stop()
    results = {
        "mode": "quick" if quick else "full",
        "model": settings.asr.model,
        "cpu_cores": _cores(),
        "utterance_s": UTTERANCE_S,
        "latency": latency,
        "pyannote_sample": sample,
        "concurrency": concurrency,
    }
    results["acceptance"] = {
        "p50_le_1_5_s": latency["p50_s"] <= 1.5,
        "last_words_le_3_s": sample["last_words_after_audio_end_s"] <= 3.0,
    }
    (results_dir / "realtime.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


def utterance_stream(source: Path, count: int) -> tuple[bytes, list[float]]:
    """``count`` consecutive 5 s pieces of ``source`` (75 s for the sonnet: it repeats), each followed by
    2 s of silence, as 24 kHz PCM16, and where each piece ends (s)."""
    pcm16 = pcm16_of(source, RATE_HZ)
    piece, silence = int(UTTERANCE_S * RATE_HZ) * 2, bytes(int(SILENCE_S * RATE_HZ) * 2)
    pcm16 *= -(-count * piece // len(pcm16))  # the source again from its start where it is too short
    pieces = [pcm16[i * piece : (i + 1) * piece] for i in range(count)]
    ends = [i * (UTTERANCE_S + SILENCE_S) + UTTERANCE_S for i in range(count)]
    return b"".join(p + silence for p in pieces), ends


def latencies_s(record: LiveRecord, speech_ends_s: list[float]) -> list[dict[str, float]]:
    """Per utterance found: seconds from sending its end to its ``speech_stopped`` (``close_s``) and to
    its ``completed`` (``latency_s``). Its end is the piece's end, or where the VAD heard speech end
    when that came earlier (a pause at the end of a piece)."""
    completed = {e.data["item_id"]: e for e in record.of_type("conversation.item.input_audio_transcription.completed")}
    started = {e.data["item_id"]: e.data["audio_start_ms"] / 1000 for e in record.of_type("input_audio_buffer.speech_started")}
    silence_s = TurnDetection().silence_s  # the server VAD's default, which the bench's sessions use
    found = []
    for end_s in speech_ends_s:
        piece_start_s = end_s - UTTERANCE_S
        items = [e for e in record.of_type("input_audio_buffer.speech_stopped")
                 if piece_start_s - 0.5 <= started.get(e.data["item_id"], -1) < end_s and e.data["item_id"] in completed]
        if not items:
            continue
        stopped = items[-1]
        spoken_until_s = min(end_s, stopped.data["audio_end_ms"] / 1000 - silence_s)
        sent_s = record.sent_time_of(spoken_until_s)
        found.append({"close_s": stopped.arrived_s - sent_s, "latency_s": completed[stopped.data["item_id"]].arrived_s - sent_s})
    return found


def _latency_section(server: ServerProcess, stream: bytes, ends_s: list[float], tmp: Path) -> dict[str, Any]:
    record = stream_pcm16(server.url, _API_KEY, stream, RATE_HZ, pace=1.0)
    found = latencies_s(record, ends_s)
    latencies = [utterance["latency_s"] for utterance in found]
    file_text = _file_transcription(server, stream, tmp / "stream.wav")
    section = {
        "utterances": len(ends_s),
        "completed": len(latencies),
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(float(np.percentile(latencies, 95)), 3),
        "max_s": round(max(latencies), 3),
        "vad_close_p50_s": round(statistics.median(u["close_s"] for u in found), 3),
        "decode_after_close_p50_s": round(statistics.median(u["latency_s"] - u["close_s"] for u in found), 3),
        "errors": len(record.of_type("error")),
        "wer_vs_file_transcription": round(wer(file_text, record.text), 4),
        "live_text": record.text,
        "file_text": file_text,
    }
    log_event(logger, "bench_realtime_latency", p50_s=section["p50_s"], p95_s=section["p95_s"],
              wer=section["wer_vs_file_transcription"])
    return section


def _sample_section(server: ServerProcess, data_dir: Path) -> dict[str, Any]:
    """The pyannote sample at real-time pace: reference words found, and the last words' delay."""
    record = stream_pcm16(server.url, _API_KEY, pcm16_of(data_dir / SAMPLE, RATE_HZ), RATE_HZ, pace=1.0)
    reference = (data_dir / SAMPLE).with_suffix(".txt").read_text()
    completed = record.of_type("conversation.item.input_audio_transcription.completed")
    return {
        "audio_s": round(record.audio_s, 2),
        "reference_words_found": round(_found_share(reference, record.text), 4),
        "last_words_after_audio_end_s": round(completed[-1].arrived_s - record.audio_end_sent_s, 3),
        "errors": len(record.of_type("error")),
        "text": record.text,
    }


def _concurrency_section(server: ServerProcess, stream: bytes, ends_s: list[float]) -> dict[str, Any]:
    levels = []
    for sessions in range(1, 9):
        with concurrent.futures.ThreadPoolExecutor(sessions) as pool:
            records = list(pool.map(lambda _: stream_pcm16(server.url, _API_KEY, stream, RATE_HZ, pace=1.0),
                                    range(sessions)))
        latencies = [[u["latency_s"] for u in latencies_s(record, ends_s)] for record in records]
        flat = [value for per_session in latencies for value in per_session]
        complete = all(len(per_session) == len(ends_s) for per_session in latencies)
        p95 = float(np.percentile(flat, 95)) if flat else float("inf")
        held = complete and p95 <= HELD_P95_S
        levels.append({"sessions": sessions, "held": held, "all_completed": complete,
                       "p50_s": round(statistics.median(flat), 3) if flat else None, "p95_s": round(p95, 3)})
        log_event(logger, "bench_realtime_level", sessions=sessions, held=held, p95_s=p95)
        if not held:
            break
    return {"held_p95_s": HELD_P95_S, "levels": levels,
            "max_sessions_held": max((level["sessions"] for level in levels if level["held"]), default=0)}


def _file_transcription(server: ServerProcess, pcm16: bytes, path: Path) -> str:
    import httpx

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE_HZ)
        out.writeframes(pcm16)
    with open(path, "rb") as audio:
        response = httpx.post(f"{server.url}/v1/audio/transcriptions", files={"file": ("stream.wav", audio)},
                              data={"model": "whisper-1"}, headers={"Authorization": f"Bearer {_API_KEY}"},
                              timeout=600)
    response.raise_for_status()
    return response.json()["text"]


def _found_share(reference: str, hypothesis: str) -> float:
    wanted, got = Counter(words_of(reference)), Counter(words_of(hypothesis))
    return sum(min(count, got[word]) for word, count in wanted.items()) / max(1, sum(wanted.values()))


def _server_config(settings: Settings, data_dir: Path) -> dict[str, Any]:
    device = "cpu" if settings.asr.device == "auto" else settings.asr.device
    return {
        "asr": {"model": settings.asr.model, "device": device},
        "isolation": {"prespawn": True},
        "service": {"data_dir": str(data_dir), "api_key": _API_KEY, "asr_workers": 1, "max_realtime_sessions": 8},
    }


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))
