"""THE per-file sequence: probe → speech → finish → summary → outputs.

Every entry point runs a file through ``FilePipeline``: ``isoscribe transcribe`` and ``summarize``,
the batch, the synchronous endpoint, async jobs, and (through the Celery executor) the cluster. They
differ only in their ``Policy``, their executor, where outputs go, and who listens to the events.
The parent does light work only: media and models are touched by stage workers, never here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, CancelledError, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

from isoscribe.executors import StageExecutor
from isoscribe.isolation import IsolationError, TaskCancelled, TaskResult
from isoscribe.logs import log_event
from isoscribe.pipeline.cancellation import Cancellation
from isoscribe.pipeline.events import (
    Event,
    FileDone,
    FileFailed,
    Listener,
    Probed,
    Progress,
    SegmentReady,
    StageFinished,
    StageStarted,
    StageWarning,
)
from isoscribe.pipeline.pieces import piece_layout, stitch_pieces
from isoscribe.pipeline.policy import FailureKind, PipelineError, Policy, RetryPolicy
from isoscribe.pipeline.stages import summary_request
from isoscribe.speakers import assign_speakers
from isoscribe.summary.digest import EMPTY_WARNING, build_digest
from isoscribe.summary.text import has_words
from isoscribe.transcript import (
    Piece,
    PieceResult,
    ProbeRequest,
    Segment,
    SpeakerClusterRequest,
    SpeakerTurn,
    SpeechRequest,
    Summary,
    Transcript,
)

__all__ = ["FilePipeline", "FileResult", "OutputWriter"]

logger = logging.getLogger("isoscribe.pipeline")

OutputWriter = Callable[[Transcript, "Summary | None"], list[str]]
"""Writes a finished file's outputs (files, stdout, a job record) and returns where they went."""

_ONCE = RetryPolicy(max_attempts=1)


@dataclass
class FileResult:
    transcript: Transcript
    summary: Summary | None = None
    outputs: list[str] = field(default_factory=list)


class FilePipeline:
    """One file through the stages. ``transcribe`` then ``complete`` is the whole sequence (``run``);
    the batch may call the halves in two phases so that only one model is loaded at a time."""

    def __init__(
        self,
        executor: StageExecutor,
        policy: Policy,
        listener: Listener | None = None,
        cancellation: Cancellation | None = None,
    ) -> None:
        self.executor = executor
        self.policy = policy
        self.listener = listener
        self.cancellation = cancellation or Cancellation()

    def run(self, request: SpeechRequest, write_outputs: OutputWriter | None = None, attempts_done: int = 0) -> FileResult:
        return self.complete(self.transcribe(request, attempts_done), write_outputs)

    def transcribe(self, request: SpeechRequest, attempts_done: int = 0) -> Transcript:
        """Probe, speech stage, speakers onto words and segments. ``attempts_done``: speech attempts
        an earlier run already spent on this file (they count against ``policy.retry.max_attempts``)."""
        try:
            duration_s = self._probe(request.audio_path)
            speech_request = _with_limit(request, self.policy.max_duration_s)
            pieces, piece_s = piece_layout(speech_request, duration_s, self.policy.piece_workers)
            if pieces > 1 and self.policy.piece_workers > 1:
                piece_request = replace(speech_request, piece_s=piece_s)
                speech = self._speech_in_pieces(piece_request, pieces, duration_s, attempts_done)
            else:
                speech = self._speech(speech_request, attempts_done).value
            # No cancellation check here: speakers onto words is light parent work, and a stop must not
            # throw away a finished speech result (the batch keeps it for the next run).
            started = time.monotonic()
            self._emit(StageStarted("finish"))
            transcript = assign_speakers(speech)
            transcript.duration_s = transcript.duration_s or duration_s
            self._emit(StageFinished("finish", time.monotonic() - started))
            return transcript
        except PipelineError as error:
            self._emit(FileFailed(error.kind.value, error.message))
            raise

    def _speech(self, request: Any, attempts_done: int, listener: Listener | None = None) -> TaskResult:
        policy = self.policy
        return self._run_stage("speech", request, policy.retry, attempts_done, policy.speech_stage, listener)

    def _speech_in_pieces(
        self, request: SpeechRequest, count: int, duration_s: float, attempts_done: int
    ) -> Transcript:
        """``policy.piece_workers`` pieces in flight at a time, then the pieces' speaker vectors clustered
        together, then the pieces stitched in order."""
        events = _PieceEvents(self._emit, duration_s, count)
        in_flight = min(count, self.policy.piece_workers)
        first_failure: list[BaseException] = []
        failure_lock = threading.Lock()
        with self.cancellation.child() as siblings, ThreadPoolExecutor(in_flight, "speech-piece") as threads:
            piece_pipeline = FilePipeline(self.executor, self.policy, self.listener, siblings)

            def run_piece(index: int) -> PieceResult:
                try:
                    result = piece_pipeline._speech(replace(request, piece=Piece(index, count)), attempts_done,
                                                    events.listener(index)).value
                except BaseException as error:
                    # The file has failed: queued pieces never start, running ones stop, none is retried.
                    with failure_lock:
                        first_failure.append(error)
                    siblings.cancel()
                    raise
                events.piece_done(index, result)
                return result

            futures = [threads.submit(run_piece, index) for index in range(count)]
            wait(futures, return_when=FIRST_EXCEPTION)
            if first_failure:
                for future in futures:
                    future.cancel()
        if first_failure:
            raise first_failure[0]
        pieces = [future.result() for future in futures]
        turns: list[SpeakerTurn] = []
        if request.diarize:
            vectors = [piece.speaker_vectors for piece in pieces if piece.speaker_vectors is not None]
            cluster = SpeakerClusterRequest(
                vectors, request.num_speakers, request.min_speakers, request.max_speakers, request.known_speakers
            )
            turns = self._speech(cluster, attempts_done).value
        speakers = len({turn.speaker for turn in turns})
        log_event(logger, "speech_pieces_stitched", pieces=count, audio=request.audio_path, speakers=speakers)
        return stitch_pieces(pieces, turns)

    def complete(self, transcript: Transcript, write_outputs: OutputWriter | None = None) -> FileResult:
        """Summary (when the policy asks) and outputs. A failed summary is an empty one with a warning."""
        try:
            summary = self.summarize(transcript) if self.policy.summarize else None
            outputs: list[str] = []
            if write_outputs is not None:
                self.cancellation.check("outputs")
                started = time.monotonic()
                self._emit(StageStarted("outputs"))
                outputs = write_outputs(transcript, summary)
                self._emit(StageFinished("outputs", time.monotonic() - started))
        except PipelineError as error:
            self._emit(FileFailed(error.kind.value, error.message))
            raise
        self._emit(FileDone(transcript.duration_s, tuple(outputs)))
        return FileResult(transcript, summary, outputs)

    def summarize(self, transcript: Transcript) -> Summary:
        """The summary stage: the grounded digest. Never raises but for cancellation: when the stage
        fails, the parent builds the extractive digest itself (it needs no model) and adds a warning."""
        request = summary_request(transcript)
        if not any(has_words(turn.text) for turn in request.turns):
            return Summary.empty(EMPTY_WARNING)
        try:
            result = self._run_stage("summary", request, _ONCE)
        except PipelineError as error:
            if error.kind == FailureKind.CANCELLED:
                raise
            cause = error.message.splitlines()[0] if error.message else error.kind.value
            log_event(
                logger, "summary_failed", logging.WARNING, error=error.kind.value, cause=error.message,
                traceback=getattr(error.cause, "traceback_text", ""),
            )
            warning = f"summary stage failed: {cause}; the digest is extractive"
            self._emit(StageWarning("summary", warning))
            return build_digest(list(request.turns), warnings=[warning])
        summary, stats = result.value, result.stats
        log_event(
            logger, "summary_done", wall_s=stats.wall_s, peak_rss_mb=stats.peak_rss_mb, chunks=summary.chunks,
            prompt_tokens=summary.prompt_tokens, completion_tokens=summary.completion_tokens,
            overview=summary.overview_kind, action_items=len(summary.action_items), topics=len(summary.topics),
        )
        return summary

    def measure(self, audio_path: str) -> float:
        """The probe stage alone: seconds of audio counted from decoded samples in a worker, up to
        ``policy.max_duration_s`` (past it: PipelineError TOO_LONG)."""
        return self._run_stage("probe", ProbeRequest(audio_path, self.policy.max_duration_s), _ONCE).value.duration_s

    def _probe(self, audio_path: str) -> float:
        request = ProbeRequest(audio_path, self.policy.max_duration_s)
        duration_s = self._run_stage("probe", request, self.policy.retry.for_probe()).value.duration_s
        if duration_s < self.policy.min_duration_s:
            raise PipelineError(
                FailureKind.TOO_SHORT,
                "probe",
                f"audio is {duration_s:.3f} s long, shorter than the minimum of {self.policy.min_duration_s:g} s",
            )
        self._emit(Probed(duration_s))
        return duration_s

    def _run_stage(
        self,
        stage: str,
        request: Any,
        retry: RetryPolicy,
        attempts_done: int = 0,
        executor_stage: str | None = None,
        listener: Listener | None = None,
    ) -> TaskResult:
        attempt = attempts_done
        while True:
            attempt += 1
            self.cancellation.check(stage)
            self._emit(StageStarted(stage, attempt))
            started = time.monotonic()
            try:
                future = self.executor.submit(executor_stage or stage, request, listener or self.listener)
                with self.cancellation.track(self.executor, future):
                    result = _result(future, stage)
            except IsolationError as error:
                self._emit(StageFinished(stage, time.monotonic() - started, error.peak_rss_mb or None,
                                         attempt=attempt, error=str(error)))
                if not retry.should_retry(error, attempt) or self.cancellation.cancelled:
                    raise _failure(stage, error, attempt, retry) from None
                self._retry_after(stage, error, attempt, retry)
                continue
            stats = result.stats
            self._emit(StageFinished(stage, stats.wall_s, stats.peak_rss_mb, stats.peak_gpu_mb, attempt=attempt))
            return result

    def _retry_after(self, stage: str, error: IsolationError, attempt: int, retry: RetryPolicy) -> None:
        backoff_s = retry.delay_s(attempt)
        log_event(
            logger, f"{stage}_retry", logging.WARNING, attempt=attempt, backoff_s=backoff_s,
            cause=str(error).splitlines()[0],
        )
        self.cancellation.wait(backoff_s)

    def _emit(self, event: Event) -> None:
        if self.listener is None:
            return
        try:
            self.listener(event)
        except Exception:  # a listener's bug never fails the file
            logger.exception("event=pipeline_listener_failed event_type=%s", type(event).__name__)


class _PieceEvents:
    """Pieces run at once, but their segments reach the listener in file order, numbered across the
    file as the stitched transcript numbers them: a piece's segments wait until the pieces before it
    are done. A retried piece numbers its segments from 0 again; those passed on already are not
    passed twice. A finished piece's result supplies any segment whose event never came (Celery
    reports only a task's latest event). Progress in audio seconds counts the pieces done, so it only
    moves forward."""

    def __init__(self, emit: Listener, duration_s: float, count: int) -> None:
        self._emit = emit
        self._duration_s = duration_s
        self._done_s = 0.0
        self._lock = threading.Lock()
        self._held: list[dict[int, Segment]] = [{} for _ in range(count)]
        """Per piece, by the piece's own segment id: segments not passed on yet."""
        self._passed = [0] * count
        self._finished = [False] * count
        self._current = 0
        """The first piece not finished: its segments pass on as they come."""
        self._next_id = 0

    def listener(self, index: int) -> Listener:
        def forward(event: Event) -> None:
            if isinstance(event, SegmentReady):
                with self._lock:
                    self._hold(index, [event.segment])
                    self._pass_on()
            elif not isinstance(event, Progress):
                self._emit(event)

        return forward

    def piece_done(self, index: int, piece: PieceResult) -> None:
        with self._lock:
            self._hold(index, piece.transcript.segments)
            self._finished[index] = True
            self._done_s += piece.end_s - piece.start_s
            done_s = min(self._done_s, self._duration_s)
            self._pass_on()
        self._emit(Progress("speech", done_s, self._duration_s))

    def _hold(self, index: int, segments: list[Segment]) -> None:
        """Under the lock: keep the piece's segments not passed on yet (a later copy replaces an earlier)."""
        for segment in segments:
            if segment.id >= self._passed[index]:
                self._held[index][segment.id] = segment

    def _pass_on(self) -> None:
        """Under the lock, so that two pieces' threads cannot interleave what they pass on."""
        while self._current < len(self._held):
            held, index = self._held[self._current], self._current
            while self._passed[index] in held:
                segment = held.pop(self._passed[index])
                self._passed[index] += 1
                self._emit(SegmentReady(replace(segment, id=self._next_id)))
                self._next_id += 1
            if not self._finished[index]:
                return
            self._current += 1


def _result(future: Future[TaskResult], stage: str) -> TaskResult:
    """The task's result; a task cancelled before it ran raises TaskCancelled, as one cancelled while running does."""
    try:
        return future.result()
    except CancelledError:
        raise TaskCancelled(stage, detail="task cancelled before it started") from None


def _failure(stage: str, error: IsolationError, attempt: int, retry: RetryPolicy) -> PipelineError:
    failure = PipelineError.from_isolation(stage, error)
    if retry.max_attempts > 1 and retry.covers(error):
        failure.message = f"{failure.message} (gave up after {attempt} attempts)"
        failure.args = (failure.message,)
    return failure


def _with_limit(request: SpeechRequest, max_duration_s: float | None) -> SpeechRequest:
    if max_duration_s is None or request.max_duration_s is not None:
        return request
    return replace(request, max_duration_s=max_duration_s)
