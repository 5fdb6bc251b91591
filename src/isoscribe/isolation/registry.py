"""Every live pool of this process, so that an exit (atexit, SIGTERM, Ctrl-C) leaves no worker behind.

Signal-handler installation is policy for the CLI and the service: the runtime installs none by itself.
"""

from __future__ import annotations

import atexit
import signal
import weakref
from typing import Any, Protocol

from isoscribe.isolation import transport

__all__ = ["install_termination_handler", "register", "shutdown_all_pools"]


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


def install_termination_handler() -> None:
    """Turn SIGTERM into ``SystemExit(143)`` in the main thread, so ``with`` blocks and atexit shut pools down.

    For the CLI and the service to call. Ctrl-C already raises KeyboardInterrupt, and workers ignore
    SIGINT (they are in their own session anyway).
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)
