"""Which model a request runs on: the names the service offers (``whisper-1`` and the installed models),
the model ``whisper-1`` means for a task, the executor stage serving a model (another model gets a pool of
its own on its first request), and the 400s for a model or language it cannot serve. Also what each
model is (installed, where from, size) and whether it is loaded (its workers and their memory), and
loading or unloading a model's pool on request."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from isoscribe.config import Settings
from isoscribe.executors import PooledExecutor, StageExecutor
from isoscribe.languages import WHISPER_LANGUAGES
from isoscribe.logs import log_event
from isoscribe.models import available_models, cannot_transcribe, cannot_translate, model_info
from isoscribe.service.errors import ApiError
from isoscribe.service.execution import add_model_pool, model_stage
from isoscribe.service.realtime import REALTIME_STAGE

__all__ = ["ModelRouter", "MODEL_ALIAS"]

logger = logging.getLogger("isoscribe.service")

MODEL_ALIAS = "whisper-1"
"""OpenAI's model name; served by the configured default model."""


class ModelRouter:
    def __init__(self, settings: Settings, executor: StageExecutor, owns_executor: bool) -> None:
        self.settings = settings
        self.executor = executor
        self.owns_executor = owns_executor
        self._languages: dict[str, frozenset[str]] = {}
        """Model → the language codes it has a token for; en alone is an English-only model."""

    def describe(self, model_id: str) -> dict[str, Any]:
        """OpenAI's model object, plus what the model is and whether it is loaded: its workers (stage, pid,
        state, RSS of the worker's process tree, tasks done) and their RSS summed; 404 for a model not served."""
        if model_id not in self.ids():
            raise ApiError(404, f"no model {model_id!r} (see GET /v1/models)", code="model_not_found")
        model = self.served(model_id)
        info = model_info(model, self.settings.asr.model_cache_dir)
        workers = self._workers(model)
        return {
            "id": model_id, "object": "model", "created": 0, "owned_by": "isoscribe",
            "model": model,
            "installed": info is not None and info.installed,
            "source": info.source if info else None,
            "size_bytes": info.size_bytes if info else None,
            "english_only": info.english_only if info else None,
            "loaded": bool(workers),
            "workers": workers,
            "rss_mb": round(sum(worker["rss_mb"] for worker in workers), 1) if workers else 0.0,
        }

    def load(self, model_id: str) -> dict[str, Any]:
        """Start the model's pool and wait for its workers to load (blocking: call off the event loop)."""
        stage = self._managed_stage(model_id)
        if stage == "speech" and not self.settings.isolation.prespawn:
            raise ApiError(
                409, f"model {model_id!r} loads on its first task here (isolation.prespawn is off)",
                code="model_loads_on_demand",
            )
        if not self.executor.load(stage, self.settings.isolation.load_timeout_s):
            raise ApiError(500, f"model {model_id!r} did not load", type="server_error", code="model_load_failed")
        log_event(logger, "model_loaded", model=model_id, stage=stage)
        return self.describe(model_id)

    def unload(self, model_id: str) -> dict[str, Any]:
        """End the model's worker processes (blocking); 409 while tasks of it are queued or running.
        A later request or load starts it again."""
        stage = self._managed_stage(model_id)
        busy = self.executor.release_if_idle(stage)
        if busy:
            raise ApiError(
                409, f"model {model_id!r} has {busy} task(s) queued or running; unload it when they finish",
                code="model_busy",
            )
        log_event(logger, "model_unloaded", model=model_id, stage=stage)
        return self.describe(model_id)

    def ids(self) -> list[str]:
        installed = [m.name for m in available_models(self.settings.asr.model_cache_dir) if m.installed]
        default = self.settings.asr.model
        return [MODEL_ALIAS, *([default] if default not in installed else []), *installed]

    def served(self, model: str, task: str = "transcribe") -> str:
        """The model a request's ``model`` runs on. ``whisper-1`` is the configured model, except for a
        translation when that model is English-only: then ``service.translation_model``, as OpenAI's
        whisper-1 translates."""
        if model != MODEL_ALIAS:
            return model
        default = self.settings.asr.model
        if task == "translate" and self._translate_refusal(default) is not None:
            return self.settings.service.translation_model
        return default

    def check(self, params: Any) -> str:
        """The speech stage serving ``params``; 400 for a model that is not served, cannot translate, or
        cannot transcribe the asked language."""
        model = self.served(params.model, params.task)
        stage = self.stage_for(model)
        translate_refusal = self._translate_refusal(model) if params.task == "translate" else None
        if translate_refusal is not None:
            raise ApiError(400, translate_refusal, param="model", code="model_cannot_translate")
        language = params.speech_options().language
        if language is not None and language not in self.languages(model):
            refusal = cannot_transcribe(model, language, self.settings.asr.model_cache_dir)
            raise ApiError(400, f"{refusal} (see GET /v1/models)", param="language", code="unsupported_language")
        return stage

    def stage_for(self, model: str) -> str:
        """The executor stage serving ``model``: the configured one, or another installed model's own pool."""
        if model in (MODEL_ALIAS, self.settings.asr.model):
            return "speech"
        ids = self.ids()
        # An executor that runs any model itself (Celery: its workers load the model a task names) needs no pool.
        runs_any = getattr(self.executor, "runs_any_model", False)
        if model not in ids or not (self._can_manage() or runs_any):
            served = ids if self._can_manage() else [MODEL_ALIAS, self.settings.asr.model]
            raise ApiError(
                400,
                f"model {model!r} is not available; use one of: {', '.join(served)} (see GET /v1/models)",
                param="model",
                code="model_not_found",
            )
        return model_stage(model) if runs_any else add_model_pool(self.executor, self.settings, model)

    def _workers(self, model: str) -> list[dict[str, Any]]:
        """The workers holding ``model``: its own pool's and, for the configured model, live transcription's."""
        if not isinstance(self.executor, PooledExecutor):
            return []
        stages = [self._stage(model), *([REALTIME_STAGE] if model == self.settings.asr.model else [])]
        pools = [(stage, self.executor.loaded(stage)) for stage in stages]
        return [
            {"stage": stage, **asdict(worker), "rss_mb": round(worker.rss_mb, 1), "age_s": round(worker.age_s, 1)}
            for stage, pool in pools if pool is not None for worker in pool.stats().workers
        ]

    def _stage(self, model: str) -> str:
        return "speech" if model == self.settings.asr.model else model_stage(model)

    def _can_manage(self) -> bool:
        """Pools are this service's own to add and end (not Celery's, nor an injected executor's)."""
        return self.owns_executor and isinstance(self.executor, PooledExecutor)

    def _managed_stage(self, model_id: str) -> str:
        if model_id not in self.ids():
            raise ApiError(404, f"no model {model_id!r} (see GET /v1/models)", code="model_not_found")
        if not self._can_manage():
            raise ApiError(
                409, "models are loaded by the workers that serve them here (Celery, or the executor's owner)",
                code="models_not_managed",
            )
        return self.stage_for(self.served(model_id))

    def languages(self, model: str) -> frozenset[str]:
        """The language codes ``model`` (a served name or path) has a token for: read once per model."""
        served = self.served(model)
        if served not in self._languages:
            info = model_info(served, self.settings.asr.model_cache_dir)
            self._languages[served] = info.languages if info is not None else WHISPER_LANGUAGES
        return self._languages[served]

    def _translate_refusal(self, model: str) -> str | None:
        """Why ``model`` cannot translate (it is English-only), or None."""
        if self.languages(model) != {"en"}:
            return None
        return cannot_translate(model, self.settings.asr.model_cache_dir)
