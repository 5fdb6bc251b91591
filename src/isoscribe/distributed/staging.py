"""Shared storage: audio staged under its content hash, and the holds that keep a staged file while
any client's task uses it.

Each client counts its unfinished tasks per staged file and mirrors that count into a Redis hash
(client id -> count) that every client sees; a file goes when the last count reaches 0. Counts are
set, not added to, so they stay right whether or not Redis kept the old ones across a restart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from redis import Redis

from isoscribe.distributed.app import REDIS_ERRORS, with_redis_retry
from isoscribe.logs import log_event

__all__ = ["stage_audio", "staged_name", "copy_staged", "sweep_leftovers", "StagedHolds"]

logger = logging.getLogger("isoscribe.distributed")

STAGED_KEY = "isoscribe:staged:"
"""+ staged audio name: a hash of client id -> tasks of that client using the file, in the broker's Redis."""
_HOLD_TTL_S = 24 * 3600
"""A crashed client's holds expire after this; its staged files then go with the next client's release."""


def stage_audio(path: Path, shared_dir: Path) -> str:
    """Copy ``path`` into shared storage under its content hash; returns the name relative to ``shared_dir``."""
    name = staged_name(path)
    copy_staged(Path(path), shared_dir, name)
    return name


def staged_name(path: Path) -> str:
    """``audio/<sha256 of the content><suffix>``: the name ``path`` has in shared storage."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as audio:
        while chunk := audio.read(1 << 20):
            digest.update(chunk)
    return f"audio/{digest.hexdigest()}{path.suffix.lower()}"


def copy_staged(path: Path, shared_dir: Path, name: str) -> None:
    target = Path(shared_dir) / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        shutil.copyfile(path, partial)
        os.replace(partial, target)


def sweep_leftovers(broker: Redis, shared_dir: Path, older_than_s: float = _HOLD_TTL_S) -> int:
    """Remove what clients that died left in shared storage, once it is ``older_than_s`` old: staged audio that no
    client holds, copies cut short, results nobody read. Returns how many files went."""
    cutoff = time.time() - older_than_s
    removed = 0
    for path in [*Path(shared_dir, "audio").glob("*"), *Path(shared_dir, "results").glob("*.json")]:
        try:
            if path.stat().st_mtime > cutoff:
                continue
        except FileNotFoundError:
            continue
        if path.parent.name == "audio" and not path.name.endswith(".partial"):
            name = f"audio/{path.name}"
            with broker.lock(f"{STAGED_KEY}lock:{name}", timeout=60, blocking_timeout=120):  # as StagedHolds._sync
                if broker.exists(STAGED_KEY + name):
                    continue
                path.unlink(missing_ok=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


class StagedHolds:
    """One client's holds on staged files, counted here and set in Redis, where every client sees them."""

    def __init__(self, broker: Redis, shared_dir: Path, client_id: str) -> None:
        self._broker = broker
        self._shared_dir = Path(shared_dir)
        self._client_id = client_id
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._set_hold = broker.register_script(_SET_HOLD)

    def take(self, names: Iterable[str]) -> None:
        """One hold per name (a name listed twice is held twice); waits through a Redis outage, then raises."""
        names = list(names)
        with self._lock:
            self._counts.update(names)
        for name in dict.fromkeys(names):
            with_redis_retry(lambda: self._sync(name))

    def drop(self, names: Iterable[str]) -> None:
        """Drop one hold per name; a file goes when no client holds it. If Redis is away the file stays."""
        names = list(names)
        with self._lock:
            self._counts.subtract(names)
            self._counts = +self._counts
        for name in dict.fromkeys(names):
            try:
                self._sync(name)
            except REDIS_ERRORS as exc:
                log_event(logger, "staged_audio_kept", logging.WARNING, name=name, error=exc)

    def restore(self) -> None:
        """Set every hold again, as after a Redis restart that may or may not have kept them."""
        with self._lock:
            names = list(self._counts)
        for name in names:
            with_redis_retry(lambda: self._sync(name))

    def _sync(self, name: str) -> None:
        # The lock orders this against other clients: one releasing the same content either deletes
        # the file before our copy (which then recreates it) or sees our hold and keeps it.
        with self._broker.lock(f"{STAGED_KEY}lock:{name}", timeout=60, blocking_timeout=120):
            with self._lock:
                count = self._counts.get(name, 0)
            if self._set_hold(keys=[STAGED_KEY + name], args=[self._client_id, count, _HOLD_TTL_S]) == 0:
                (self._shared_dir / name).unlink(missing_ok=True)


_SET_HOLD = """
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return redis.call('HLEN', KEYS[1])
"""
"""Set a client's hold count on a staged file (0 drops it); returns how many clients still hold it."""
