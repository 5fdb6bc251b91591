"""Scale-out: the speech and summary stages as Celery tasks on a Redis broker.

Clients (the batch, the service) submit through ``CeleryExecutor``, a StageExecutor like the local
ones. ``isoscribe worker`` runs the tasks, each inside the same isolation runtime as on one machine
(one recycled WorkerPool per stage in every Celery pool process), so a crashing model still only
kills its isolated worker. Audio and big results move through ``settings.celery.shared_dir``; Redis
carries small JSON only.

By role: ``app`` (the Celery app, queues, limits), ``worker`` (task bodies, pool cache, heartbeat),
``worker_main`` (the worker process of ``isoscribe worker``), ``codec`` (what crosses Redis), ``staging`` (shared storage and
its holds), ``client`` (the executor) and ``waiter`` (its thread that resolves the Futures).

Delivery, as tested in tests/test_distributed.py:
- Tasks are acknowledged late. When a Celery pool process dies, ``task_reject_on_worker_lost``
  puts its task back at once. When a whole worker dies (kill -9, lost machine) its heartbeat key
  in Redis expires; the client sees a running task whose worker has no heartbeat and publishes it
  again (within ``heartbeat_timeout_s`` plus a beat), dropping the dead worker's unacknowledged copy.
  ``visibility_timeout_s`` stays the backstop and stays above the longest task. A task Celery
  reports lost (WorkerLostError, TimeLimitExceeded) is published again twice.
- A task may therefore run twice. It is idempotent: a redelivered task whose result is already
  stored returns that result, and the client resolves each Future once.
- After a Redis restart (a new ``run_id``) the client publishes again, under the same task ids, only
  the unfinished tasks Redis lost: with persistence (``appendonly yes``) their messages and states
  survive and nothing is published twice. Its holds on staged audio are set to what it uses, so
  they reach 0 and the files go whether the old holds survived or not.
- A cancel stops the stage on the worker: the client sets a cancel key the running task watches
  (Celery's ``revoke(terminate=True)`` would signal a pool process that may already run another task).
  A task's Future stays pending until a worker starts it, so cancelling it (a stopped batch) revokes the
  queued task, as a local pool drops its queued ones.
"""

from isoscribe.distributed.app import STAGE_QUEUES, STAGE_TASKS, create_app, visibility_timeout_s
from isoscribe.distributed.client import CeleryExecutor, CompletedTask
from isoscribe.distributed.codec import decode_error, decode_value, encode_error, encode_value
from isoscribe.distributed.worker_main import run_worker
from isoscribe.distributed.staging import stage_audio, staged_name

__all__ = [
    "STAGE_TASKS",
    "STAGE_QUEUES",
    "CeleryExecutor",
    "CompletedTask",
    "create_app",
    "visibility_timeout_s",
    "run_worker",
    "stage_audio",
    "staged_name",
    "encode_value",
    "decode_value",
    "encode_error",
    "decode_error",
]
