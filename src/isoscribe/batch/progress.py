"""The batch's progress: a tqdm bar in seconds of audio on a terminal, structured log lines otherwise."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from isoscribe.ledger import FileStatus
from isoscribe.logs import log_event
from isoscribe.pipeline.events import Event, Probed, Progress, StageStarted

__all__ = ["BatchProgress"]

log = logging.getLogger("isoscribe.batch")


class BatchProgress:
    """A tqdm bar in seconds of audio (files done/failed, current stages, ETA) on a terminal; log lines otherwise.

    The total is the probed length of the files seen so far plus, for files not yet probed, their
    mean; the bar moves with every transcribed segment, so the ETA reflects the audio, not the file count.
    """

    def __init__(self, total: int, enabled: bool | None) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self._lock = threading.Lock()
        self._files = total
        self._done = 0
        self._failed = 0
        self._stages: dict[str, str] = {}
        self._duration_s: dict[str, float] = {}
        self._audio_done_s: dict[str, float] = {}
        self._bar: Any = None
        self._redirect: Any = None
        if enabled and total:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            bar_format = "{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}] {postfix}"
            self._bar = tqdm(total=total, dynamic_ncols=True, file=sys.stderr, bar_format=bar_format)
            self._redirect = logging_redirect_tqdm()  # log lines print above the bar, not through it
            self._redirect.__enter__()

    def follow(self, name: str, event: Event) -> None:
        """Move with a file's pipeline events: its stage, its probed length, the audio transcribed."""
        if isinstance(event, StageStarted):
            self.stage(name, event.stage)
        elif isinstance(event, Probed):
            self.probed(name, event.duration_s)
        elif isinstance(event, Progress) and event.stage == "speech":
            self.audio_done(name, event.done_s)

    def stage(self, name: str, stage: str) -> None:
        with self._lock:
            self._stages[name] = stage
            if self._bar is not None:
                self._refresh()
            else:
                log_event(log, "file_stage", file=name, stage=stage)

    def probed(self, name: str, duration_s: float) -> None:
        with self._lock:
            self._duration_s[name] = duration_s
            self._refresh()

    def audio_done(self, name: str, done_s: float) -> None:
        with self._lock:
            self._audio_done_s[name] = done_s
            self._refresh()

    def file_done(self, name: str, status: FileStatus, error: str | None) -> None:
        with self._lock:
            self._stages.pop(name, None)
            if status == FileStatus.DONE:
                self._done += 1
            elif status == FileStatus.FAILED:
                self._failed += 1
            self._audio_done_s[name] = self._duration_s.setdefault(name, self._audio_done_s.get(name, 0.0))
            self._refresh()
            state = status.value if status in (FileStatus.DONE, FileStatus.FAILED) else "interrupted"
            fields = {"file": name, "status": state, "done": self._done, "failed": self._failed}
            if error:
                fields["cause"] = error.splitlines()[0]
            log_event(log, "file_finished", logging.INFO if status == FileStatus.DONE else logging.WARNING, **fields)

    def _refresh(self) -> None:
        if self._bar is None:
            return
        known_s = sum(self._duration_s.values())
        unprobed = self._files - len(self._duration_s)
        mean_s = known_s / len(self._duration_s) if self._duration_s else 1.0
        self._bar.total = max(known_s + unprobed * mean_s, 1.0)
        self._bar.n = min(sum(self._audio_done_s.values()), self._bar.total)
        current = ", ".join(f"{name}:{stage}" for name, stage in self._stages.items())
        files = f"{self._done + self._failed}/{self._files} files"
        self._bar.set_postfix_str(f"{files} done={self._done} failed={self._failed} {current}")

    def close(self) -> None:
        if self._bar is not None:
            self._redirect.__exit__(None, None, None)
            self._bar.close()
            self._bar = None

