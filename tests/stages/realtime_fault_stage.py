"""Test double: the real realtime stage, whose worker kills itself (SIGKILL) on a whole utterance whose
prompt contains "sigkill", as a worker lost mid-utterance would be. Tests only."""

from __future__ import annotations

import os
import signal

from isoscribe.stages import realtime
from isoscribe.stages.realtime import UtteranceRequest

__all__ = ["load", "run"]

load = realtime.load


def run(model, request):
    if isinstance(request, UtteranceRequest) and request.final and "sigkill" in (request.prompt or ""):
        os.kill(os.getpid(), signal.SIGKILL)
    return realtime.run(model, request)
