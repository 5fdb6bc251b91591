"""``isoscribe models``: the Whisper models this machine has (name, where from, size) and those it could
install; the configured model is marked."""

from __future__ import annotations

import argparse
import json

from isoscribe.config import Settings
from isoscribe.models import ModelInfo, available_models, model_info

__all__ = ["models_command"]


def models_command(settings: Settings, args: argparse.Namespace) -> int:
    models = available_models(settings.asr.model_cache_dir)
    if settings.asr.model not in {info.name for info in models}:
        configured = model_info(settings.asr.model, settings.asr.model_cache_dir)
        if configured is not None:
            models.append(configured)
    if args.json:
        print(json.dumps([_as_dict(info, settings) for info in models], indent=2))
        return 0
    print(f"{'model':10} {'languages':13} {'size':>9}  where from")
    for info in models:
        name = info.name + (" *" if info.name == settings.asr.model else "")
        languages = "English only" if info.english_only else "multilingual"
        size = f"{info.size_bytes / 1e6:.0f} MB" if info.size_bytes is not None else "-"
        source = info.source if info.installed else f"not installed: {info.install_hint}"
        print(f"{name:10} {languages:13} {size:>9}  {source}")
    print("* the configured model (asr.model)")
    return 0


def _as_dict(info: ModelInfo, settings: Settings) -> dict:
    return {
        "name": info.name, "installed": info.installed, "source": info.source or None,
        "size_bytes": info.size_bytes, "english_only": info.english_only,
        "path": str(info.path) if info.path else None, "configured": info.name == settings.asr.model,
    }
