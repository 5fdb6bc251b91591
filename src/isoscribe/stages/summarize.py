"""The summary stage: a transcript's text becomes a markdown summary and a list of action items.

Runs inside an isolated worker (see ``isoscribe.isolation``): ``load`` opens the configured chat
backend once per worker, ``run`` summarizes one transcript.
"""

from __future__ import annotations

from isoscribe.config import Settings
from isoscribe.llm import open_backend
from isoscribe.llm_summary import Summarizer
from isoscribe.transcript import Summary, SummaryRequest

__all__ = ["load", "run"]


def load(settings: Settings) -> Summarizer:
    return Summarizer(open_backend(settings.llm), settings.llm)


def run(model: Summarizer, request: SummaryRequest) -> Summary:
    return model.summarize(request.transcript_text)
