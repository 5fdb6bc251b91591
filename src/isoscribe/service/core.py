"""The service behind the routers: admission, files through the pipeline, the job store, loops and expiry.

It takes received uploads (a file on disk) and typed parameters; HTTP stays in the routers."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Literal

from isoscribe.config import Settings
from isoscribe.executors import StageExecutor
from isoscribe.logs import log_event
from isoscribe.service.errors import ApiError
from isoscribe.pipeline import PipelineError
from isoscribe.service.admission import Upload, delete_files
from isoscribe.service.auth import Caller, KeyRing
from isoscribe.service.execution import PipelineRunner, QueueFull, build_executor
from isoscribe.service.job_expiry import expire_jobs_forever, job_files
from isoscribe.service.job_edits import conflict
from isoscribe.service.job_loops import JobLoops
from isoscribe.service.job_store import Job, JobOptions, JobStore
from isoscribe.service.known_speakers import check_references, save_references
from isoscribe.service.metrics import ServiceMetrics
from isoscribe.service.model_routing import ModelRouter
from isoscribe.service.policy import service_policy
from isoscribe.service.schemas import JobParams
from isoscribe.service.streaming import LiveRun
from isoscribe.service.transcription import pipeline_api_error, service_speech_request
from isoscribe.service.webhook_outbox import WebhookOutbox, webhook_secret
from isoscribe.webhooks import WebhookRefused, check_url_async
from isoscribe.summary.renaming import rename_speakers, rename_summary_speakers
from isoscribe.transcript import KnownSpeaker, Summary, Transcript

__all__ = ["Service"]

logger = logging.getLogger("isoscribe.service")

_STORE_PING_TIMEOUT_S = 2.0


class Service:
    def __init__(self, settings: Settings, executor: StageExecutor | None = None) -> None:
        self.settings = settings
        self._owns_executor = executor is None
        self.executor: StageExecutor | None = executor
        self.data_dir = Path(settings.service.data_dir)
        self.request_upload_dir = self.data_dir / "uploads"
        self.job_audio_dir = self.data_dir / "job-audio"
        self.store = _open_job_store(settings, self.data_dir)
        self.keys = KeyRing(settings)
        self.pipelines: PipelineRunner | None = None
        self.models: ModelRouter | None = None
        self.job_loops: JobLoops | None = None
        self.outbox: WebhookOutbox | None = None
        self.metrics: ServiceMetrics | None = None
        self.ready = False
        self.accepting = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Future | None = None
        self._expiry: asyncio.Future | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for folder in (self.request_upload_dir, self.job_audio_dir):
            folder.mkdir(parents=True, exist_ok=True)
        _remove_leftover_uploads(self.request_upload_dir)
        if isinstance(self.store, JobStore):  # a shared Redis store's other servers may be receiving uploads now
            await asyncio.to_thread(_remove_unowned_job_files, self.store, self.job_audio_dir)
        self.settings = await asyncio.to_thread(_resolved, self.settings)
        if self.executor is None:
            self.executor = await asyncio.to_thread(build_executor, self.settings)
        service = self.settings.service
        self.pipelines = PipelineRunner(
            self.executor, service.queue_size + service.asr_workers, service.asr_workers, service.asr_workers
        )
        self.metrics = ServiceMetrics(self.executor, self.pipelines, self.job_depth)
        self.outbox = WebhookOutbox(self.settings, webhook_secret(self.settings, self.data_dir))
        self.outbox.start()
        self.models = ModelRouter(self.settings, self.executor, self._owns_executor)
        self.job_loops = JobLoops(self.store, self.pipelines, self.settings, self.models.stage_for, self.outbox)
        self.job_loops.start()
        self._expiry = asyncio.ensure_future(expire_jobs_forever(self.store, service.job_ttl_s))
        self.ready = True
        log_event(logger, "service_ready", data_dir=self.data_dir, asr_workers=service.asr_workers)

    def begin_drain_threadsafe(self) -> None:
        """Start draining now (from a signal handler): no new work, running jobs get the drain time."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._begin_drain)

    def _begin_drain(self) -> None:
        self.ready = False
        self.accepting = False
        if self._drain is None and self.job_loops is not None:
            self._drain = asyncio.ensure_future(self.job_loops.drain(self.settings.service.drain_timeout_s))

    async def stop(self) -> None:
        """Drain: running jobs finish within the drain time or go back to the queue; workers stop."""
        self._begin_drain()
        if self._drain is not None:
            await self._drain
        if self.outbox is not None:  # jobs that finished in the drain get their webhooks first
            await self.outbox.stop()
        if self.pipelines is not None:
            await asyncio.to_thread(self.pipelines.shutdown)
        if self._expiry is not None:
            self._expiry.cancel()
        if self.executor is not None and self._owns_executor:
            await asyncio.to_thread(self.executor.shutdown)
        self.store.close()
        log_event(logger, "service_stopped")

    async def is_ready(self) -> bool:
        """Accepting work, and the job store answers (a Redis outage makes the service not ready)."""
        if not self.ready:
            return False
        try:
            await asyncio.wait_for(asyncio.to_thread(self.store.ping), _STORE_PING_TIMEOUT_S)
        except Exception:
            return False
        return True

    def job_depth(self) -> int:
        running = self.job_loops.running if self.job_loops else 0
        return self.store.count("queued") + running

    def upload_dir(self, kind: Literal["request", "job"]) -> Path:
        """A job's audio lives as long as the job; a request's upload as long as the request."""
        return self.job_audio_dir if kind == "job" else self.request_upload_dir

    async def admit(self, kind: Literal["request", "job"]) -> Callable[[], None]:
        """The one admission rule, before an upload's body is read: 503 while shutting down or when the job
        queue is full, 429 when every slot is taken. Returns the slot's release."""
        assert self.pipelines is not None
        if not self.accepting:
            raise ApiError(503, "server is shutting down", type="server_error", headers={"Retry-After": "5"})
        if kind == "job" and await self._store(self.store.count, "queued") >= self.settings.service.queue_size:
            raise ApiError(
                503, "job queue full", type="server_error", code="queue_full",
                headers={"Retry-After": str(self.pipelines.retry_after_s())},
            )
        try:
            self.pipelines.admit()
        except QueueFull as full:
            raise ApiError(
                429, str(full), type="rate_limit_error", code="queue_full",
                headers={"Retry-After": str(full.retry_after_s)},
            ) from None
        return self.pipelines.release

    async def transcribe(self, upload: Upload, params: Any) -> LiveRun:
        """Start ``upload`` through the pipeline (``params.task``: transcribe or translate); return once the
        probe stage (in a worker: the server never parses audio) has accepted it. The run goes on; the
        upload is closed (slot freed, files deleted) when it ends."""
        assert self.pipelines is not None
        try:
            stage = self.models.check(params)
            known = await self._known_speakers(params, upload.files, self.request_upload_dir)
            speech = service_speech_request(self.settings, upload.audio_path, params.speech_options())
            run = LiveRun(self.pipelines, service_policy(self.settings, stage), replace(speech, known_speakers=known))
        except BaseException:
            upload.close()
            raise
        run.task.add_done_callback(lambda _: upload.close())
        try:
            await run.wait_probed()
        except PipelineError as error:
            raise self.api_error(error, run) from None
        return run

    async def transcript_of(self, run: LiveRun) -> Transcript:
        try:
            return (await run.task).transcript
        except PipelineError as error:
            raise self.api_error(error, run) from None

    @staticmethod
    def api_error(error: PipelineError, run: LiveRun) -> ApiError:
        return pipeline_api_error(error, run.audio_path)

    async def _known_speakers(self, params: Any, files: list[Path], folder: Path) -> tuple[KnownSpeaker, ...]:
        """Voice samples to files (owned with ``files``), each measured by the probe stage."""
        assert self.pipelines is not None
        known = save_references(
            getattr(params, "known_speaker_names", []), getattr(params, "known_speaker_references", []), folder
        )
        files += [Path(speaker.audio_path) for speaker in known]
        await check_references(self.pipelines, known)
        return tuple(known)

    async def submit_job(self, upload: Upload, params: JobParams, caller: Caller) -> Job:
        """Validate a received job upload, then queue it; the job owns its files from then on."""
        assert self.job_loops is not None
        try:
            self.models.check(params)
            await self._check_webhook(params.webhook_url)
            known = await self._known_speakers(params, upload.files, self.job_audio_dir)
            options = JobOptions(
                **asdict(params.speech_options()),
                model=params.model,
                summarize=params.summarize,
                filename=upload.filename,
                known_speakers={speaker.name: speaker.audio_path for speaker in known},
            )
            job = await self._store(self.store.create, upload.audio_path, options, params.webhook_url, caller.owner)
        except BaseException:
            upload.close()
            raise
        upload.hand_over()
        self.job_loops.notify()
        log_event(logger, "job_queued", id=job.id, bytes=upload.size_bytes)
        return job

    async def _check_webhook(self, url: str | None) -> None:
        if url is None:
            return
        try:
            await check_url_async(url, self.settings.service.webhook_allow_hosts)
        except WebhookRefused as refused:
            raise ApiError(400, str(refused), param="webhook_url", code="webhook_refused") from None

    async def off_loop(self, call, *args):
        """``call`` (which may reach the job store) off the event loop; 503 with Retry-After while the store
        is unreachable."""
        return await self._store(call, *args)

    async def _store(self, call, *args):
        """A job-store call off the event loop; 503 with Retry-After while the store is unreachable."""
        try:
            return await asyncio.to_thread(call, *args)
        except Exception as exc:
            log_event(logger, "job_store_unreachable", logging.WARNING, error=exc)
            raise ApiError(
                503, "the job store is unreachable; try again shortly", type="server_error",
                code="store_unavailable", headers={"Retry-After": "5"},
            ) from None

    async def list_jobs(self, caller: Caller, limit: int, after: str | None) -> list[Job]:
        """The caller's newest jobs (every job for an admin), without their results; 400 when ``after`` names
        no job the caller sees (deleted or expired since: a page that ends there would end the list)."""
        if after is not None:
            owner = await self._store(self.store.owner_of, after)
            if owner is None or not caller.may_see(owner):
                raise ApiError(400, f"no job {after!r} to list after (deleted or expired); list from the start",
                               param="after", code="invalid_cursor")
        return await self._store(self.store.recent, limit, after, None if caller.admin else caller.owner)

    async def cancel_job(self, job_id: str, caller: Caller) -> Job:
        job = await self.get_job(job_id, caller)
        was = await self._store(self.store.cancel, job_id)
        if was == "queued":  # a running job's files and webhook are its job loop's when it stops
            delete_files(job_files(job))
            cancelled = await self._store(self.store.get, job_id)
            if cancelled is not None and self.outbox is not None:
                self.outbox.put_finished(cancelled)
        elif was == "running" and self.job_loops is not None:
            self.job_loops.stop_running(job_id)
        if was is not None:
            log_event(logger, "job_cancelled", id=job_id, was=was)
        return await self.get_job(job_id, caller)

    async def delete_job(self, job_id: str, caller: Caller) -> None:
        """Cancel the job if it has not finished, then forget it and its audio."""
        job = await self.cancel_job(job_id, caller)
        await self._store(self.store.delete, job_id)
        delete_files(job_files(job))
        log_event(logger, "job_deleted", id=job_id)

    async def rename_speakers(self, job_id: str, names: dict[str, str], caller: Caller) -> Job:
        """Rename speakers in the latest transcript and the summary, as the next revision; 400 for a label the
        transcript lacks, 409 when another edit came first."""
        job = await self.get_job(job_id, caller)
        if job.status != "succeeded" or job.transcript is None:
            raise ApiError(409, f"job {job_id} is {job.status}, it has no transcript", code="job_not_finished")
        transcript = Transcript.from_dict(job.transcript)
        unknown = sorted(set(names) - set(transcript.speakers))
        if unknown:
            raise ApiError(400, f"no speaker {', '.join(unknown)} in this transcript", code="unknown_speaker")
        rename_speakers(transcript, names)
        summary = rename_summary_speakers(Summary.from_dict(job.summary), names) if job.summary else None
        revision = await self._store(
            self.store.add_revision, job_id, job.revision, transcript.to_dict(), summary.to_dict() if summary else None
        )
        if revision is None:
            raise conflict(job, job.revision)
        log_event(logger, "job_speakers_renamed", id=job_id, count=len(names), revision=revision)
        return await self.get_job(job_id, caller)

    async def get_job(self, job_id: str, caller: Caller) -> Job:
        """The job, if ``caller`` may see it; another key's job is as absent as a missing one (404)."""
        job = await self._store(self.store.get, job_id)
        if job is None or not caller.may_see(job.api_key_id):
            raise ApiError(404, f"no job {job_id!r}", code="job_not_found")
        return job


def _remove_leftover_uploads(upload_dir: Path) -> None:
    """Sync uploads of a server that died mid-request: nobody is waiting for them any more."""
    for leftover in upload_dir.iterdir():
        if leftover.is_file():
            leftover.unlink(missing_ok=True)


def _remove_unowned_job_files(store: JobStore, job_audio_dir: Path) -> None:
    """Job uploads of a server that died before their job was stored: no job will ever delete them."""
    owned = {path.name for job in store.recent(store.count_all()) for path in job_files(job)}
    for leftover in job_audio_dir.iterdir():
        if leftover.is_file() and leftover.name not in owned:
            leftover.unlink(missing_ok=True)


def _resolved(settings: Settings) -> Settings:
    """``auto`` speech workers and threads from the calibration, as many workers as memory holds."""
    from isoscribe.budget import DEFAULT_PEAKS_MB, default_budget_mb
    from isoscribe.tuning import memory_cap_workers, resolve_service

    return resolve_service(settings, memory_cap_workers(default_budget_mb(), DEFAULT_PEAKS_MB["speech"]))


def _open_job_store(settings: Settings, data_dir: Path) -> JobStore:
    """Jobs live in Redis beside the Celery executor (any service instance can see them), else in SQLite."""
    if settings.service.executor == "celery":
        from isoscribe.service.job_store_redis import RedisJobStore

        return RedisJobStore.from_settings(settings)
    return JobStore(data_dir / "jobs.sqlite3")
