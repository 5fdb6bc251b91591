"""The per-file stage graph: speech stage (isolated), post-processing (parent), summary stage (isolated)."""

from __future__ import annotations

import argparse

from isoscribe.config import Settings


def transcribe_command(settings: Settings, args: argparse.Namespace) -> int:
    raise NotImplementedError("owned by the ASR work (issue 3)")


def summarize_command(settings: Settings, args: argparse.Namespace) -> int:
    raise NotImplementedError("owned by the LLM work (issue 4)")
