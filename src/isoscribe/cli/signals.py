"""How a command stops: the first Ctrl-C, SIGTERM or SIGHUP unwinds the main thread (KeyboardInterrupt,
or ``SystemExit(128 + signal)``), so ``with`` blocks and atexit shut worker pools down and a batch stops
cleanly. A second one raises nothing, since it could land in the middle of that cleanup: it calls
``on_second_stop`` (the batch kills its running stages at once) on a thread of its own, as a signal
handler must not take locks the interrupted code may hold. The runtime itself installs no handler."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["install_stop_signals"]

_second_stop: list[Callable[[], None]] = []
_stopping = threading.Event()


def install_stop_signals(on_second_stop: Callable[[], None] | None = None) -> None:
    _stopping.clear()
    _second_stop[:] = [] if on_second_stop is None else [on_second_stop]
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_stop_signal)


def _on_stop_signal(signum: int, frame: Any) -> None:
    if not _stopping.is_set():
        _stopping.set()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)
    for callback in _second_stop:
        threading.Thread(target=callback, name="second-stop", daemon=True).start()
