"""Test double for the isolation path: the real speech stage, with a native leak and a segfault on demand.

The service tests point ``isolation.speech_stage`` here (the worker imports it by module name, so the
tests put this folder on PYTHONPATH). ``SERVICE_TEST_LEAK_MB`` (inherited by the worker) leaks that many
MB of native memory per task, as a leaking model SDK would; a request whose ``initial_prompt`` contains
"segfault" kills its worker with SIGSEGV, and one with "hang" never returns (it first touches a file in
``SERVICE_TEST_MARKERS`` when that is set). Tests only; the product
default stays the real stage.
"""

from __future__ import annotations

import os
from pathlib import Path

from isoscribe.stages import faults, speech
from isoscribe.transcript import SpeechRequest, Transcript

__all__ = ["load", "run"]

load = speech.load


def run(model: speech.SpeechModels, request: SpeechRequest) -> Transcript:
    if request.initial_prompt and "segfault" in request.initial_prompt:
        faults.run({}, faults.FaultRequest("segfault"))
    if request.initial_prompt and "hang" in request.initial_prompt:
        markers = os.environ.get("SERVICE_TEST_MARKERS")
        if markers:  # lets a test see that the hang has begun
            Path(markers, f"hang-{os.getpid()}").touch()
        faults.run({}, faults.FaultRequest("hang"))
    faults.leak_native(int(os.environ.get("SERVICE_TEST_LEAK_MB", "0")))
    return speech.run(model, request)
