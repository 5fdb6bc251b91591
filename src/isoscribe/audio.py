"""Decode any audio PyAV reads to 16 kHz mono float32, and measure how long it really is.

Imported by worker processes only (the probe and speech stages): a parent never opens untrusted
media. Durations that limits act on come from counted samples, never from container metadata, which
a crafted file can set to anything; ``max_duration_s`` stops decoding as soon as it is passed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import av
import numpy as np

__all__ = ["SAMPLE_RATE", "AudioError", "AudioTooLong", "decode_audio", "measure_duration", "probe_duration"]

SAMPLE_RATE = 16000


class AudioError(ValueError):
    """The file cannot be used as audio; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


class AudioTooLong(AudioError):
    """Decoding passed ``max_duration_s``; it stopped there."""

    def __init__(self, path: str | os.PathLike, max_duration_s: float) -> None:
        self.max_duration_s = max_duration_s
        super().__init__(path, f"audio runs over the limit of {max_duration_s:g} s (decoding stopped there)")

    def __reduce__(self):
        return (type(self), (self.path, self.max_duration_s))


def probe_duration(path: str | os.PathLike) -> float:
    """Duration in seconds from container or stream metadata; decodes only when neither has one."""
    with _open(path) as container:
        stream = _audio_stream(container, path)
        duration_s = _metadata_duration(container, stream)
        if duration_s is None:
            duration_s = _count_decoded_seconds(container, stream, path)
    if duration_s <= 0:
        raise AudioError(path, "audio has zero duration")
    return duration_s


def measure_duration(path: str | os.PathLike, max_duration_s: float | None = None) -> float:
    """Seconds of audio in the first audio stream, counted from every decoded frame (no resampling).

    Raises AudioError for a file that is not decodable audio or holds no samples, and AudioTooLong
    as soon as the count passes ``max_duration_s``.
    """
    samples = 0
    with _open(path) as container:
        stream = _audio_stream(container, path)
        rate = stream.rate or stream.codec_context.sample_rate
        if not rate:
            raise AudioError(path, "audio stream has no sample rate")
        limit = None if max_duration_s is None else max_duration_s * rate
        try:
            for frame in container.decode(stream):
                samples += frame.samples
                if limit is not None and samples > limit:
                    raise AudioTooLong(path, max_duration_s)
        except AudioError:
            raise
        except (av.FFmpegError, ValueError) as exc:
            raise AudioError(path, f"corrupt audio ({_short(exc)})") from None
    if samples == 0:
        raise AudioError(path, "audio has zero duration (no samples)")
    return samples / rate


def decode_audio(
    path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, max_duration_s: float | None = None
) -> np.ndarray:
    """All audio of the first audio stream, downmixed to mono, resampled, as float32 in [-1, 1].

    AudioTooLong once more than ``max_duration_s`` is decoded, whatever the container claims.
    """
    with _open(path) as container:
        stream = _audio_stream(container, path)
        stream.thread_type = "AUTO"
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        expected_s = min(_metadata_duration(container, stream) or 60.0, max_duration_s or math.inf)
        buffer = _GrowingBuffer(int(expected_s * sample_rate) + sample_rate)
        limit = math.inf if max_duration_s is None else max_duration_s * sample_rate
        try:
            for frame in container.decode(stream):
                for resampled in resampler.resample(frame):
                    buffer.append(resampled.to_ndarray().reshape(-1))
                if buffer.size > limit:
                    raise AudioTooLong(path, max_duration_s)
            for resampled in resampler.resample(None):
                buffer.append(resampled.to_ndarray().reshape(-1))
        except AudioError:
            raise
        except (av.FFmpegError, ValueError) as exc:
            raise AudioError(path, f"corrupt audio ({exc})") from None
    samples = buffer.result()
    if samples.size == 0:
        raise AudioError(path, "audio has zero duration (no samples)")
    # Resampling a loud 24-bit source can overshoot full scale slightly; Whisper expects [-1, 1].
    return np.clip(samples, -1.0, 1.0, out=samples)


class _GrowingBuffer:
    """Preallocated float32 array that grows geometrically: one copy of the audio, not a list plus a concat."""

    def __init__(self, capacity: int) -> None:
        self._data = np.empty(max(capacity, 1), dtype=np.float32)
        self._size = 0

    def append(self, chunk: np.ndarray) -> None:
        end = self._size + chunk.size
        if end > self._data.size:
            grown = np.empty(max(end, int(self._data.size * 1.5)), dtype=np.float32)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : end] = chunk
        self._size = end

    @property
    def size(self) -> int:
        return self._size

    def result(self) -> np.ndarray:
        # A view, not a copy: the unused tail is at most the 1 s margin or one growth step.
        return self._data[: self._size]


def _open(path: str | os.PathLike):
    file_path = Path(path)
    if not file_path.exists():
        raise AudioError(path, "file not found")
    if not file_path.is_file():
        raise AudioError(path, "not a regular file")
    if file_path.stat().st_size == 0:
        raise AudioError(path, "file is empty")
    try:
        return av.open(str(file_path), metadata_errors="ignore")
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as exc:
        raise AudioError(path, f"not a readable audio file ({_short(exc)})") from None


def _audio_stream(container, path: str | os.PathLike):
    if not container.streams.audio:
        container.close()
        raise AudioError(path, "no audio stream (not an audio file)")
    return container.streams.audio[0]


def _metadata_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _count_decoded_seconds(container, stream, path: str | os.PathLike) -> float:
    samples = 0
    try:
        for frame in container.decode(stream):
            samples += frame.samples
    except (av.FFmpegError, ValueError) as exc:
        raise AudioError(path, f"corrupt audio ({exc})") from None
    return samples / stream.rate if stream.rate else 0.0


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "…"
