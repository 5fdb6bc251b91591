"""Test double: the real realtime stage, with two faults a live session must survive. Tests only.

- A whole utterance whose prompt contains "sigkill": the worker kills itself (SIGKILL), as a worker
  lost mid-utterance would be.
- An utterance whose prompt contains "hold:PATH": the worker holds it until the file PATH exists, as
  a decode stuck behind a slow machine would; the test creates the file to let it go.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from isoscribe.stages import realtime
from isoscribe.stages.realtime import UtteranceRequest

__all__ = ["load", "run"]

load = realtime.load


def run(model, request):
    prompt = (request.prompt or "") if isinstance(request, UtteranceRequest) else ""
    if "sigkill" in prompt and request.final:
        os.kill(os.getpid(), signal.SIGKILL)
    if "hold:" in prompt:
        release = Path(prompt.split("hold:", 1)[1].split()[0])
        while not release.exists():
            time.sleep(0.05)
    return realtime.run(model, request)
