"""Test double for the isolation path: the real speech stage, with a native leak and a segfault on demand.

The service tests point ``isolation.speech_stage`` here (the worker imports it by module name, so the
tests put this folder on PYTHONPATH). ``SERVICE_TEST_LEAK_MB`` (inherited by the worker) leaks that many
MB of native memory per task, as a leaking model SDK would; a request whose ``initial_prompt`` contains
"segfault" kills its worker with SIGSEGV. Tests only; the product default stays the real stage.
"""

from __future__ import annotations

import ctypes
import os

from isoscribe.stages import speech
from isoscribe.transcript import SpeechRequest, Transcript

__all__ = ["load", "run"]

_libc = ctypes.CDLL(None)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]


def load(settings):
    return speech.load(settings)


def run(model, request: SpeechRequest) -> Transcript:
    if request.initial_prompt and "segfault" in request.initial_prompt:
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    leak_mb = int(os.environ.get("SERVICE_TEST_LEAK_MB", "0"))
    if leak_mb:
        _leak(leak_mb)
    return speech.run(model, request)


def _leak(megabytes: int) -> None:
    """malloc and touch: the pages count in RSS and are never freed (no Python object owns them)."""
    size = megabytes * 1024 * 1024
    address = _libc.malloc(size)
    ctypes.memset(address, 1, size)
