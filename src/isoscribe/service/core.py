"""The service behind the routers: uploads, model names, the stage runner, the job store and runner."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import Request

from isoscribe.config import Settings
from isoscribe.executors import PooledExecutor, StageExecutor
from isoscribe.logs import log_event
from isoscribe.models import available_models, cannot_translate
from isoscribe.service.errors import ApiError
from isoscribe.service.execution import QueueFull, StageRunner, add_model_pool, build_executor
from isoscribe.service.job_runner import JobRunner
from isoscribe.service.job_store import Job, JobOptions, JobStore
from isoscribe.service.metrics import ServiceMetrics
from isoscribe.pipeline import PipelineError, Policy
from isoscribe.service.transcription import pipeline_api_error, service_policy, service_speech_request
from isoscribe.service.known_speakers import check_references, save_references
from isoscribe.service.streaming import LiveRun
from isoscribe.service.uploads import UploadedForm, receive_multipart
from isoscribe.summary.renaming import rename_speakers, rename_summary_speakers
from isoscribe.transcript import SpeechRequest, Summary, Transcript

__all__ = ["Service", "MODEL_ALIAS"]

MODEL_ALIAS = "whisper-1"
"""OpenAI's model name; served by the configured default model."""

logger = logging.getLogger("isoscribe.service")

_STORE_PING_TIMEOUT_S = 2.0


class Service:
    def __init__(self, settings: Settings, executor: StageExecutor | None = None) -> None:
        self.settings = settings
        self._owns_executor = executor is None
        self.executor: StageExecutor | None = executor
        self.data_dir = Path(settings.service.data_dir)
        self.upload_dir = self.data_dir / "uploads"
        self.job_audio_dir = self.data_dir / "job-audio"
        self.store = _open_job_store(settings, self.data_dir)
        self.runner: StageRunner | None = None
        self.jobs: JobRunner | None = None
        self.metrics: ServiceMetrics | None = None
        self.ready = False
        self.accepting = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Future | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for folder in (self.upload_dir, self.job_audio_dir):
            folder.mkdir(parents=True, exist_ok=True)
        _remove_leftover_uploads(self.upload_dir)
        self.settings = await asyncio.to_thread(_resolved, self.settings)
        if self.executor is None:
            self.executor = await asyncio.to_thread(build_executor, self.settings)
        service = self.settings.service
        self.runner = StageRunner(
            self.executor, service.queue_size + service.asr_workers, service.asr_workers, service.asr_workers
        )
        self.metrics = ServiceMetrics(self.executor, self.runner, self.job_depth)
        self.jobs = JobRunner(self.store, self.runner, self.settings, self.speech_stage_for)
        self.jobs.start()
        self.ready = True
        log_event(logger, "service_ready", data_dir=self.data_dir, asr_workers=service.asr_workers)

    def begin_drain_threadsafe(self) -> None:
        """Start draining now (from a signal handler): no new work, running jobs get the drain time."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._begin_drain)

    def _begin_drain(self) -> None:
        self.ready = False
        self.accepting = False
        if self._drain is None and self.jobs is not None:
            self._drain = asyncio.ensure_future(self.jobs.drain(self.settings.service.drain_timeout_s))

    async def stop(self) -> None:
        """Drain: running jobs finish within the drain time or go back to the queue; workers stop."""
        self._begin_drain()
        if self._drain is not None:
            await self._drain
        if self.runner is not None:
            self.runner.shutdown()
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
        running = self.jobs.running if self.jobs else 0
        return self.store.count("queued") + running

    def model_ids(self) -> list[str]:
        installed = [m.name for m in available_models(self.settings.asr.model_cache_dir) if m.installed]
        default = self.settings.asr.model
        return [MODEL_ALIAS, *([default] if default not in installed else []), *installed]

    def speech_stage_for(self, model: str) -> str:
        """The executor stage serving ``model``: the configured one, or another installed model's own pool."""
        if model in (MODEL_ALIAS, self.settings.asr.model):
            return "speech"
        ids = self.model_ids()
        can_add = self._owns_executor and isinstance(self.executor, PooledExecutor)
        if model not in ids or not can_add:
            served = ids if can_add else [MODEL_ALIAS, self.settings.asr.model]
            raise ApiError(
                400,
                f"model {model!r} is not available; use one of: {', '.join(served)} (see GET /v1/models)",
                param="model",
                code="model_not_found",
            )
        return add_model_pool(self.executor, self.settings, model)

    async def receive_upload(self, request: Request, folder: Path) -> UploadedForm:
        if not self.accepting:
            raise ApiError(503, "server is shutting down", type="server_error", headers={"Retry-After": "5"})
        form = await receive_multipart(
            request.headers.get("content-type", ""),
            request.stream(),
            folder,
            "file",
            int(self.settings.service.max_upload_mb * 1_000_000),
        )
        if form.file_path is None:
            raise ApiError(400, "missing the 'file' part", param="file", code="missing_file")
        return form

    async def start_upload(self, request: Request, parse_options, task: str = "transcribe") -> tuple[LiveRun, Any]:
        """Admit and receive one upload, and start it through the pipeline (transcribe or translate);
        return once the probe stage (in a worker: the server never parses audio) has accepted it.
        The run goes on; its files are deleted and its queue slot freed when it ends."""
        self._admit()
        files: list[Path] = []
        try:
            form = await self.receive_upload(request, self.upload_dir)
            files.append(form.file_path)
            params, speech, policy = self._speech_run(form, parse_options, task)
            known = save_references(
                getattr(params, "known_speaker_names", []), getattr(params, "known_speaker_references", []),
                self.upload_dir,
            )
            files += [Path(speaker.audio_path) for speaker in known]
            await check_references(self.runner, known)
            run = LiveRun(self.runner, policy, replace(speech, known_speakers=tuple(known)))
        except BaseException:
            self._done_with(files)
            raise
        run.task.add_done_callback(lambda _: self._done_with(files))
        try:
            await run.wait_probed()
        except PipelineError as error:
            raise self.api_error(error, run) from None
        return run, params

    async def transcript_of(self, run: LiveRun) -> Transcript:
        try:
            return (await run.task).transcript
        except PipelineError as error:
            raise self.api_error(error, run) from None

    @staticmethod
    def api_error(error: PipelineError, run: LiveRun) -> ApiError:
        return pipeline_api_error(error, run.audio_path)

    def _admit(self) -> None:
        assert self.runner is not None
        try:
            self.runner.admit()
        except QueueFull as full:
            raise ApiError(
                429,
                str(full),
                type="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": str(full.retry_after_s)},
            ) from None

    def _speech_run(self, form: UploadedForm, parse_options, task: str) -> tuple[Any, SpeechRequest, Policy]:
        params = parse_options(form)
        stage = self.speech_stage_for(params.model)
        if task == "translate":
            self._check_translates(params.model)
        assert form.file_path is not None
        speech = service_speech_request(self.settings, form.file_path, params.speech_options())
        return params, speech, service_policy(self.settings, stage)

    def _check_translates(self, model: str) -> None:
        name = self.settings.asr.model if model == MODEL_ALIAS else model
        refusal = cannot_translate(name, self.settings.asr.model_cache_dir)
        if refusal is not None:
            raise ApiError(400, refusal, param="model", code="model_cannot_translate")

    def _done_with(self, files: list[Path]) -> None:
        """The admitted request is over: free its slot and delete its upload and voice samples."""
        assert self.runner is not None
        self.runner.release()
        _delete(files)

    async def submit_job(self, request: Request, parse_options) -> Job:
        """Receive and validate a job's upload, then queue it; 503 with Retry-After when the queue is full."""
        assert self.jobs is not None and self.runner is not None
        if await self._store(self.store.count, "queued") >= self.settings.service.queue_size:
            raise ApiError(
                503,
                "job queue full",
                type="server_error",
                code="queue_full",
                headers={"Retry-After": str(self.runner.retry_after_s())},
            )
        form = await self.receive_upload(request, self.job_audio_dir)
        assert form.file_path is not None
        files = [form.file_path]
        try:
            params = parse_options(form)
            self.speech_stage_for(params.model)
            known = save_references(params.known_speaker_names, params.known_speaker_references, self.job_audio_dir)
            files += [Path(speaker.audio_path) for speaker in known]
            await check_references(self.runner, known)
        except BaseException:
            _delete(files)
            raise
        options = JobOptions(
            model=params.model,
            language=params.language,
            prompt=params.prompt,
            temperature=params.temperature or None,
            diarize=params.diarized,
            num_speakers=params.num_speakers,
            summarize=params.summarize,
            filename=form.filename,
            known_speakers={speaker.name: speaker.audio_path for speaker in known},
        )
        try:
            job = await self._store(self.store.create, form.file_path, options, params.webhook_url)
        except BaseException:
            _delete(files)
            raise
        self.jobs.notify()
        log_event(logger, "job_queued", id=job.id, bytes=form.file_bytes)
        return job

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

    def cancel_job(self, job_id: str) -> Job:
        job = self.get_job(job_id)
        if self.store.cancel(job_id):
            if job.status == "queued":  # a running job's files are removed by its runner when it stops
                _delete(_job_files(job))
            elif self.jobs is not None:
                self.jobs.stop_running(job_id)
            log_event(logger, "job_cancelled", id=job_id, was=job.status)
        return self.get_job(job_id)

    def delete_job(self, job_id: str) -> None:
        """Cancel the job if it has not finished, then forget it and its audio."""
        job = self.cancel_job(job_id)
        self.store.delete(job_id)
        _delete(_job_files(job))
        log_event(logger, "job_deleted", id=job_id)

    def rename_speakers(self, job_id: str, names: dict[str, str]) -> Job:
        """Rename speakers in the stored transcript and summary; 400 for a label the transcript lacks."""
        job = self.get_job(job_id)
        if job.status != "succeeded" or job.transcript is None:
            raise ApiError(409, f"job {job_id} is {job.status}, it has no transcript", code="job_not_finished")
        transcript = Transcript.from_dict(job.transcript)
        unknown = sorted(set(names) - set(transcript.speakers))
        if unknown:
            raise ApiError(400, f"no speaker {', '.join(unknown)} in this transcript", code="unknown_speaker")
        rename_speakers(transcript, names)
        summary = rename_summary_speakers(Summary.from_dict(job.summary), names) if job.summary else None
        self.store.replace_result(job_id, transcript.to_dict(), summary.to_dict() if summary else None)
        log_event(logger, "job_speakers_renamed", id=job_id, count=len(names))
        return self.get_job(job_id)

    def get_job(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r}", code="job_not_found")
        return job


def _job_files(job: Job) -> list[Path]:
    return [Path(job.audio_path), *(Path(path) for path in job.options.known_speakers.values())]


def _delete(files: list[Path]) -> None:
    for path in files:
        path.unlink(missing_ok=True)


def _remove_leftover_uploads(upload_dir: Path) -> None:
    """Sync uploads of a server that died mid-request: nobody is waiting for them any more."""
    for leftover in upload_dir.iterdir():
        if leftover.is_file():
            leftover.unlink(missing_ok=True)


def _resolved(settings: Settings) -> Settings:
    """``auto`` speech workers and threads from the calibration, as many workers as memory holds."""
    from isoscribe.budget import DEFAULT_PEAKS_MB, default_budget_mb
    from isoscribe.tuning import memory_cap_workers, resolve_service

    return resolve_service(settings, memory_cap_workers(default_budget_mb(), DEFAULT_PEAKS_MB["speech"]))


def _open_job_store(settings: Settings, data_dir: Path) -> JobStore:
    """Jobs live in Redis beside the Celery executor (any service instance can see them), else in SQLite."""
    if settings.service.executor == "celery":
        from isoscribe.distributed import RedisJobStore

        return RedisJobStore.from_settings(settings)
    return JobStore(data_dir / "jobs.sqlite3")
