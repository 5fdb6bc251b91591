"""The Celery app: its tasks, their queues and time limits, and the delivery rules.

The names every side shares live here too: the Redis timeouts and errors, the task states, and
the keys through which a client and a worker talk outside Celery (heartbeats, cancels).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from celery import Celery
from celery.exceptions import OperationalError as CeleryOperationalError
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from isoscribe.backoff import Backoff, retry
from isoscribe.config import Settings
from isoscribe.executors import ExecutorUnavailable

__all__ = [
    "STAGE_TASKS",
    "STAGE_QUEUES",
    "REDIS_TIMEOUTS",
    "REDIS_OUTAGE_S",
    "REDIS_ERRORS",
    "BrokerUnreachable",
    "create_app",
    "redacted_url",
    "time_limit_s",
    "visibility_timeout_s",
    "with_redis_retry",
]

T = TypeVar("T")

STAGE_TASKS = {"probe": "isoscribe.probe", "speech": "isoscribe.speech", "summary": "isoscribe.summary"}
STAGE_QUEUES = {"probe": "asr", "speech": "asr", "summary": "llm"}
REDIS_TIMEOUTS = {"socket_connect_timeout": 5.0, "socket_timeout": 10.0, "health_check_interval": 15}
"""A Redis that is down or unreachable fails a call within seconds instead of blocking it for good."""
REDIS_ERRORS = (RedisError, KombuOperationalError, CeleryOperationalError, ConnectionError, OSError)
READY_STATES = ("SUCCESS", "FAILURE", "REVOKED")
RUNNING_STATES = ("STARTED", "PROGRESS")
HEARTBEAT_KEY = "isoscribe:worker-heartbeat:"
"""+ Celery node name; set by each worker with a TTL of ``heartbeat_timeout_s``, in the broker's Redis."""
CANCEL_KEY = "isoscribe:cancel:"
"""+ task id; set by a client that cancels the task, watched by the worker running it, in the broker's Redis."""
CANCEL_TTL_S = 24 * 3600

REDIS_RETRY = Backoff(first_s=0.2, max_s=2.0)
REDIS_TRIES = 120
"""With REDIS_RETRY: a call (a publish, a hold) waits about four minutes for Redis to come back."""
REDIS_OUTAGE_S = 240.0
"""As long, the client's waiter waits for Redis before it fails the tasks it waits for."""



class BrokerUnreachable(ExecutorUnavailable, KombuOperationalError):
    """A client's broker did not answer for as long as a client waits for Redis."""


_TIME_LIMIT_GRACE_S = 120.0
"""Celery's hard time limit is a backstop behind the isolation runtime's own stage timeout."""


def create_app(settings: Settings) -> Celery:
    """A Celery app for ``settings.celery`` with the isoscribe tasks and delivery rules."""
    # The task bodies import this module's names, so they are imported only here.
    from isoscribe.distributed.worker import TASK_FUNCTIONS

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
        app.task(name=task_name, bind=True, shared=False, time_limit=time_limit)(TASK_FUNCTIONS[stage])
    return app


def time_limit_s(settings: Settings, stage: str) -> float:
    """Celery's hard time limit of ``stage``'s task: the stage's own timeout and the model load before it (a
    Celery process loads lazily, on its first task and after each recycle; the stage's clock starts after)."""
    iso = settings.isolation
    limits = {"probe": iso.probe_timeout_s, "speech": iso.asr_timeout_s, "summary": iso.llm_timeout_s}
    return limits[stage] + iso.load_timeout_s + _TIME_LIMIT_GRACE_S


def visibility_timeout_s(settings: Settings) -> float:
    """How long Redis waits before it gives an unacknowledged task to another worker (past any task's limit)."""
    if settings.celery.visibility_timeout_s is not None:
        return settings.celery.visibility_timeout_s
    return max(time_limit_s(settings, stage) for stage in STAGE_TASKS) + 300.0


def _transport_options(settings: Settings) -> dict[str, Any]:
    timeout_s = visibility_timeout_s(settings)
    return {
        "visibility_timeout": timeout_s,
        # Kombu looks for overdue unacknowledged tasks every interval x throttle seconds
        # (100 s by default); look every few seconds, at most every 10 s.
        "unacked_restore_interval": max(1, min(10, int(timeout_s // 4))),
        "unacked_restore_throttle": 1,
    }


def redacted_url(url: str) -> str:
    """``url`` without its credentials, to be logged or shown."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if "@" in rest else url


def with_redis_retry(call: Callable[[], T]) -> T:
    """``call()``, tried again through a Redis outage of up to about four minutes."""
    return retry(call, REDIS_ERRORS, REDIS_RETRY, REDIS_TRIES)
