"""Scale-out: the speech and summary stages as Celery tasks on a Redis broker.

Clients (the batch, the service) submit through ``CeleryExecutor``, a StageExecutor like the local
ones. ``isoscribe worker`` runs the tasks, each inside the same isolation runtime as on one machine
(one recycled WorkerPool per stage in every Celery pool process), so a crashing model still only
kills its isolated worker. Audio and big results move through ``settings.celery.shared_dir``; Redis
carries small JSON only.

Delivery, as tested in tests/test_distributed.py:
- Tasks are acknowledged late. When a Celery pool process dies, ``task_reject_on_worker_lost``
  puts its task back at once. When a whole worker dies (kill -9, lost machine) its heartbeat key
  in Redis expires; the client sees a running task whose worker has no heartbeat and publishes it
  again (within ``heartbeat_timeout_s`` plus a beat), dropping the dead worker's unacknowledged copy.
  ``visibility_timeout_s`` stays the backstop and stays above the longest task.
- A task may therefore run twice. It is idempotent: a redelivered task whose result is already
  stored returns that result, and the client resolves each Future once.
- After a Redis restart (a new ``run_id``) the client publishes again, under the same task ids, only
  the unfinished tasks Redis lost: with persistence (``appendonly yes``) their messages and states
  survive and nothing is published twice. Its holds on staged audio are set to what it uses, so
  they reach 0 and the files go whether the old holds survived or not.
- A cancel stops the stage on the worker: the client sets a cancel key the running task watches
  (Celery's ``revoke(terminate=True)`` would signal a pool process that may already run another task).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import logging
import os
import shutil
import sys
import threading
import time
import traceback
import types
import typing
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from celery import signals as celery_signals
from celery.exceptions import BackendGetMetaError, BackendStoreError
from celery.exceptions import OperationalError as CeleryOperationalError
from kombu.exceptions import OperationalError as KombuOperationalError
from redis import Redis
from redis.exceptions import RedisError

from isoscribe.config import LlmSettings, Settings, load_settings
from isoscribe.files import write_atomic
from isoscribe.isolation import (
    IsolationError,
    Limits,
    StageError,
    StageSpec,
    StageTimeout,
    TaskCancelled,
    TaskResult,
    TaskStats,
    WorkerCrashed,
)
from isoscribe.logs import log_event

__all__ = [
    "STAGE_TASKS",
    "STAGE_QUEUES",
    "CeleryExecutor",
    "CompletedTask",
    "RedisJobStore",
    "create_app",
    "worker_command",
    "stage_audio",
    "staged_name",
    "encode_value",
    "decode_value",
    "encode_error",
    "decode_error",
]

logger = logging.getLogger("isoscribe.distributed")

STAGE_TASKS = {"probe": "isoscribe.probe", "speech": "isoscribe.speech", "summary": "isoscribe.summary"}
STAGE_QUEUES = {"probe": "asr", "speech": "asr", "summary": "llm"}
_STAGE_OF_TASK = {task: stage for stage, task in STAGE_TASKS.items()}

_TIME_LIMIT_GRACE_S = 120.0
"""Celery's hard time limit is a backstop behind the isolation runtime's own stage timeout."""
_SPILL_BYTES = 256 * 1024
"""Results larger than this go to a file in shared_dir; Redis gets the file's name."""
_RETRY_POLICY = {"max_retries": 120, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0}
"""Publishing waits up to about four minutes for Redis to come back."""
_READY_STATES = ("SUCCESS", "FAILURE", "REVOKED")
REDIS_TIMEOUTS = {"socket_connect_timeout": 5.0, "socket_timeout": 10.0, "health_check_interval": 15}
"""A Redis that is down or unreachable fails a call within seconds instead of blocking it for good."""
_RUNNING_STATES = ("STARTED", "PROGRESS")
_HEARTBEAT_KEY = "isoscribe:worker-heartbeat:"
"""+ Celery node name; set by each worker with a TTL of ``heartbeat_timeout_s``, in the broker's Redis."""
_STAGED_KEY = "isoscribe:staged:"
"""+ staged audio name: a hash of client id -> tasks of that client using the file, in the broker's Redis."""
_STAGED_HOLD_TTL_S = 24 * 3600
"""A crashed client's holds expire after this; its staged files then go with the next client's release."""
_CANCEL_KEY = "isoscribe:cancel:"
"""+ task id; set by a client that cancels the task, watched by the worker running it, in the broker's Redis."""
_CANCEL_TTL_S = 24 * 3600
_CANCEL_POLL_S = 1.0
"""How often a running task looks for its cancel key."""
_LOST_TASK_RETRIES = 2
"""Times a task is published again after Celery lost it (its pool process died, its hard time limit)."""
_REDIS_ERRORS = (RedisError, KombuOperationalError, CeleryOperationalError, ConnectionError, OSError)
_BACKEND_ERRORS = (*_REDIS_ERRORS, BackendStoreError, BackendGetMetaError)
"""What Celery's result backend raises once its own retries are spent."""


# --- Celery app -----------------------------------------------------------------------------------


def create_app(settings: Settings) -> Celery:
    """A Celery app for ``settings.celery`` with the isoscribe tasks and delivery rules."""
    cel, iso = settings.celery, settings.isolation
    app = Celery("isoscribe", set_as_current=False)
    app.conf.update(
        broker_url=cel.broker_url,
        result_backend=cel.result_backend,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_routes={STAGE_TASKS[stage]: {"queue": queue} for stage, queue in STAGE_QUEUES.items()},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A task running when Redis goes away finishes and stores its result once Redis is back;
        # its redelivered copy then returns that result instead of running the stage again.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_max_tasks_per_child=iso.max_tasks_per_worker,
        worker_max_memory_per_child=int(iso.max_rss_mb * 1024) if iso.max_rss_mb else None,
        broker_transport_options=_transport_options(settings),
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        result_backend_always_retry=True,
        result_backend_max_retries=120,
        result_backend_max_sleep_between_retries_ms=2000,
        result_expires=24 * 3600,
        worker_hijack_root_logger=False,
    )
    for stage, task_name in STAGE_TASKS.items():
        time_limit = time_limit_s(settings, stage)
        app.task(name=task_name, bind=True, shared=False, time_limit=time_limit)(_TASK_FUNCTIONS[stage])
    return app


def time_limit_s(settings: Settings, stage: str) -> float:
    """Celery's hard time limit of ``stage``'s task."""
    iso = settings.isolation
    limits = {"probe": iso.probe_timeout_s, "speech": iso.asr_timeout_s, "summary": iso.llm_timeout_s}
    return limits[stage] + _TIME_LIMIT_GRACE_S


def visibility_timeout_s(settings: Settings) -> float:
    """How long Redis waits before it gives an unacknowledged task to another worker."""
    if settings.celery.visibility_timeout_s is not None:
        return settings.celery.visibility_timeout_s
    iso = settings.isolation
    return max(iso.asr_timeout_s, iso.llm_timeout_s) + _TIME_LIMIT_GRACE_S + 300.0


def _transport_options(settings: Settings) -> dict[str, Any]:
    timeout_s = visibility_timeout_s(settings)
    return {
        "visibility_timeout": timeout_s,
        # Kombu looks for overdue unacknowledged tasks every interval x throttle seconds
        # (100 s by default); look every few seconds, at most every 10 s.
        "unacked_restore_interval": max(1, min(10, int(timeout_s // 4))),
        "unacked_restore_throttle": 1,
    }


# --- worker side ----------------------------------------------------------------------------------

_worker_settings: Settings | None = None
_pools: dict[str, tuple[str, Any]] = {}
"""stage -> (fingerprint of the settings it was built with, WorkerPool), per Celery pool process."""
_pools_lock = threading.Lock()


def worker_command(settings: Settings, args: argparse.Namespace) -> int:
    """``isoscribe worker``: a Celery worker consuming the given stage queues."""
    global _worker_settings
    queues = [name.strip() for name in str(args.queues).split(",") if name.strip()]
    unknown = sorted(set(queues) - set(STAGE_QUEUES.values()))
    if not queues or unknown:
        print(f"isoscribe worker: unknown queues {unknown}; choose from asr, llm", file=sys.stderr)
        return 2
    _worker_settings = settings
    app = create_app(settings)
    hostname = f"isoscribe-{os.getpid()}@%h"
    log_event(
        logger, "celery_worker_start", queues=",".join(queues), concurrency=args.concurrency,
        broker=_redact(settings.celery.broker_url), shared_dir=settings.celery.shared_dir,
        visibility_timeout_s=visibility_timeout_s(settings),
    )
    # worker_init comes in the main process with the node name that tasks see as request.hostname.
    celery_signals.worker_init.connect(lambda sender, **_: _start_heartbeat(settings, sender.hostname), weak=False)
    app.worker_main([
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={args.concurrency}",
        f"--hostname={hostname}",
        "--pool=prefork",
        f"--loglevel={settings.log_level.upper()}",
        # Gossip and mingle broadcast over Redis pub/sub and only matter for clusters of dozens.
        "--without-gossip",
        "--without-mingle",
    ])
    return 0


def _start_heartbeat(settings: Settings, hostname: str) -> None:
    """Keep ``_HEARTBEAT_KEY + hostname`` alive from the worker's main process while it lives.

    The thread lives in the Celery main process, which runs no stage: a busy task does not delay it,
    and it stops only when the worker (or its machine) does.
    """
    timeout_s = settings.celery.heartbeat_timeout_s
    redis = Redis.from_url(settings.celery.broker_url, **REDIS_TIMEOUTS)

    def beat() -> None:
        failing = False
        while True:
            try:
                redis.set(_HEARTBEAT_KEY + hostname, repr(time.time()), px=int(timeout_s * 1000))
                failing = False
            except RedisError as exc:
                if not failing:
                    log_event(logger, "worker_heartbeat_failed", logging.WARNING, worker=hostname, error=exc)
                failing = True
            time.sleep(timeout_s / 4)

    threading.Thread(target=beat, name="isoscribe-heartbeat", daemon=True).start()


def _probe_task(self: Any, envelope: dict[str, Any]) -> dict[str, Any]:
    return _run_task(self, "probe", envelope)


def _speech_task(self: Any, envelope: dict[str, Any]) -> dict[str, Any]:
    return _run_task(self, "speech", envelope)


def _summary_task(self: Any, envelope: dict[str, Any]) -> dict[str, Any]:
    return _run_task(self, "summary", envelope)


_TASK_FUNCTIONS = {"probe": _probe_task, "speech": _speech_task, "summary": _summary_task}


def _run_task(task: Any, stage: str, envelope: dict[str, Any]) -> dict[str, Any]:
    task_id, hostname = task.request.id, task.request.hostname
    stored = _best_effort(task.backend.get_task_meta, task_id) or {}
    if stored.get("status") == "SUCCESS":
        # A redelivered task that already finished (its worker died before the ack).
        log_event(logger, "celery_task_duplicate", task_id=task_id, stage=stage, worker=hostname)
        return stored["result"]
    _best_effort(task.update_state, state="STARTED", meta={"worker": hostname, "pid": os.getpid()})
    settings = _effective_settings(envelope["settings"])
    shared_dir = settings.celery.shared_dir
    request = _localize_request(decode_value(envelope["request"]), shared_dir)
    log_event(logger, "celery_task_start", task_id=task_id, stage=stage, worker=hostname)
    try:
        pool = _pool(stage, settings)
        cancel_key = _CancelKey(settings.celery.broker_url, task_id)
        if cancel_key.is_set():
            raise TaskCancelled(stage, detail="cancelled by its client before it started")
        future = pool.submit(request, _progress_reporter(task, task_id, hostname))
        result = _result_unless_cancelled(pool, future, cancel_key, stage)
    except TaskCancelled as exc:
        log_event(logger, "celery_task_cancelled", task_id=task_id, stage=stage, worker=hostname)
        return {"error": encode_error(exc), "worker": hostname}
    except IsolationError as exc:
        log_event(logger, "celery_task_failed", logging.WARNING, task_id=task_id, stage=stage, error=exc)
        return {"error": encode_error(exc), "worker": hostname}
    payload = {"value": encode_value(result.value), "stats": dataclasses.asdict(result.stats), "worker": hostname}
    log_event(logger, "celery_task_done", task_id=task_id, stage=stage, wall_s=result.stats.wall_s)
    return _spill_if_big(payload, task_id, shared_dir)


def _progress_reporter(task: Any, task_id: str, hostname: str) -> Any:
    """Progress events of the stage become the task's PROGRESS state, which the client reads while it polls.

    Events arrive on the pool's manager thread, where Celery's task context is not set: name the task.
    """
    from isoscribe.pipeline.events import Progress

    def report(event: Any) -> None:
        if isinstance(event, Progress):
            meta = {"worker": hostname, "pid": os.getpid(), "event": encode_value(event)}
            _best_effort(task.update_state, task_id=task_id, state="PROGRESS", meta=meta)

    return report


def _best_effort(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Bookkeeping calls to the result backend; while Redis is away the task runs without them."""
    try:
        return call(*args, **kwargs)
    except _BACKEND_ERRORS as exc:
        log_event(logger, "result_backend_unreachable", logging.WARNING, error=exc)
        return None


class _CancelKey:
    """The key a client sets to cancel a task; read from the pool process running the task."""

    _clients: dict[str, Redis] = {}

    def __init__(self, broker_url: str, task_id: str) -> None:
        if broker_url not in self._clients:
            self._clients[broker_url] = Redis.from_url(broker_url, **REDIS_TIMEOUTS)
        self._redis = self._clients[broker_url]
        self._key = _CANCEL_KEY + task_id

    def is_set(self) -> bool:
        """False while Redis is away: the task goes on, as with its other bookkeeping."""
        try:
            return bool(self._redis.exists(self._key))
        except _REDIS_ERRORS:
            return False


def _result_unless_cancelled(pool: Any, future: Future, cancel_key: _CancelKey, stage: str) -> TaskResult:
    """The stage's result; once the client sets the cancel key, the pool kills the stage's worker."""
    while True:
        try:
            return future.result(timeout=_CANCEL_POLL_S)
        except TimeoutError:
            if cancel_key.is_set():
                pool.cancel(future)
        except CancelledError:
            raise TaskCancelled(stage, detail="cancelled by its client before its isolated worker took it") from None


def _effective_settings(client_sections: dict[str, Any]) -> Settings:
    """The worker's settings with the client's result-changing sections (asr, diarization, llm).

    The client decides what is computed, as with the local executor; the worker keeps what is about
    this machine: isolation policy, secrets, model cache directory, Celery connection.
    """
    base = _worker_settings or load_settings()
    asr = base.asr.model_validate({**client_sections["asr"], "model_cache_dir": base.asr.model_cache_dir})
    llm = LlmSettings.model_validate({**client_sections["llm"], "api_key": base.llm.api_key})
    diarization = base.diarization.model_validate(client_sections["diarization"])
    return base.model_copy(update={"asr": asr, "llm": llm, "diarization": diarization})


def _client_sections(settings: Settings) -> dict[str, Any]:
    return settings.model_dump(
        mode="json",
        include={"asr", "diarization", "llm"},
        exclude={"asr": {"model_cache_dir"}, "llm": {"api_key"}},
    )


def _pool(stage: str, settings: Settings) -> Any:
    """This pool process's WorkerPool for ``stage``, rebuilt when the client's settings change."""
    from isoscribe.isolation import WorkerPool

    fingerprint = hashlib.sha256(settings.model_dump_json().encode()).hexdigest()
    with _pools_lock:
        current = _pools.get(stage)
        if current is not None and current[0] == fingerprint:
            return current[1]
        if current is not None:
            current[1].shutdown()
        spec, limits = _stage(stage, settings)
        iso = settings.isolation
        pool = WorkerPool(
            spec,
            size=1,
            max_tasks_per_worker=iso.max_tasks_per_worker,
            max_rss_mb=iso.max_rss_mb,
            idle_ttl_s=iso.idle_ttl_s,
            prespawn=False,
            limits=limits,
            start_method=iso.start_method,
        )
        _pools[stage] = (fingerprint, pool)
        return pool


def _stage(stage: str, settings: Settings) -> tuple[StageSpec, Limits]:
    """The same stage modules and limits as a local run (``isolation.speech_stage`` …)."""
    from isoscribe.pipeline.stages import stage_specs

    return stage_specs(settings)[stage]


@celery_signals.worker_process_shutdown.connect
def _shutdown_pools(**_: Any) -> None:
    with _pools_lock:
        for _, pool in _pools.values():
            pool.shutdown()
        _pools.clear()


def _localize_request(request: Any, shared_dir: Path | None) -> Any:
    paths = _request_files(request)
    relative = [path for path in paths if not Path(path).is_absolute()]
    if not relative:
        return request
    if shared_dir is None:
        raise ValueError(f"request names {relative[0]} in shared storage but this worker has no celery.shared_dir")
    return _with_request_files(request, [str(Path(shared_dir) / path) for path in paths])


def _request_files(request: Any) -> list[str]:
    """The files a request reads: its audio (if any), then its known speakers' voice samples."""
    audio_path = getattr(request, "audio_path", None)
    samples = [speaker.audio_path for speaker in getattr(request, "known_speakers", ())]
    return ([audio_path] if audio_path is not None else []) + samples


def _with_request_files(request: Any, paths: list[str]) -> Any:
    """``request`` reading ``paths`` instead, in ``_request_files``'s order."""
    if not paths:
        return request
    remaining = iter(paths)
    changes: dict[str, Any] = {}
    if getattr(request, "audio_path", None) is not None:
        changes["audio_path"] = next(remaining)
    known = getattr(request, "known_speakers", ())
    if known:
        changes["known_speakers"] = tuple(dataclasses.replace(speaker, audio_path=next(remaining)) for speaker in known)
    return dataclasses.replace(request, **changes)


def _spill_if_big(payload: dict[str, Any], task_id: str, shared_dir: Path | None) -> dict[str, Any]:
    text = json.dumps(payload)
    if len(text) <= _SPILL_BYTES or shared_dir is None:
        return payload
    name = f"results/{task_id}.json"
    write_atomic(Path(shared_dir) / name, text)
    return {"result_file": name, "worker": payload["worker"]}


# --- what crosses Redis ---------------------------------------------------------------------------


def encode_value(value: Any) -> dict[str, Any]:
    """JSON for a request or result: plain JSON values, or an isoscribe dataclass by type name."""
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return {"json": value}
    cls = type(value)
    if dataclasses.is_dataclass(value) and cls.__module__.startswith("isoscribe."):
        data = value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
        return {"type": f"{cls.__module__}:{cls.__qualname__}", "data": data}
    raise TypeError(f"cannot send {cls.__name__} through Celery: not JSON and not an isoscribe dataclass")


def decode_value(encoded: dict[str, Any]) -> Any:
    if "json" in encoded:
        return encoded["json"]
    module_name, _, qualname = encoded["type"].partition(":")
    if not module_name.startswith("isoscribe."):
        raise ValueError(f"refusing to build {encoded['type']}: only isoscribe types cross Celery")
    cls = getattr(importlib.import_module(module_name), qualname)
    if hasattr(cls, "from_dict"):
        return cls.from_dict(encoded["data"])
    return _build(cls, encoded["data"])


def _build(cls: type, data: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {field.name for field in dataclasses.fields(cls)}
    return cls(**{name: _coerce(hints[name], value) for name, value in data.items() if name in known})


def _coerce(hint: Any, value: Any) -> Any:
    """JSON gives lists where the dataclass wants tuples or nested dataclasses; put them back."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in args if arg is not type(None)]
        return _coerce(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _build(hint, value)
    if origin is tuple and isinstance(value, list):
        item = args[0] if args else Any
        return tuple(_coerce(item, v) for v in value)
    if origin is list and isinstance(value, list) and args:
        return [_coerce(args[0], v) for v in value]
    return value


def _error_types() -> dict[str, type[IsolationError]]:
    from isoscribe import isolation

    found = {name: value for name, value in vars(isolation).items() if isinstance(value, type)}
    return {name: cls for name, cls in found.items() if issubclass(cls, IsolationError)}


def encode_error(error: IsolationError) -> dict[str, Any]:
    fields = {field.name: getattr(error, field.name) for field in dataclasses.fields(error)}
    return {"type": type(error).__name__, "fields": fields}


def decode_error(encoded: dict[str, Any]) -> IsolationError:
    cls = _error_types().get(encoded["type"], StageError)
    return cls(**encoded["fields"])


def stage_audio(path: Path, shared_dir: Path) -> str:
    """Copy ``path`` into shared storage under its content hash; returns the name relative to ``shared_dir``."""
    name = staged_name(path)
    _copy_staged(Path(path), shared_dir, name)
    return name


def staged_name(path: Path) -> str:
    """``audio/<sha256 of the content><suffix>``: the name ``path`` has in shared storage."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as audio:
        while chunk := audio.read(1 << 20):
            digest.update(chunk)
    return f"audio/{digest.hexdigest()}{path.suffix.lower()}"


def _copy_staged(path: Path, shared_dir: Path, name: str) -> None:
    target = Path(shared_dir) / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        shutil.copyfile(path, partial)
        os.replace(partial, target)


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if "@" in rest else url


# --- client side ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompletedTask:
    task_id: str
    stage: str
    worker: str
    """Celery node name (``isoscribe-PID@host``) that produced the result."""
    ok: bool


@dataclass
class _Pending:
    task_id: str
    stage: str
    envelope: dict[str, Any]
    future: Future
    original_audio: str | None
    """The caller's audio_path; results' ``source`` gets it back."""
    sent_audio: str | None
    staged: tuple[str, ...]
    """Names in shared storage this task holds (its audio, then its voice samples)."""
    on_event: Callable[[Any], None] | None = None
    last_event: Any = None
    lost_workers: set[str] = field(default_factory=set)
    """Workers that died running this task; it was published again for each."""
    celery_losses: int = 0
    """Times Celery reported the task lost (WorkerLostError, TimeLimitExceeded); it was published again for each."""


class CeleryExecutor:
    """StageExecutor over Celery: ``submit(stage, request)`` publishes a task and returns a Future.

    One waiter thread polls the result backend for every unfinished task and watches Redis's
    ``run_id``; after a restart it publishes again the unfinished tasks Redis lost. Isolation errors
    raised on a worker are raised here with the same types and fields.
    """

    completed_kept = 1000
    """How many of the latest ``completed`` tasks are kept (a service runs for months)."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self.settings = settings
        self.app = app or create_app(settings)
        # The client polls result keys itself; Celery's per-task pub/sub subscription would only
        # pile unread result messages up on this connection.
        self.app.backend.on_task_call = lambda producer, task_id: None
        self.shared_dir = settings.celery.shared_dir
        self.completed: deque[CompletedTask] = deque(maxlen=self.completed_kept)
        self.republished = 0
        self.redispatched = 0
        """Tasks published again because the worker running them stopped beating."""
        self._sections = _client_sections(settings)
        self._pending: dict[str, _Pending] = {}
        self._abandoned: dict[str, float] = {}
        """Cancelled task -> until when to look for its late result, whose spilled file must go."""
        self._holds: Counter[str] = Counter()
        """Staged name -> this client's unfinished tasks using it; Redis gets these counts."""
        self._client_id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._beat_s = settings.celery.heartbeat_timeout_s / 4
        self._next_heartbeat_check = 0.0
        self._missing_since: dict[str, float] = {}
        """Worker -> when its heartbeat was first seen missing."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._unreachable = False
        self._broker = Redis.from_url(settings.celery.broker_url, **REDIS_TIMEOUTS)
        self._set_hold = self._broker.register_script(_SET_HOLD)
        self._drop_unacked = self._broker.register_script(_DROP_UNACKED)
        self._find_messages = self._broker.register_script(_FIND_MESSAGES)
        self._server_ids: tuple[str, str] | None = None
        self._declare_queues()
        self._waiter = threading.Thread(target=self._wait_loop, name="celery-waiter", daemon=True)
        self._waiter.start()

    def submit(self, stage: str, request: Any, on_event: Callable[[Any], None] | None = None) -> Future[TaskResult]:
        if stage not in STAGE_TASKS:
            raise ValueError(f"unknown stage {stage!r}; Celery runs {sorted(STAGE_TASKS)}")
        if self._stopped.is_set():
            raise RuntimeError("CeleryExecutor is shut down")
        original, staged, request = self._stage_request(request)
        sent = getattr(request, "audio_path", None)
        future: Future[TaskResult] = Future()
        future.set_running_or_notify_cancel()
        pending = _Pending(
            task_id=f"isoscribe-{stage}-{uuid.uuid4().hex}",
            stage=stage,
            envelope={"request": encode_value(request), "settings": self._sections},
            future=future,
            original_audio=original,
            sent_audio=sent,
            staged=staged,
            on_event=on_event,
        )
        with self._lock:
            self._pending[pending.task_id] = pending
        try:
            self._publish(pending)
        except Exception as exc:
            self._finish(pending.task_id, exc, worker="")
        self._wake.set()
        return future

    def cancel(self, future: Future) -> bool:
        """Cancel the task: a worker that has not started it drops it; one running it stops its stage."""
        with self._lock:
            pending = next((p for p in self._pending.values() if p.future is future), None)
        if pending is None:
            return False
        try:
            self._cancel_remote([pending.task_id])
        except _REDIS_ERRORS as exc:
            log_event(logger, "celery_revoke_failed", logging.WARNING, tasks=1, error=exc)
            return False
        with self._lock:
            self._abandoned[pending.task_id] = time.monotonic() + visibility_timeout_s(self.settings)
        self._finish(pending.task_id, TaskCancelled(pending.stage, detail="cancelled; its Celery task was revoked"), worker="")
        return True

    def shutdown(self) -> None:
        """Stop waiting; tasks not finished are cancelled on the workers and their Futures fail with TaskCancelled."""
        self._stopped.set()
        self._wake.set()
        self._waiter.join(timeout=10)
        with self._lock:
            unfinished = list(self._pending.values())
        if unfinished:
            try:
                self._cancel_remote([pending.task_id for pending in unfinished])
            except _REDIS_ERRORS as exc:
                log_event(logger, "celery_revoke_failed", logging.WARNING, tasks=len(unfinished), error=exc)
        for pending in unfinished:
            error = TaskCancelled(pending.stage, detail="the Celery executor shut down before the task finished")
            self._finish(pending.task_id, error, worker="")
        self._broker.close()

    def __enter__(self) -> CeleryExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _cancel_remote(self, task_ids: list[str]) -> None:
        """Set each task's cancel key, which a worker running it watches, then revoke the queued copies."""
        pipe = self._broker.pipeline()
        for task_id in task_ids:
            pipe.set(_CANCEL_KEY + task_id, "1", ex=_CANCEL_TTL_S)
        pipe.execute()
        self.app.control.revoke(task_ids)

    def _stage_request(self, request: Any) -> tuple[str | None, tuple[str, ...], Any]:
        """(the caller's audio_path, the staged names this task holds, the request naming them).

        The audio and the known speakers' voice samples go to shared storage; without one, every
        machine must see them at the same absolute path."""
        audio_path = getattr(request, "audio_path", None)
        paths = _request_files(request)
        if self.shared_dir is None:
            return audio_path, (), _with_request_files(request, [str(Path(path).resolve()) for path in paths])
        names = [staged_name(Path(path)) for path in paths]
        # Hold before copying: a client releasing the same content now either deletes the file
        # before our copy (which then recreates it) or sees our hold and keeps it.
        try:
            self._hold_staged(names)
            for path, name in zip(paths, names):
                _copy_staged(Path(path), self.shared_dir, name)
        except BaseException:
            self._release_staged(names)
            raise
        return audio_path, tuple(names), _with_request_files(request, names)

    def _staged_lock(self, name: str) -> Any:
        return self._broker.lock(f"{_STAGED_KEY}lock:{name}", timeout=60, blocking_timeout=120)

    def _hold_staged(self, names: list[str]) -> None:
        """Count this client's tasks using each staged file in Redis, where every client sees them."""
        with self._lock:
            self._holds.update(names)
        for name in dict.fromkeys(names):
            _with_redis_retry(lambda: self._sync_hold(name))

    def _release_staged(self, names: tuple[str, ...] | list[str]) -> None:
        """Drop this client's holds; a file goes when no client holds it. If Redis is away the file stays."""
        with self._lock:
            self._holds.subtract(names)
            self._holds = +self._holds
        for name in dict.fromkeys(names):
            try:
                self._sync_hold(name)
            except _REDIS_ERRORS as exc:
                log_event(logger, "staged_audio_kept", logging.WARNING, name=name, error=exc)

    def _sync_hold(self, name: str) -> None:
        """Set this client's hold on ``name`` in Redis to its count here; delete the file once no client holds it.

        Setting the count, rather than adding to it, keeps it right whether or not Redis kept the
        old holds across a restart.
        """
        with self._staged_lock(name):
            with self._lock:
                count = self._holds.get(name, 0)
            if self._set_hold(keys=[_STAGED_KEY + name], args=[self._client_id, count, _STAGED_HOLD_TTL_S]) == 0:
                (Path(self.shared_dir) / name).unlink(missing_ok=True)

    def _publish(self, pending: _Pending) -> None:
        """Publish once on a fresh connection, and again on a fresh one while Redis is away.

        Not kombu's own publish retry: after an outage it can go on with a channel it has closed
        (AttributeError on the channel's connection), which failed jobs that should have waited.
        """

        def publish_once() -> None:
            with self.app.connection_for_write() as connection:
                self.app.send_task(
                    STAGE_TASKS[pending.stage],
                    kwargs={"envelope": pending.envelope},
                    task_id=pending.task_id,
                    queue=STAGE_QUEUES[pending.stage],
                    connection=connection,
                    retry=False,
                )

        _with_redis_retry(publish_once)
        log_event(logger, "celery_task_sent", task_id=pending.task_id, stage=pending.stage)

    def _declare_queues(self) -> None:
        """Declare both queues so a publish lands even before any worker has (re)connected."""
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=_RETRY_POLICY["max_retries"])
            channel = connection.default_channel
            for queue in STAGE_QUEUES.values():
                self.app.amqp.queues[queue](channel).declare()

    def _wait_loop(self) -> None:
        """Look at the tasks until shutdown. A failure that is not Redis's fails the unfinished tasks
        with that error, and the waiter goes on for the tasks submitted after it."""
        while not self._stopped.is_set():
            with self._lock:
                busy = bool(self._pending or self._abandoned)
            if not busy:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                self._look_once()
            except Exception as exc:
                logger.exception("event=celery_waiter_failed")
                self._fail_unfinished(exc)
                self._stopped.wait(1.0)

    def _look_once(self) -> None:
        with self._lock:
            task_ids = list(self._pending)
            abandoned = list(self._abandoned)
        try:
            self._republish_after_restart()
            values = self._fetch([*task_ids, *abandoned])
            metas = self._decoded(task_ids, values)
            self._redispatch_from_dead_workers(metas)
            self._drop_abandoned(abandoned, values)
            for task_id, meta in metas.items():
                self._guarded(task_id, self._on_state, task_id, meta)
        except _REDIS_ERRORS as exc:
            if not self._unreachable:
                log_event(logger, "redis_unreachable", logging.WARNING, error=exc)
            self._unreachable = True
            self._stopped.wait(1.0)
            return
        if self._unreachable:
            log_event(logger, "redis_reachable")
            self._unreachable = False
        self._stopped.wait(self.settings.celery.poll_interval_s)

    def _guarded(self, task_id: str, call: Callable[..., None], *args: Any) -> None:
        """``call(*args)`` for one task; whatever it raises fails that task only."""
        try:
            call(*args)
        except _REDIS_ERRORS:
            raise
        except Exception as exc:
            logger.exception("event=celery_task_state_unreadable task_id=%s", task_id)
            with self._lock:
                pending = self._pending.get(task_id)
            if pending is not None:
                self._finish(task_id, _client_error(pending.stage, exc, "the client could not read the task's state"), worker="")

    def _decoded(self, task_ids: list[str], values: dict[str, bytes]) -> dict[str, dict[str, Any]]:
        metas: dict[str, dict[str, Any]] = {}
        for task_id in task_ids:
            if task_id in values:
                self._guarded(task_id, lambda: metas.update({task_id: self._decode_meta(values[task_id])}))
        return metas

    def _decode_meta(self, value: bytes) -> dict[str, Any]:
        meta = self.app.backend.decode_result(value)
        if not isinstance(meta, dict) or "status" not in meta:
            raise ValueError(f"not a Celery task state: {value[:200]!r}")
        return meta

    def _on_state(self, task_id: str, meta: dict[str, Any]) -> None:
        if meta["status"] in _READY_STATES:
            self._resolve(task_id, meta)
        elif meta["status"] == "PROGRESS":
            self._report_progress(task_id, meta["result"])

    def _fail_unfinished(self, exc: Exception) -> None:
        with self._lock:
            unfinished = list(self._pending.values())
        for pending in unfinished:
            self._finish(pending.task_id, _client_error(pending.stage, exc, "the Celery client's waiter failed"), worker="")

    def _republish_after_restart(self) -> None:
        server_ids = (self._broker.info("server")["run_id"], self.app.backend.client.info("server")["run_id"])
        if self._server_ids is None:
            self._server_ids = server_ids
        if self._server_ids == server_ids:
            return
        with self._lock:
            unfinished = list(self._pending.values())
            held = list(self._holds)
        lost = self._lost_in_restart(unfinished)
        self._declare_queues()
        for name in held:
            _with_redis_retry(lambda: self._sync_hold(name))
        for pending in lost:
            self._publish(pending)
        self.republished += len(lost)
        log_event(logger, "redis_restarted", logging.WARNING, republished=len(lost), kept=len(unfinished) - len(lost))
        # Only now: if Redis went away again midway, the next look does all this once more.
        self._server_ids = server_ids

    def _lost_in_restart(self, unfinished: list[_Pending]) -> list[_Pending]:
        """The tasks a restarted Redis no longer knows: no message queued or delivered, no state stored."""
        if not unfinished:
            return []
        task_ids = [pending.task_id for pending in unfinished]
        queues = sorted({STAGE_QUEUES[pending.stage] for pending in unfinished})
        found = self._find_messages(keys=[*queues, "unacked"], args=task_ids)
        known = {task_id.decode() for task_id in found} | set(self._fetch(task_ids))
        return [pending for pending in unfinished if pending.task_id not in known]

    def _redispatch_from_dead_workers(self, metas: dict[str, dict[str, Any]]) -> None:
        """Publish again the running tasks of workers whose heartbeat key has expired (a dead machine).

        A worker counts as dead once its key has been missing for a beat, so a key lost with a
        restarted Redis, rewritten at the worker's next beat, does not count. The dead worker's
        unacknowledged copy is dropped so that ``visibility_timeout`` does not deliver it once more.
        """
        now = time.monotonic()
        if now < self._next_heartbeat_check:
            return
        self._next_heartbeat_check = now + self._beat_s
        running = {
            task_id: meta["result"]["worker"]
            for task_id, meta in metas.items()
            if meta.get("status") in _RUNNING_STATES and isinstance(meta.get("result"), dict) and meta["result"].get("worker")
        }
        workers = sorted(set(running.values()))
        beats = self._broker.mget([_HEARTBEAT_KEY + worker for worker in workers]) if workers else []
        self._missing_since = {w: t for w, t in self._missing_since.items() if w in workers}
        for worker, beat in zip(workers, beats):
            if beat is not None:
                self._missing_since.pop(worker, None)
            elif now - self._missing_since.setdefault(worker, now) >= self._beat_s:
                for task_id in [task_id for task_id, holder in running.items() if holder == worker]:
                    self._redispatch(task_id, worker)

    def _redispatch(self, task_id: str, worker: str) -> None:
        with self._lock:
            pending = self._pending.get(task_id)
        if pending is None or worker in pending.lost_workers:
            return
        # kombu's Redis transport keeps delivered, unacknowledged messages under these keys.
        dropped = self._drop_unacked(keys=["unacked", "unacked_index"], args=[task_id])
        log_event(
            logger, "celery_task_redispatched", logging.WARNING, task_id=task_id, stage=pending.stage,
            dead_worker=worker, unacked_dropped=dropped,
        )
        self._publish(pending)
        pending.lost_workers.add(worker)
        self.redispatched += 1

    def _fetch(self, task_ids: list[str]) -> dict[str, bytes]:
        """The stored state of each task that has one, as Redis holds it."""
        backend = self.app.backend
        values: dict[str, bytes] = {}
        for start in range(0, len(task_ids), 500):
            chunk = task_ids[start : start + 500]
            found = backend.client.mget([backend.get_key_for_task(task_id) for task_id in chunk])
            values.update((task_id, value) for task_id, value in zip(chunk, found) if value is not None)
        return values

    def _drop_abandoned(self, abandoned: list[str], values: dict[str, bytes]) -> None:
        """A cancelled task's late result is not wanted: remove its spilled file and its state once it ends."""
        now = time.monotonic()
        for task_id in abandoned:
            result = self._ended_result(values[task_id]) if task_id in values else None
            if result is not None:
                spilled = isinstance(result, dict) and isinstance(result.get("result_file"), str)
                if spilled and self.shared_dir is not None:
                    (Path(self.shared_dir) / result["result_file"]).unlink(missing_ok=True)
                self.app.backend.forget(task_id)
            with self._lock:
                if result is not None or now > self._abandoned.get(task_id, 0.0):
                    self._abandoned.pop(task_id, None)

    def _ended_result(self, value: bytes) -> Any:
        """The result of an ended task (``{}`` when unreadable: nothing to clean up), None while it runs."""
        try:
            meta = self._decode_meta(value)
        except Exception:
            return {}
        return meta.get("result") if meta["status"] in _READY_STATES else None

    def _report_progress(self, task_id: str, meta: dict[str, Any]) -> None:
        """The latest Progress a worker stored for the task, to the caller's listener (once per change)."""
        with self._lock:
            pending = self._pending.get(task_id)
        if pending is None or pending.on_event is None or meta.get("event") == pending.last_event:
            return
        pending.last_event = meta.get("event")
        try:
            pending.on_event(decode_value(meta["event"]))
        except Exception:
            logger.exception("event=task_event_listener_failed task_id=%s", task_id)

    def _resolve(self, task_id: str, meta: dict[str, Any]) -> None:
        with self._lock:
            pending = self._pending.get(task_id)
        if pending is None:
            return
        if _lost_by_celery(meta) and pending.celery_losses < _LOST_TASK_RETRIES:
            self._publish_lost(pending, meta)
            return
        worker = ""
        try:
            if meta["status"] != "SUCCESS":
                raise _failure_error(pending.stage, meta, time_limit_s(self.settings, pending.stage))
            payload = meta["result"]
            worker = payload.get("worker", "")
            outcome: TaskResult | BaseException = self._task_result(pending, payload)
        except Exception as exc:
            outcome = exc
        self._finish(task_id, outcome, worker)

    def _publish_lost(self, pending: _Pending, meta: dict[str, Any]) -> None:
        """Celery lost the task with its pool process or at its hard time limit: not the stage's doing, run it again."""
        pending.celery_losses += 1
        log_event(
            logger, "celery_task_lost", logging.WARNING, task_id=pending.task_id, stage=pending.stage,
            error=type(meta.get("result")).__name__, attempt=pending.celery_losses,
        )
        self.app.backend.forget(pending.task_id)
        self._publish(pending)

    def _task_result(self, pending: _Pending, payload: dict[str, Any]) -> TaskResult:
        spilled = Path(self.shared_dir) / payload["result_file"] if "result_file" in payload else None
        if spilled is not None:
            payload = {**json.loads(spilled.read_text()), "worker": payload["worker"]}
        if "error" in payload:
            outcome: TaskResult | IsolationError = decode_error(payload["error"])
        else:
            value = decode_value(payload["value"])
            source = getattr(value, "source", None)
            if source and pending.sent_audio and Path(source).name == Path(pending.sent_audio).name:
                value = dataclasses.replace(value, source=pending.original_audio)
            outcome = TaskResult(value=value, stats=TaskStats(**payload["stats"]))
        # The file goes only once its content is decoded: one that fails to decode stays for a look.
        if spilled is not None:
            spilled.unlink(missing_ok=True)
        if isinstance(outcome, IsolationError):
            raise outcome
        return outcome

    def _finish(self, task_id: str, outcome: Any, worker: str) -> None:
        with self._lock:
            pending = self._pending.pop(task_id, None)
            if pending is None:
                return
            ok = not isinstance(outcome, BaseException)
            self.completed.append(CompletedTask(task_id, pending.stage, worker, ok))
        self._release_staged(pending.staged)
        log_event(logger, "celery_task_resolved", task_id=task_id, stage=pending.stage, worker=worker, ok=ok)
        if ok:
            pending.future.set_result(outcome)
        else:
            pending.future.set_exception(outcome)


def _with_redis_retry(call: Callable[[], Any]) -> Any:
    """``call()``, tried again through a Redis outage for as long as publishing waits (about four minutes)."""
    policy = _RETRY_POLICY
    for attempt in range(policy["max_retries"]):
        try:
            return call()
        except _REDIS_ERRORS:
            time.sleep(min(policy["interval_start"] + attempt * policy["interval_step"], policy["interval_max"]))
    return call()


_LOST_ERRORS = ("WorkerLostError", "TimeLimitExceeded")
"""Celery's failures of the task itself: its pool process died, or Celery's hard time limit killed it."""


def _lost_by_celery(meta: dict[str, Any]) -> bool:
    return meta["status"] == "FAILURE" and type(meta.get("result")).__name__ in _LOST_ERRORS


def _failure_error(stage: str, meta: dict[str, Any], time_limit: float) -> IsolationError:
    """A task that raised outside the isolation runtime (bad input, lost audio), was lost by Celery, or was revoked."""
    error = meta.get("result")
    exc_type = type(error).__name__ if isinstance(error, BaseException) else str(meta["status"])
    if exc_type == "WorkerLostError":
        return WorkerCrashed(stage, detail=f"the Celery pool process running it died each time it ran: {error}")
    if exc_type == "TimeLimitExceeded":
        return StageTimeout(stage, detail="Celery's hard time limit killed it each time it ran", timeout_s=time_limit)
    return StageError(
        stage,
        exc_type=exc_type,
        message=str(error),
        traceback_text=str(meta.get("traceback") or ""),
        detail="raised in the Celery task, outside the isolated worker",
    )


def _client_error(stage: str, exc: Exception, what: str) -> StageError:
    """A fault of this client (not the stage's) that ends a task, with its cause."""
    return StageError(
        stage,
        exc_type=type(exc).__name__,
        message=f"{exc} ({what}; the task's outcome is unknown)",
        traceback_text="".join(traceback.format_exception(exc)),
        detail="a fault of the Celery client, not of the stage",
    )


_SET_HOLD = """
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return redis.call('HLEN', KEYS[1])
"""
"""Set this client's hold count on a staged file (0 drops it); returns how many clients still hold it."""

_FIND_MESSAGES = """
local wanted, found = {}, {}
for i = 1, #ARGV do wanted[ARGV[i]] = true end
local function note(raw, delivered)
  local ok, message = pcall(cjson.decode, raw)
  if not ok or type(message) ~= 'table' then return end
  if delivered then message = message[1] end
  if type(message) ~= 'table' or type(message['headers']) ~= 'table' then return end
  local id = message['headers']['id']
  if id and wanted[id] then
    wanted[id] = nil
    found[#found + 1] = id
  end
end
for k = 1, #KEYS - 1 do
  for _, raw in ipairs(redis.call('LRANGE', KEYS[k], 0, -1)) do note(raw, false) end
end
for _, raw in ipairs(redis.call('HVALS', KEYS[#KEYS])) do note(raw, true) end
return found
"""
"""The task ids of ARGV that have a message in the queue lists KEYS[1..n-1] or in kombu's ``unacked`` hash KEYS[n]."""


_DROP_UNACKED = """
local dropped = 0
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local ok, entry = pcall(cjson.decode, entries[i + 1])
  if ok and type(entry) == 'table' and type(entry[1]) == 'table' and type(entry[1]['headers']) == 'table'
     and entry[1]['headers']['id'] == ARGV[1] then
    redis.call('HDEL', KEYS[1], entries[i])
    redis.call('ZREM', KEYS[2], entries[i])
    dropped = dropped + 1
  end
end
return dropped
"""
"""Remove a task's unacknowledged copies from kombu's Redis ``unacked`` hash and its index."""


# --- service job state in Redis -------------------------------------------------------------------

_JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")

_UPDATE_JOB = """
local key, prefix, id = KEYS[1], ARGV[1], ARGV[2]
local status = redis.call('HGET', key, 'status')
if not status then return 0 end
local allowed = false
for name in string.gmatch(ARGV[3], '[^,]+') do
  if name == status then allowed = true end
end
if not allowed then return 0 end
local new_status = status
for i = 4, #ARGV, 2 do
  if ARGV[i] == 'status' then new_status = ARGV[i + 1] end
  if ARGV[i + 1] == '\\0' then redis.call('HDEL', key, ARGV[i]) else redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
end
if new_status ~= status then
  redis.call('SMOVE', prefix .. 'status:' .. status, prefix .. 'status:' .. new_status, id)
  if status == 'queued' then redis.call('ZREM', prefix .. 'queued', id) end
  if new_status == 'queued' then redis.call('ZADD', prefix .. 'queued', redis.call('HGET', key, 'created_at'), id) end
end
return 1
"""

_CLAIM_JOB = """
local prefix, now, owner, claim_key = ARGV[1], ARGV[2], ARGV[3], ARGV[1] .. 'claim:' .. ARGV[4]
local claimed = redis.call('GET', claim_key)
if claimed then return claimed end
local ids = redis.call('ZRANGE', prefix .. 'queued', 0, 0)
if #ids == 0 then return false end
local id = ids[1]
local key = prefix .. 'job:' .. id
redis.call('ZREM', prefix .. 'queued', id)
redis.call('SMOVE', prefix .. 'status:queued', prefix .. 'status:running', id)
redis.call('HSET', key, 'status', 'running', 'started_at', now, 'owner', owner)
redis.call('HINCRBY', key, 'attempts', 1)
redis.call('SET', claim_key, id, 'EX', 3600)
return id
"""
"""Claim the oldest queued job under ``claim_id``; the same claim asked again returns the same job."""

_REQUEUE_ORPHANS = """
local prefix, owner = ARGV[1], ARGV[2]
local requeued = {}
for _, id in ipairs(redis.call('SMEMBERS', prefix .. 'status:running')) do
  local key = prefix .. 'job:' .. id
  local holder = redis.call('HGET', key, 'owner')
  if holder == owner or not holder or redis.call('EXISTS', prefix .. 'owner:' .. holder) == 0 then
    redis.call('HSET', key, 'status', 'queued', 'progress', '0', 'stage', '')
    redis.call('SMOVE', prefix .. 'status:running', prefix .. 'status:queued', id)
    redis.call('ZADD', prefix .. 'queued', redis.call('HGET', key, 'created_at'), id)
    table.insert(requeued, id)
  end
end
return requeued
"""

_JSON_JOB_FIELDS = ("timings", "transcript", "summary")
_FLOAT_JOB_FIELDS = ("created_at", "started_at", "finished_at", "progress", "audio_duration_s", "audio_done_s")
_LISTED_JOB_FIELDS = (
    "id", "status", "audio_path", "stage", *_FLOAT_JOB_FIELDS, "timings", "attempts", "options", "webhook_url",
    "error_type", "error", "api_key_id",
)
"""A listed job's fields: all but its transcript and summary."""


class RedisJobStore:
    """The service's job store (same methods as ``service.job_store.JobStore``) kept in Redis.

    Several service instances can share it: each claims jobs under its own owner id, kept alive by
    a heartbeat key, and ``requeue_running`` only takes back running jobs whose owner is gone.
    Run Redis with persistence (``appendonly yes``) when jobs must outlive a Redis restart.
    """

    HEARTBEAT_S = 10.0

    def __init__(self, url: str, prefix: str = "isoscribe:jobs:") -> None:
        self.prefix = prefix
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._redis = Redis.from_url(url, decode_responses=True, **REDIS_TIMEOUTS)
        self._update = self._redis.register_script(_UPDATE_JOB)
        self._claim = self._redis.register_script(_CLAIM_JOB)
        self._requeue_orphans = self._redis.register_script(_REQUEUE_ORPHANS)
        self._closed = threading.Event()
        self._beat()
        self._heartbeat = threading.Thread(target=self._beat_loop, name="job-store-heartbeat", daemon=True)
        self._heartbeat.start()

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisJobStore:
        return cls(settings.celery.result_backend)

    def close(self) -> None:
        self._closed.set()
        self._heartbeat.join(timeout=5)
        try:
            self._redis.delete(self._owner_key)
        except RedisError:
            pass
        self._redis.close()

    def ping(self) -> None:
        self._redis.ping()

    def create(self, audio_path: Path, options: Any, webhook_url: str | None = None, api_key_id: str = "") -> Any:
        from isoscribe.service.job_store import Job

        job = Job(
            id=f"job_{uuid.uuid4().hex}", status="queued", created_at=time.time(), audio_path=str(audio_path),
            options=options, webhook_url=webhook_url, api_key_id=api_key_id,
        )
        fields = {"id": job.id, "status": "queued", "created_at": repr(job.created_at), "progress": "0", "stage": "",
                  "attempts": "0", "audio_path": job.audio_path, "options": options.to_json(), "timings": "{}",
                  "api_key_id": api_key_id}
        if webhook_url:
            fields["webhook_url"] = webhook_url
        pipe = self._redis.pipeline()
        pipe.hset(self._job_key(job.id), mapping=fields)
        pipe.sadd(f"{self.prefix}status:queued", job.id)
        pipe.zadd(f"{self.prefix}queued", {job.id: job.created_at})
        pipe.execute()
        return job

    def get(self, job_id: str) -> Any:
        data = self._redis.hgetall(self._job_key(job_id))
        return _to_job(data) if data else None

    def count(self, status: str) -> int:
        return self._redis.scard(f"{self.prefix}status:{status}")

    def recent(self, limit: int, after: str | None = None, api_key_id: str | None = None) -> list[Any]:
        """The newest ``limit`` jobs older than job ``after``, newest first, without transcript and
        summary; only those of ``api_key_id`` unless it is None."""
        ids = self._redis.sunion([f"{self.prefix}status:{status}" for status in _JOB_STATUSES])
        pipe = self._redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self._job_key(job_id), _LISTED_JOB_FIELDS)
        listed = [dict(zip(_LISTED_JOB_FIELDS, values)) for values in pipe.execute()]
        jobs = [_to_job({k: v for k, v in data.items() if v is not None}) for data in listed if data["id"]]
        if api_key_id is not None:
            jobs = [job for job in jobs if job.api_key_id == api_key_id]
        jobs.sort(key=lambda job: job.created_at, reverse=True)
        if after is not None:
            cursor = next((job.created_at for job in jobs if job.id == after), 0.0)
            jobs = [job for job in jobs if job.created_at < cursor]
        return jobs[:limit]

    def expired(self, finished_before: float) -> list[Any]:
        """Finished jobs whose time is up (``service.job_ttl_s``)."""
        ids = self._redis.sunion([f"{self.prefix}status:{status}" for status in ("succeeded", "failed", "cancelled")])
        jobs = [self.get(job_id) for job_id in ids]
        return [job for job in jobs if job is not None and (job.finished_at or 0) < finished_before]

    def delete(self, job_id: str) -> bool:
        pipe = self._redis.pipeline()
        pipe.delete(self._job_key(job_id))
        for status in _JOB_STATUSES:
            pipe.srem(f"{self.prefix}status:{status}", job_id)
        pipe.zrem(f"{self.prefix}queued", job_id)
        return pipe.execute()[0] == 1

    def claim_next(self, claim_id: str | None = None) -> Any:
        """The oldest queued job, now running; None when nothing is queued.

        A claim whose reply was lost (Redis went away after running it) is asked again with the
        same ``claim_id`` and returns the same job, so it cannot stay running with nobody on it.
        """
        job_id = self._claim(args=[self.prefix, repr(time.time()), self.owner, claim_id or uuid.uuid4().hex])
        return self.get(job_id) if job_id else None

    def set_progress(
        self,
        job_id: str,
        progress: float,
        stage: str,
        audio_done_s: float | None = None,
        audio_duration_s: float | None = None,
    ) -> None:
        self._set(
            job_id, "running", progress=progress, stage=stage,
            audio_done_s=audio_done_s, audio_duration_s=audio_duration_s,
        )

    def succeed(self, job_id: str, transcript: dict[str, Any], summary: dict[str, Any] | None, timings: dict[str, float]) -> bool:
        return self._set(
            job_id, "running", status="succeeded", progress=1.0, stage="", finished_at=time.time(),
            timings=json.dumps(timings), transcript=json.dumps(transcript),
            summary=json.dumps(summary) if summary is not None else None,
        )

    def replace_result(self, job_id: str, transcript: dict[str, Any], summary: dict[str, Any] | None) -> bool:
        """A corrected result (renamed speakers) of a job that succeeded."""
        return self._set(
            job_id, "succeeded", transcript=json.dumps(transcript),
            summary=json.dumps(summary) if summary is not None else None,
        )

    def fail(self, job_id: str, error_type: str, error: str, timings: dict[str, float]) -> bool:
        return self._set(
            job_id, "running", status="failed", finished_at=time.time(), error_type=error_type, error=error,
            timings=json.dumps(timings),
        )

    def cancel(self, job_id: str) -> bool:
        return self._set(job_id, "queued,running", status="cancelled", finished_at=time.time(), stage="")

    def requeue(self, job_id: str) -> bool:
        return self._set(job_id, "running", status="queued", progress=0.0, stage="")

    def requeue_running(self) -> list[str]:
        """Running jobs of this store or of owners whose heartbeat stopped go back to the queue."""
        return list(self._requeue_orphans(args=[self.prefix, self.owner]))

    def _set(self, job_id: str, allowed: str, **values: Any) -> bool:
        args: list[Any] = [self.prefix, job_id, allowed]
        for name, value in values.items():
            args += [name, "\0" if value is None else (repr(value) if isinstance(value, float) else value)]
        return self._update(keys=[self._job_key(job_id)], args=args) == 1

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    @property
    def _owner_key(self) -> str:
        return f"{self.prefix}owner:{self.owner}"

    def _beat(self) -> None:
        self._redis.set(self._owner_key, "1", ex=int(3 * self.HEARTBEAT_S))

    def _beat_loop(self) -> None:
        while not self._closed.wait(self.HEARTBEAT_S):
            try:
                self._beat()
            except RedisError as exc:
                log_event(logger, "job_store_heartbeat_failed", logging.WARNING, error=exc)


def _to_job(data: dict[str, str]) -> Any:
    from isoscribe.service.job_store import Job, JobOptions

    values: dict[str, Any] = {name: data[name] for name in ("id", "status", "audio_path", "stage") if name in data}
    for name in _FLOAT_JOB_FIELDS:
        if name in data:
            values[name] = float(data[name])
    for name in _JSON_JOB_FIELDS:
        if name in data:
            values[name] = json.loads(data[name])
    values["attempts"] = int(data.get("attempts", 0))
    values["options"] = JobOptions.from_json(data["options"])
    values["webhook_url"] = data.get("webhook_url")
    values["error_type"] = data.get("error_type")
    values["error"] = data.get("error")
    values["api_key_id"] = data.get("api_key_id", "")
    return Job(**values)
