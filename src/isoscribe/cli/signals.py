"""How a command stops: SIGTERM and SIGHUP unwind the main thread like Ctrl-C, so ``with`` blocks and
atexit shut worker pools down and a batch stops cleanly; the runtime itself installs no handler."""

from __future__ import annotations

import signal
from typing import Any

__all__ = ["install_stop_signals"]


def install_stop_signals() -> None:
    """SIGTERM and SIGHUP (a closed terminal) raise ``SystemExit(128 + signal)`` in the main thread.
    Each signal raises again, so a second one interrupts a graceful stop (the batch then stops at once)."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)
