"""Server VAD turn detection over the speech probabilities the realtime stage computes.

This is OpenAI's ``server_vad``: speech starts when the probability reaches ``threshold`` (the
utterance then begins ``prefix_padding_ms`` earlier) and stops after ``silence_duration_ms`` below
it. Only numbers cross into the server: the VAD model itself runs in the worker pool.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TurnDetection", "SpeechStarted", "SpeechStopped", "TurnDetector"]

_CONFIRM_FRAMES = 3
"""Consecutive speech frames (about 100 ms) before speech counts as started: a click is not a turn."""
_HYSTERESIS = 0.15
"""Once speaking, a frame counts as speech down to ``threshold`` minus this (Silero's own rule)."""


@dataclass(frozen=True)
class TurnDetection:
    threshold: float = 0.5
    prefix_padding_s: float = 0.3
    silence_s: float = 0.5
    max_utterance_s: float = 30.0
    """An utterance this long is closed even while speech goes on: Whisper decodes 30 s windows."""


@dataclass(frozen=True)
class SpeechStarted:
    start_s: float


@dataclass(frozen=True)
class SpeechStopped:
    end_s: float
    """Where the utterance's audio ends: the last speech frame plus the silence that closed it."""


class TurnDetector:
    def __init__(self, detection: TurnDetection, floor_s: float = 0.0) -> None:
        self.detection = detection
        self.floor_s = floor_s
        """An utterance never starts before this (the end of the previous one)."""
        self.start_s: float | None = None
        self._last_speech_end_s = 0.0
        self._run: list[float] = []
        self.pause_s = 0.0
        """Silence since the open utterance's last speech frame (0 while speaking or between utterances)."""

    @property
    def speaking(self) -> bool:
        return self.start_s is not None

    @property
    def pausing(self) -> bool:
        """The open utterance has been silent for half the silence that would close it."""
        return self.pause_s >= self.detection.silence_s / 2

    def restart(self, floor_s: float) -> None:
        """Forget any open utterance (the buffer was committed or cleared up to ``floor_s``)."""
        self.floor_s = floor_s
        self.start_s = None
        self._run = []
        self.pause_s = 0.0

    def feed(self, frame_start_s: float, frame_s: float, probability: float) -> SpeechStarted | SpeechStopped | None:
        frame_end_s = frame_start_s + frame_s
        detection = self.detection
        if self.start_s is None:
            if probability < detection.threshold:
                self._run = []
                return None
            self._run.append(frame_start_s)
            if len(self._run) < _CONFIRM_FRAMES:
                return None
            self.start_s = max(self.floor_s, self._run[0] - detection.prefix_padding_s)
            self._last_speech_end_s = frame_end_s
            self._run = []
            return SpeechStarted(self.start_s)
        if probability >= detection.threshold - _HYSTERESIS:
            self._last_speech_end_s = frame_end_s
        self.pause_s = frame_end_s - self._last_speech_end_s
        if self.pause_s >= detection.silence_s or frame_end_s - self.start_s >= detection.max_utterance_s:
            self.restart(frame_end_s)
            return SpeechStopped(frame_end_s)
        return None
