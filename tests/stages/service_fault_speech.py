"""Test double for the isolation path: the real speech stage, with a native leak and a segfault on demand.

The service tests point ``isolation.speech_stage`` here (the worker imports it by module name, so the
tests put this folder on PYTHONPATH). ``SERVICE_TEST_LEAK_MB`` (inherited by the worker) leaks that many
MB of native memory per task, as a leaking model SDK would; a request whose ``initial_prompt`` contains
"segfault" kills its worker with SIGSEGV, and one with "hang" never returns (it first touches a file in
``SERVICE_TEST_MARKERS`` when that is set). "crash-mid-stream" kills the worker after its second
segment the first time (a marker file in ``SERVICE_TEST_MARKERS`` remembers it), so that a retried
task streams its segments again. Tests only; the product default stays the real stage.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from collections.abc import Callable

from isoscribe.pipeline.events import Event, SegmentReady
from isoscribe.stages import faults, speech
from isoscribe.transcript import SpeechRequest, Transcript

__all__ = ["load", "run"]

load = speech.load


def run(
    model: speech.SpeechModels, request: SpeechRequest, emit: Callable[[Event], None] | None = None
) -> Transcript:
    if request.initial_prompt and "crash-mid-stream" in request.initial_prompt:
        emit = _crash_after_two_segments(emit, Path(os.environ["SERVICE_TEST_MARKERS"], "crashed-mid-stream"))
        # The trigger is no prompt for the model: prompted, tiny.en put all of sonnet001 in two segments on one CPU.
        request = replace(request, initial_prompt=None)
    if request.initial_prompt and "segfault" in request.initial_prompt:
        faults.run({}, faults.FaultRequest("segfault"))
    if request.initial_prompt and "hang" in request.initial_prompt:
        markers = os.environ.get("SERVICE_TEST_MARKERS")
        if markers:  # lets a test see that the hang has begun
            Path(markers, f"hang-{os.getpid()}").touch()
        faults.run({}, faults.FaultRequest("hang"))
    faults.leak_native(int(os.environ.get("SERVICE_TEST_LEAK_MB", "0")))
    return speech.run(model, request, emit)


def _crash_after_two_segments(emit: Callable[[Event], None] | None, marker: Path) -> Callable[[Event], None]:
    segments = 0

    def emit_then_crash(event: Event) -> None:
        nonlocal segments
        if emit is not None:
            emit(event)
        segments += isinstance(event, SegmentReady)
        if segments == 2 and not marker.exists():
            marker.touch()
            faults.run({}, faults.FaultRequest("segfault"))

    return emit_then_crash
