"""One number for "how far is this file": pipeline events folded into a fraction and audio seconds."""

from __future__ import annotations

from isoscribe.pipeline.events import Event, FileDone, Probed, Progress, StageStarted

__all__ = ["ProgressTracker"]

_PROBED = 0.05


class ProgressTracker:
    """Share of a file's work done (0–1), the current stage, and audio seconds transcribed.

    Transcription is most of the work; diarization and the summary get fixed slices after it.
    """

    def __init__(self, diarize: bool, summarize: bool) -> None:
        self.diarize_share = 0.15 if diarize else 0.0
        self.summary_share = 0.12 if summarize else 0.0
        self.speech_end = 0.97 - self.diarize_share - self.summary_share
        self.fraction = 0.0
        self.stage = "queued"
        self.audio_done_s = 0.0
        self.audio_total_s: float | None = None

    def update(self, event: Event) -> bool:
        """Fold one event in; True when the fraction or the stage changed."""
        before = (self.fraction, self.stage)
        if isinstance(event, StageStarted):
            self.stage = event.stage
            if event.stage == "summary":
                self._advance(self.speech_end + self.diarize_share)
        elif isinstance(event, Probed):
            self.audio_total_s = event.duration_s
            self._advance(_PROBED)
        elif isinstance(event, Progress) and event.total_s > 0:
            self._progress(event)
        elif isinstance(event, FileDone):
            self.stage, self.fraction = "done", 1.0
        return (self.fraction, self.stage) != before

    def _progress(self, event: Progress) -> None:
        done = min(1.0, event.done_s / event.total_s)
        if event.stage == "speech":
            self.audio_done_s = event.done_s
            self._advance(_PROBED + done * (self.speech_end - _PROBED))
        elif event.stage == "diarize":
            self.stage = "diarize"
            self._advance(self.speech_end + done * self.diarize_share)

    def _advance(self, fraction: float) -> None:
        self.fraction = max(self.fraction, round(fraction, 4))
