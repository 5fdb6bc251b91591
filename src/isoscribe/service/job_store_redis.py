"""The service's job store kept in Redis (same methods as ``job_store.JobStore``), beside the Celery
executor, so that several service instances share their jobs."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from isoscribe.config import Settings
from isoscribe.distributed.app import REDIS_TIMEOUTS, redacted_url
from isoscribe.logs import log_event
from isoscribe.service.job_store import KEPT_REVISIONS, Job, JobOptions, Revision, transcript_facts
from isoscribe.service.job_types import JobStoreUnavailable

__all__ = ["RedisJobStore"]

logger = logging.getLogger("isoscribe.service")

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
if ARGV[4] ~= '' and redis.call('HGET', key, 'owner') ~= ARGV[4] then return 0 end
local new_status = status
for i = 5, #ARGV, 2 do
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
local prefix, owner, own_too = ARGV[1], ARGV[2], ARGV[3] == '1'
local requeued = {}
for _, id in ipairs(redis.call('SMEMBERS', prefix .. 'status:running')) do
  local key = prefix .. 'job:' .. id
  local holder = redis.call('HGET', key, 'owner')
  local orphan = holder ~= owner and (not holder or redis.call('EXISTS', prefix .. 'owner:' .. holder) == 0)
  if orphan or (own_too and holder == owner) then
    redis.call('HSET', key, 'status', 'queued', 'progress', '0', 'stage', '')
    redis.call('SMOVE', prefix .. 'status:running', prefix .. 'status:queued', id)
    redis.call('ZADD', prefix .. 'queued', redis.call('HGET', key, 'created_at'), id)
    table.insert(requeued, id)
  end
end
return requeued
"""
"""Running jobs whose owner's heartbeat has expired (and, with ARGV[3] = 1, this owner's) go back to the queue."""

_ADD_REVISION = """
local key, revs, meta = KEYS[1], KEYS[2], KEYS[3]
if redis.call('HGET', key, 'status') ~= 'succeeded' then return false end
local current = tonumber(redis.call('HGET', key, 'revision') or '0')
if current ~= tonumber(ARGV[1]) then return false end
if current == 0 and redis.call('HEXISTS', meta, '0') == 0 then
  redis.call('HSET', revs, '0', redis.call('HGET', key, 'transcript'))
  redis.call('HSET', meta, '0', ARGV[4])
end
local new = tostring(current + 1)
redis.call('HSET', revs, new, ARGV[2])
redis.call('HSET', meta, new, ARGV[3])
redis.call('HSET', key, 'transcript', ARGV[2], 'revision', new, 'languages', ARGV[6])
if ARGV[7] == '' then redis.call('HDEL', key, 'speakers') else redis.call('HSET', key, 'speakers', ARGV[7]) end
if ARGV[5] ~= '' then redis.call('HSET', key, 'summary', ARGV[5]) end
local dropped = tostring(current + 1 - tonumber(ARGV[8]))
if tonumber(dropped) > 0 then
  redis.call('HDEL', revs, dropped)
  redis.call('HDEL', meta, dropped)
end
return new
"""
"""The next revision of a succeeded job whose revision is ARGV[1]; revision 0 is kept on the first edit."""

_ADD_PARTIAL = """
if redis.call('LLEN', KEYS[1]) == tonumber(ARGV[1]) then redis.call('RPUSH', KEYS[1], ARGV[2]) end
"""
"""Segment number ARGV[1] of a running job, unless a retried stage sent it already."""

_JSON_JOB_FIELDS = ("timings", "transcript", "summary", "languages")
_FLOAT_JOB_FIELDS = (
    "created_at", "started_at", "finished_at", "progress", "audio_duration_s", "audio_done_s", "expected_done_at",
)
_LISTED_JOB_FIELDS = (
    "id", "status", "audio_path", "stage", *_FLOAT_JOB_FIELDS, "timings", "attempts", "options", "webhook_url",
    "error_type", "error", "api_key_id", "revision", "languages", "speakers",
)
"""A listed job's fields: all but its transcript and summary."""


class RedisJobStore:
    """The service's job store (same methods as ``service.job_store.JobStore``) kept in Redis.

    Several service instances can share it: each claims jobs under its own owner id, kept alive by
    a heartbeat key, and ``requeue_running`` (at start) and ``requeue_orphans`` (every so often while the
    service runs) only take back running jobs whose owner is gone.
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
        self._add_revision = self._redis.register_script(_ADD_REVISION)
        self._add_partial = self._redis.register_script(_ADD_PARTIAL)
        self._closed = threading.Event()
        try:
            self._beat()
        except RedisError as exc:
            raise JobStoreUnavailable(f"the job store's Redis at {redacted_url(url)} does not answer: {exc}") from None
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

    def create(self, audio_path: Path, options: JobOptions, webhook_url: str | None = None, api_key_id: str = "") -> Job:
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

    def owner_of(self, job_id: str) -> str | None:
        """The job's ``api_key_id`` without reading its transcript; None when there is no such job."""
        status, owner = self._redis.hmget(self._job_key(job_id), ["status", "api_key_id"])
        return None if status is None else owner or ""

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
        jobs.sort(key=lambda job: (job.created_at, job.id), reverse=True)  # the id orders jobs of one instant
        if after is not None:
            cursor = next(((job.created_at, job.id) for job in jobs if job.id == after), (0.0, ""))
            jobs = [job for job in jobs if (job.created_at, job.id) < cursor]
        return jobs[:limit]

    def expired(self, finished_before: float) -> list[Any]:
        """Finished jobs whose time is up (``service.job_ttl_s``)."""
        ids = self._redis.sunion([f"{self.prefix}status:{status}" for status in ("succeeded", "failed", "cancelled")])
        jobs = [self.get(job_id) for job_id in ids]
        return [job for job in jobs if job is not None and (job.finished_at or 0) < finished_before]

    def delete(self, job_id: str) -> bool:
        pipe = self._redis.pipeline()
        pipe.delete(self._job_key(job_id))
        pipe.delete(*self._revision_keys(job_id), self._partial_key(job_id))
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
        expected_done_at: float | None = None,
        languages: list[str] | None = None,
    ) -> None:
        self._set(
            job_id, "running", progress=progress, stage=stage, audio_done_s=audio_done_s,
            audio_duration_s=audio_duration_s, expected_done_at=expected_done_at, languages=json.dumps(languages or []),
        )

    def succeed(self, job_id: str, transcript: dict[str, Any], summary: dict[str, Any] | None, timings: dict[str, float]) -> bool:
        languages, speakers = transcript_facts(transcript)
        return self._set(
            job_id, "running", status="succeeded", progress=1.0, stage="", finished_at=time.time(),
            expected_done_at=None, timings=json.dumps(timings), transcript=json.dumps(transcript),
            summary=json.dumps(summary) if summary is not None else None, languages=languages, speakers=speakers,
        )

    def add_revision(
        self, job_id: str, base_revision: int, transcript: dict[str, Any], summary: dict[str, Any] | None = None
    ) -> int | None:
        """``transcript`` as the succeeded job's next revision (``summary`` too, unless None); the new number, or
        None when ``base_revision`` is not the latest (or the job has no result)."""
        languages, speakers = transcript_facts(transcript)
        original = {"created_at": time.time(), "segments": 0}
        if base_revision == 0 and (job := self.get(job_id)) is not None and job.transcript is not None:
            original = {"created_at": job.finished_at or time.time(), "segments": len(job.transcript.get("segments", []))}
        new_meta = {"created_at": time.time(), "segments": len(transcript.get("segments", []))}
        new = self._add_revision(
            keys=[self._job_key(job_id), *self._revision_keys(job_id)],
            args=[base_revision, json.dumps(transcript), json.dumps(new_meta), json.dumps(original),
                  json.dumps(summary) if summary is not None else "", languages,
                  "" if speakers is None else speakers, KEPT_REVISIONS],
        )
        return int(new) if new else None

    def revisions(self, job_id: str) -> list[Revision]:
        """The revisions kept of an edited job, oldest first; empty before the first edit."""
        kept = self._redis.hgetall(self._revision_keys(job_id)[1])
        return sorted(
            (Revision(int(number), **json.loads(meta)) for number, meta in kept.items()), key=lambda r: r.revision
        )

    def transcript_at(self, job_id: str, revision: int) -> dict[str, Any] | None:
        """A kept revision's transcript; None when it is not kept (before the first edit: see ``Job.transcript``)."""
        text = self._redis.hget(self._revision_keys(job_id)[0], str(revision))
        return json.loads(text) if text else None

    def add_partial_segment(self, job_id: str, index: int, segment: dict[str, Any]) -> None:
        """Segment ``index`` of a running job; one that is there already (a retried stage) is kept as it was."""
        self._add_partial(keys=[self._partial_key(job_id)], args=[index, json.dumps(segment)])

    def partial_segments(self, job_id: str, start: int = 0) -> list[dict[str, Any]]:
        """The segments of the job from number ``start`` on, as they arrived while it ran."""
        return [json.loads(text) for text in self._redis.lrange(self._partial_key(job_id), start, -1)]

    def fail(self, job_id: str, error_type: str, error: str, timings: dict[str, float]) -> bool:
        return self._set(
            job_id, "running", status="failed", finished_at=time.time(), error_type=error_type, error=error,
            timings=json.dumps(timings), expected_done_at=None,
        )

    def cancel(self, job_id: str) -> str | None:
        """Cancel a job that has not finished; the status it had ("queued" or "running"), None when it had finished."""
        for status in ("queued", "running"):  # a job claimed between the two is cancelled as running
            if self._set(job_id, status, by_owner=False, status="cancelled", finished_at=time.time(), stage="",
                         expected_done_at=None):
                return status
        return None

    def requeue(self, job_id: str) -> bool:
        return self._set(job_id, "running", status="queued", progress=0.0, stage="")

    def requeue_running(self) -> list[str]:
        """Running jobs of this store or of owners whose heartbeat stopped go back to the queue."""
        return list(self._requeue_orphans(args=[self.prefix, self.owner, "1"]))

    def requeue_orphans(self) -> list[str]:
        """Running jobs of owners whose heartbeat stopped go back to the queue; this store's own stay."""
        return list(self._requeue_orphans(args=[self.prefix, self.owner, "0"]))

    def _set(self, job_id: str, allowed: str, *, by_owner: bool = True, **values: Any) -> bool:
        """Update a job in one of the ``allowed`` states; ``by_owner``: only while this store claims it, so an
        instance that comes back after its jobs were taken back cannot write over the one running them now."""
        args: list[Any] = [self.prefix, job_id, allowed, self.owner if by_owner else ""]
        for name, value in values.items():
            args += [name, "\0" if value is None else (repr(value) if isinstance(value, float) else value)]
        return self._update(keys=[self._job_key(job_id)], args=args) == 1

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def _revision_keys(self, job_id: str) -> tuple[str, str]:
        """The hashes of a job's kept revisions: number → transcript, number → created_at and segment count."""
        return f"{self.prefix}revisions:{job_id}", f"{self.prefix}revision-meta:{job_id}"

    def _partial_key(self, job_id: str) -> str:
        return f"{self.prefix}partial:{job_id}"

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


def _to_job(data: dict[str, str]) -> Job:
    values: dict[str, Any] = {name: data[name] for name in ("id", "status", "audio_path", "stage") if name in data}
    for name in _FLOAT_JOB_FIELDS:
        if name in data:
            values[name] = float(data[name])
    for name in _JSON_JOB_FIELDS:
        if name in data:
            values[name] = json.loads(data[name])
    values["attempts"] = int(data.get("attempts", 0))
    values["revision"] = int(data.get("revision", 0))
    values["speakers"] = int(data["speakers"]) if data.get("speakers") else None
    values["options"] = JobOptions.from_json(data["options"])
    values["webhook_url"] = data.get("webhook_url")
    values["error_type"] = data.get("error_type")
    values["error"] = data.get("error")
    values["api_key_id"] = data.get("api_key_id", "")
    return Job(**values)
