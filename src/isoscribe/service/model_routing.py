"""Which model a request runs on: the names the service offers (``whisper-1`` and the installed models),
the model ``whisper-1`` means for a task, the executor stage serving a model (another model gets a pool of
its own on its first request), and the 400s for a model or language it cannot serve."""

from __future__ import annotations

from typing import Any

from isoscribe.config import Settings
from isoscribe.executors import PooledExecutor, StageExecutor
from isoscribe.models import available_models, cannot_translate
from isoscribe.service.errors import ApiError
from isoscribe.service.execution import add_model_pool

__all__ = ["ModelRouter", "MODEL_ALIAS"]

MODEL_ALIAS = "whisper-1"
"""OpenAI's model name; served by the configured default model."""


class ModelRouter:
    def __init__(self, settings: Settings, executor: StageExecutor, owns_executor: bool) -> None:
        self.settings = settings
        self.executor = executor
        self.owns_executor = owns_executor
        self._refusals: dict[str, str | None] = {}
        """Model → why it cannot translate (it is English-only), or None: asked once per model."""

    def describe(self, model_id: str) -> dict[str, Any]:
        if model_id not in self.ids():
            raise ApiError(404, f"no model {model_id!r} (see GET /v1/models)", code="model_not_found")
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "isoscribe"}

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
        if task == "translate" and self._english_only(default) is not None:
            return self.settings.service.translation_model
        return default

    def check(self, params: Any) -> str:
        """The speech stage serving ``params``; 400 for a model that is not served, cannot translate, or
        cannot transcribe the asked language."""
        model = self.served(params.model, params.task)
        stage = self.stage_for(model)
        english_only = self._english_only(model)
        if params.task == "translate" and english_only is not None:
            raise ApiError(400, english_only, param="model", code="model_cannot_translate")
        language = params.speech_options().language
        if language not in (None, "en") and english_only is not None:
            raise ApiError(
                400, f"model {params.model!r} is English-only and cannot transcribe language {language!r}; "
                "use a multilingual model (see GET /v1/models)", param="language", code="unsupported_language",
            )
        return stage

    def stage_for(self, model: str) -> str:
        """The executor stage serving ``model``: the configured one, or another installed model's own pool."""
        if model in (MODEL_ALIAS, self.settings.asr.model):
            return "speech"
        ids = self.ids()
        can_add = self.owns_executor and isinstance(self.executor, PooledExecutor)
        if model not in ids or not can_add:
            served = ids if can_add else [MODEL_ALIAS, self.settings.asr.model]
            raise ApiError(
                400,
                f"model {model!r} is not available; use one of: {', '.join(served)} (see GET /v1/models)",
                param="model",
                code="model_not_found",
            )
        return add_model_pool(self.executor, self.settings, model)

    def _english_only(self, model: str) -> str | None:
        if model not in self._refusals:
            self._refusals[model] = cannot_translate(model, self.settings.asr.model_cache_dir)
        return self._refusals[model]
