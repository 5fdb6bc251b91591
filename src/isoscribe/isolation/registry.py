"""Every live pool of this process, so that an exit (atexit, SIGTERM, Ctrl-C) leaves no worker behind.

Signal handlers are policy for the CLI (cli/signals.py) and the service: the runtime installs none by itself.
"""

from __future__ import annotations

import atexit
import weakref
from typing import Protocol

from isoscribe.isolation import transport

__all__ = ["register", "shutdown_all_pools"]


class _Pool(Protocol):
    def shutdown(self, wait: bool = True, kill_running: bool = False) -> None: ...


_pools: weakref.WeakSet[_Pool] = weakref.WeakSet()
_atexit_registered = False
_swept = False


def register(pool: _Pool) -> None:
    """Track ``pool`` for ``shutdown_all_pools``; the first pool also sweeps what dead owners left."""
    global _atexit_registered, _swept
    if not _swept:
        _swept = True
        transport.sweep_stale()
    if not _atexit_registered:
        atexit.register(shutdown_all_pools)
        _atexit_registered = True
    _pools.add(pool)


def shutdown_all_pools() -> None:
    """Kill every live pool's workers and remove their files; registered with atexit."""
    for pool in list(_pools):
        pool.shutdown(wait=True, kill_running=True)
