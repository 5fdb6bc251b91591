"""Structured logging: one event per line, ``key=value`` pairs after the event name."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["configure_logging", "log_event"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: str = "info", log_file: Path | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(level=level.upper(), format=_FORMAT, handlers=handlers, force=True)
    # fpdf2's font subsetting logs some 70 INFO lines per PDF (every glyph table it prunes): not our events
    logging.getLogger("fontTools").setLevel(logging.WARNING)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event=NAME key=value …``; values with spaces are quoted."""
    if not logger.isEnabledFor(level):
        return
    parts = [f"event={event}"] + [f"{key}={_format_value(value)}" for key, value in fields.items()]
    logger.log(level, " ".join(parts))


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    if not text or any(ch.isspace() or ch in '"=' for ch in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text
