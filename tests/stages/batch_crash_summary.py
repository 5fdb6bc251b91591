"""Test double for the isolation path: the real summary stage's model, whose ``run`` always segfaults.

The batch tests point ``isolation.summary_stage`` here to check the design notes' rule: an LLM crash
leaves the extractive digest with a warning and the file still done. Tests only.
"""

from __future__ import annotations

import ctypes

from isoscribe.summary import stage

__all__ = ["load", "run"]


def load(settings):
    return stage.load(settings)


def run(model, request):
    ctypes.string_at(0)  # reads address 0: SIGSEGV, as a native crash in llama.cpp would
