"""Test double for the isolation path: the real summary stage, whose ``run`` fails as told.

``SUMMARY_TEST_FAULT`` (inherited by the worker) picks the failure: ``segfault`` (a native crash,
as llama.cpp could have) or ``hang`` (a generation that never ends).
"""

from __future__ import annotations

import ctypes
import os
import time

from isoscribe.summary.stage import load

__all__ = ["load", "run"]


def run(model, request):
    fault = os.environ.get("SUMMARY_TEST_FAULT", "segfault")
    if fault == "hang":
        while True:
            time.sleep(1)
    ctypes.string_at(0)  # reads address 0: SIGSEGV
