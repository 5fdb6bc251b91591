"""The summary stage, hosted in an isolated worker: structured turns in, the grounded digest out.

``load`` opens the chat backend once per worker, and only when the overview is to be abstractive:
with the bundled SmolLM2-135M (``llm.overview = "auto"``) the overview is extractive and no model
is loaded or asked, as nothing it would write could be used.
"""

from __future__ import annotations

from isoscribe.config import Settings
from isoscribe.summary.backends import open_backend
from isoscribe.summary.digest import build_digest
from isoscribe.summary.summarizer import Summarizer
from isoscribe.summary.types import Summary, SummaryRequest

__all__ = ["load", "run", "writes_abstract"]


def writes_abstract(settings: Settings) -> bool:
    llm = settings.llm
    if llm.overview != "auto":
        return llm.overview == "abstractive"
    return llm.backend == "openai" or llm.model_path is not None


def load(settings: Settings) -> Summarizer | None:
    return Summarizer(open_backend(settings.llm), settings.llm) if writes_abstract(settings) else None


def run(model: Summarizer | None, request: SummaryRequest) -> Summary:
    turns = list(request.turns)
    if model is None:
        return build_digest(turns)
    overview = model.overview(turns)
    summary = build_digest(turns, overview.text, model.backend.model_name)
    summary.chunks, summary.prompt_tokens, summary.completion_tokens = (
        overview.chunks, overview.prompt_tokens, overview.completion_tokens,
    )  # fmt: skip
    return summary
