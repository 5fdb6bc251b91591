"""The job loops: queued jobs from the JobStore through the per-file pipeline, as the synchronous endpoint runs a file.

``asr_workers`` loops claim the oldest queued job each; a job's audio is deleted once it is finished,
unless it succeeded and ``keep_job_audio`` keeps it for the web page's player. ``drain`` (SIGTERM) stops
claiming, lets running jobs finish for a while, then puts the rest back in the queue so that the next
server start runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar
from pathlib import Path

from isoscribe.backoff import Backoff
from isoscribe.config import Settings
from isoscribe.logs import log_event
from isoscribe.service.errors import ApiError
from isoscribe.pipeline import FilePipeline, PipelineError, ProgressTracker
from isoscribe.service.execution import PipelineRunner
from isoscribe.service.job_eta import PhasePaces
from isoscribe.service.job_progress import JobProgress, StageWorkers
from isoscribe.service.job_store import Job, JobStore
from isoscribe.service.policy import service_policy
from isoscribe.service.transcription import pipeline_api_error, service_speech_request
from isoscribe.transcript import KnownSpeaker, SpeechRequest
from isoscribe.service.webhook_outbox import WebhookOutbox

__all__ = ["JobLoops"]

logger = logging.getLogger("isoscribe.service.jobs")

T = TypeVar("T")
_IDLE_POLL_S = 5.0
_ORPHAN_SWEEP_S = 15.0
_STORE_RETRY = Backoff(first_s=0.2, max_s=5.0)


class JobLoops:
    def __init__(
        self,
        store: JobStore,
        pipelines: PipelineRunner,
        settings: Settings,
        stage_for_model: Callable[[str], str],
        outbox: WebhookOutbox,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.stage_for_model = stage_for_model
        self.pipelines = pipelines
        self.settings = settings
        self._wake = asyncio.Event()
        self._stopping = False
        self._drain_time_up = False
        self.store_reachable = True
        """False from a failed store call until the next one that succeeds (``/readyz`` says not ready)."""
        self._loops: list[asyncio.Task] = []
        self._active: dict[str, asyncio.Task] = {}
        self.paces = PhasePaces()
        """What each phase of a job (text on a model, diarization, summary) took per audio second here."""

    @property
    def running(self) -> int:
        return len(self._active)

    def start(self) -> None:
        requeued = self.store.requeue_running()
        if requeued:
            log_event(logger, "jobs_requeued", count=len(requeued), ids=",".join(requeued))
        self._loops = [asyncio.create_task(self._loop()) for _ in range(self.settings.service.asr_workers)]
        self._loops.append(asyncio.create_task(self._sweep_orphans()))
        self._wake.set()

    def notify(self) -> None:
        self._wake.set()

    def stop_running(self, job_id: str) -> None:
        """Stop a cancelled job that is running: its pipeline is cancelled and its stage's worker killed."""
        task = self._active.get(job_id)
        if task is not None:
            task.cancel()

    async def drain(self, timeout_s: float) -> None:
        """Stop claiming jobs; wait up to ``timeout_s`` for running ones, then re-queue the rest."""
        self._stopping = True
        self._wake.set()
        active = list(self._active.values())
        if active:
            log_event(logger, "jobs_draining", running=len(active), timeout_s=timeout_s)
            await asyncio.wait(active, timeout=timeout_s)
        self._drain_time_up = True
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)

    async def _loop(self) -> None:
        while not self._stopping:
            job = await self._store(self.store.claim_next, uuid.uuid4().hex)
            if job is None:
                self._wake.clear()
                # Another service instance may queue jobs in a shared store: look again now and then.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), _IDLE_POLL_S)
                continue
            task = asyncio.create_task(self._process(job))
            self._active[job.id] = task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise
            except Exception:  # the loop outlives a bug in one job's handling
                logger.exception("event=job_loop_error id=%s", job.id)
            finally:
                self._active.pop(job.id, None)

    async def _sweep_orphans(self) -> None:
        """Another instance sharing the store died with jobs running: they go back to the queue, here."""
        while not self._stopping:
            await asyncio.sleep(_ORPHAN_SWEEP_S)
            requeued = await self._store(self.store.requeue_orphans)
            if requeued:
                log_event(logger, "orphan_jobs_requeued", count=len(requeued), ids=",".join(requeued))
                self._wake.set()

    def _pipeline_for(self, job: Job, timings: dict[str, float]) -> tuple[FilePipeline, SpeechRequest, JobProgress]:
        """The job's pipeline, request and progress listener; ApiError for a model this instance does not
        serve (a store shared with differently configured instances may hold such a job)."""
        options = job.options
        known = tuple(KnownSpeaker(name, path) for name, path in options.known_speakers.items())
        request = replace(service_speech_request(self.settings, Path(job.audio_path), options), known_speakers=known)
        stage = self.stage_for_model(options.model)
        policy = service_policy(self.settings, stage, summarize=options.summarize)
        # A pool's CPU is this job's only while no other job runs beside it.
        workers = StageWorkers(self.pipelines.executor, stage, exclusive=lambda: self.running <= 1)
        language = "given" if request.language else "detected"
        listener = JobProgress(
            self.store, job.id, timings, ProgressTracker(request.diarize, options.summarize), workers,
            paces=self.paces, text_key=f"text {stage} language {language}",
        )
        return self.pipelines.pipeline(policy, listener), request, listener

    async def _process(self, job: Job) -> None:
        timings = {"queued_s": round(time.time() - job.created_at, 3)}
        log_event(logger, "job_started", id=job.id, attempt=job.attempts)
        if await self._cancelled(job.id):  # before this task existed, a cancel had none to stop
            finished = False
        else:
            finished = await self._outcome(job, timings)
        final = await self._store(self.store.get, job.id)
        if final is not None and final.status in ("queued", "running"):  # taken back while this instance was away
            log_event(logger, "job_taken_over", logging.WARNING, id=job.id, status=final.status)
            return  # its audio and its webhook are the next run's
        if not (self.settings.service.keep_job_audio and final is not None and final.status == "succeeded"):
            Path(job.audio_path).unlink(missing_ok=True)
        for reference in job.options.known_speakers.values():
            Path(reference).unlink(missing_ok=True)
        log_event(logger, "job_finished", id=job.id, status=final.status if final else "gone", recorded=finished)
        if final is None and not finished:  # purged while it ran: its webhook still tells it was cancelled
            final = replace(job, status="cancelled", finished_at=time.time())
        if final is not None:
            self.outbox.put_finished(final)

    async def _outcome(self, job: Job, timings: dict[str, float]) -> bool:
        """Run the job and record how it ended; whether this run's outcome was recorded (not when the job was
        cancelled meanwhile). Draining re-queues it and re-raises the cancellation."""
        listener = None
        try:
            pipeline, request, listener = self._pipeline_for(job, timings)
            result = await self.pipelines.run(pipeline, lambda: pipeline.run(request))
            timings["total_s"] = round(time.time() - job.created_at, 3)
            summary = result.summary.to_dict() if result.summary is not None else None
            return await self._store(self.store.succeed, job.id, result.transcript.to_dict(), summary, timings)
        except PipelineError as error:
            api_error = pipeline_api_error(error, Path(job.audio_path))
            error_type = api_error.code or api_error.type
            return await self._store(self.store.fail, job.id, error_type, api_error.message, timings)
        except ApiError as exc:
            return await self._store(self.store.fail, job.id, exc.code or exc.type, exc.message, timings)
        except asyncio.CancelledError:
            if not await self._cancelled(job.id):  # draining: the job goes back to the queue
                with contextlib.suppress(Exception):  # unreachable store: the next start takes it back
                    await asyncio.to_thread(self.store.requeue, job.id)
                log_event(logger, "job_requeued", id=job.id)
                raise
            return False  # cancelled by DELETE: its worker was killed, nothing more to run
        except Exception as exc:  # a bug must fail the job, not the job loop
            logger.exception("event=job_error id=%s", job.id)
            error_text = f"{type(exc).__name__}: {exc}"
            return await self._store(self.store.fail, job.id, "internal_error", error_text, timings)
        finally:
            if listener is not None:
                listener.close()

    async def _cancelled(self, job_id: str) -> bool:
        """Whether the job was cancelled or purged in the store."""
        job = await self._store(self.store.get, job_id)
        return job is None or job.status == "cancelled"

    async def _store(self, call: Callable[..., T], *args: Any) -> T:
        """A store call off the event loop, retried with backoff while the store is unreachable.

        A job's outcome is never dropped: the call is repeated until the store answers. Cancelling the
        waiting task (drain) stops the retries, and once the drain's time is up a call is tried once (a
        job the drain cancelled asks whether DELETE cancelled it too, and shutdown must not wait on that);
        the job is then still ``running`` in the store and the next start re-queues it.
        """
        delays = _STORE_RETRY.delays()
        while True:
            try:
                value = await asyncio.to_thread(call, *args)
            except Exception as exc:
                if self.store_reachable:
                    log_event(logger, "job_store_unreachable", logging.WARNING, error=exc)
                self.store_reachable = False
                if self._drain_time_up:
                    raise
                await asyncio.sleep(next(delays))
                continue
            if not self.store_reachable:
                log_event(logger, "job_store_reachable")
            self.store_reachable = True
            return value
