"""Celery scale-out: the codec and app settings, then real redis-server and real worker processes.

The ``celery`` tests start ``redis-server`` on 127.0.0.1 at a free port and two ``isoscribe worker``
processes running tiny.en, with the default visibility timeout (over an hour), and check that a
batch spreads over both workers, that a task on a worker killed whole with SIGKILL is dispatched
again once its heartbeat stops and finishes once, and that a Redis restart in the middle of a batch
does not lose it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import pytest
from redis import Redis

from isoscribe.benchmarks.server import free_port
from isoscribe.config import Settings, load_settings
from isoscribe.distributed import (
    CeleryExecutor,
    create_app,
    decode_error,
    decode_value,
    encode_error,
    encode_value,
    stage_audio,
    visibility_timeout_s,
)
from isoscribe.distributed.codec import client_sections, spill_if_big
from isoscribe.isolation import StageError, StageTimeout, TaskCancelled, WorkerCrashed
from isoscribe.summary.text import turns_from_text
from isoscribe.transcript import (
    ActionItem,
    PieceResult,
    Segment,
    SourceSpan,
    SpeakerClusterRequest,
    SpeakerVectors,
    SpeakerWindow,
    SpeechRequest,
    Summary,
    SummaryRequest,
    Transcript,
    Word,
)

SHORT_CLIPS = [
    "librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
    "librivox/sense_and_sensibility_01_austen_64kb-0930.wav",
    "librispeech/1089-134686-0001.wav",
    "librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
    "librispeech/61-70968-0000.flac",
    "librivox/sense_and_sensibility_01_austen_64kb-0920.wav",
]
LONGER_CLIPS = ["long/acoustic_corpus.wav", "jfk/jfk.wav", "librispeech/1089-134686-0000.wav"]


# --- no Redis needed ------------------------------------------------------------------------------


def test_requests_and_results_round_trip_as_json() -> None:
    request = SpeechRequest("audio/abc.wav", language="en", temperatures=(0.0, 0.4), diarize=True, num_speakers=2)
    transcript = Transcript(
        segments=[Segment(0, 0.0, 1.5, "hello there", words=[Word(0.0, 0.5, "hello", 0.9)])],
        language="en", language_probability=0.99, duration_s=1.5, model="tiny.en", source="x.wav",
    )
    call_bob = ActionItem("SPEAKER_00", "call Bob", "by Friday", SourceSpan(0.0, 1.5, "SPEAKER_00", "I will call Bob by Friday"))
    summary = Summary("short", action_items=[call_bob], model="smollm2")
    for value in (request, SummaryRequest(tuple(turns_from_text("SPEAKER_00: hi"))), summary, {"plain": [1, 2]}):
        decoded = decode_value(json.loads(json.dumps(encode_value(value))))
        assert decoded == value
    decoded = decode_value(json.loads(json.dumps(encode_value(transcript))))
    assert decoded.to_dict() == transcript.to_dict()
    assert isinstance(decode_value(json.loads(json.dumps(encode_value(request)))).temperatures, tuple)


def test_a_pieces_speaker_vectors_cross_as_json() -> None:
    windows = [SpeakerWindow(0.0, 0.0, 1.6, 0), SpeakerWindow(0.4, 0.4, 2.0, 0)]
    vectors = SpeakerVectors(
        windows, np.random.default_rng(0).standard_normal((2, 256)).astype(np.float32), [(0.5, 1.0)],
        np.array([0, -1], np.int32), np.array([0], np.int32),
    )
    transcript = Transcript([Segment(0, 0.0, 2.0, " hi")], "en", 1.0, 2.0, "tiny.en")
    for value in (PieceResult(0, 0.0, 300.0, transcript, vectors), SpeakerClusterRequest([vectors], num_speakers=2)):
        decoded = decode_value(json.loads(json.dumps(encode_value(value))))
        back = decoded.speaker_vectors if isinstance(decoded, PieceResult) else decoded.pieces[0]
        assert back.windows == windows and [tuple(span) for span in back.overlaps] == [(0.5, 1.0)]
        for name in ("vectors", "window_units", "unit_chunks"):
            original, arrived = getattr(vectors, name), getattr(back, name)
            assert arrived.dtype == original.dtype and np.array_equal(arrived, original), name


def test_the_clients_voice_samples_folder_stays_on_the_client(tmp_path: Path) -> None:
    from isoscribe.distributed import worker as worker_side

    (tmp_path / "Alice.wav").write_bytes(b"x")
    client = load_settings(overrides={"diarization": {"speakers_dir": tmp_path}})
    sections = json.loads(json.dumps(client_sections(client)))
    assert "speakers_dir" not in sections["diarization"]
    assert worker_side.effective_settings(sections).diarization.speakers_dir is None  # a worker lacks that folder


def test_the_speaker_turns_of_a_long_files_pieces_cross_as_json() -> None:
    """Clustering a long file's pieces answers a list of SpeakerTurn: it crossed as plain JSON and failed to encode."""
    from isoscribe.transcript import SpeakerTurn

    turns = [SpeakerTurn(0.0, 4.5, "SPEAKER_00"), SpeakerTurn(4.5, 9.0, "SPEAKER_01", overlapped=True)]
    for value in (turns, []):
        assert decode_value(json.loads(json.dumps(encode_value(value)))) == value


def test_the_service_routes_another_model_to_celery_workers_instead_of_refusing_it() -> None:
    """whisper-1 translations run on service.translation_model when asr.model is English-only, as the README says;
    with Celery they were refused ('model base is not available; use one of: whisper-1, …')."""
    from types import SimpleNamespace

    from isoscribe.service.errors import ApiError
    from isoscribe.service.model_routing import ModelRouter

    settings = load_settings(overrides={"asr": {"model": "tiny.en"}, "service": {"translation_model": "base"}})
    router = ModelRouter(settings, SimpleNamespace(runs_any_model=CeleryExecutor.runs_any_model), owns_executor=True)
    assert router.stage_for(router.served("whisper-1", "translate")) == "speech:base"
    assert router.stage_for("base") == "speech:base" and router.stage_for("whisper-1") == "speech"
    with pytest.raises(ApiError, match="not available"):
        router.stage_for("no-such-model")


def test_only_isoscribe_types_are_built_from_json() -> None:
    with pytest.raises(ValueError, match="only isoscribe types"):
        decode_value({"type": "os:system", "data": {}})
    with pytest.raises(TypeError):
        encode_value(object())


def test_isolation_errors_keep_their_type_and_cause() -> None:
    crash = WorkerCrashed("speech", 812.0, signal=11, exit_code=None, stderr_tail="Segmentation fault")
    back = decode_error(encode_error(crash))
    assert type(back) is WorkerCrashed
    assert (back.stage, back.signal, back.stderr_tail, back.peak_rss_mb) == ("speech", 11, "Segmentation fault", 812.0)
    assert type(decode_error(encode_error(StageTimeout("summary", timeout_s=9.0)))) is StageTimeout


def test_audio_is_staged_once_under_its_content_hash(tmp_path: Path, shared_data: Path) -> None:
    source = shared_data / SHORT_CLIPS[0]
    copy = tmp_path / "renamed.WAV"
    shutil.copyfile(source, copy)
    first = stage_audio(source, tmp_path / "shared")
    assert first == stage_audio(copy, tmp_path / "shared"), "same content, same name, whatever the file is called"
    assert re.fullmatch(r"audio/[0-9a-f]{64}\.wav", first)
    assert (tmp_path / "shared" / first).read_bytes() == source.read_bytes()
    assert [p.name for p in (tmp_path / "shared" / "audio").iterdir()] == [Path(first).name]


def test_app_carries_the_delivery_and_isolation_rules() -> None:
    settings = load_settings(
        overrides={"isolation": {"max_tasks_per_worker": 7, "max_rss_mb": 1500, "asr_timeout_s": 600, "llm_timeout_s": 300}}
    )
    conf = create_app(settings).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_max_tasks_per_child == 7
    assert conf.worker_max_memory_per_child == 1500 * 1024
    assert conf.task_routes["isoscribe.speech"]["queue"] == "asr"
    assert conf.task_routes["isoscribe.summary"]["queue"] == "llm"
    assert conf.accept_content == ["json"]
    app = create_app(settings)
    load_s = settings.isolation.load_timeout_s  # a lazily loaded model's time is the task's too
    assert app.tasks["isoscribe.speech"].time_limit > 600 + load_s
    assert app.tasks["isoscribe.summary"].time_limit > 300 + load_s
    assert conf.broker_transport_options["visibility_timeout"] == visibility_timeout_s(settings)
    assert visibility_timeout_s(settings) > app.tasks["isoscribe.speech"].time_limit
    short = load_settings(overrides={"celery": {"visibility_timeout_s": 12}})
    assert create_app(short).conf.broker_transport_options["visibility_timeout"] == 12


def test_big_results_go_through_shared_storage(tmp_path: Path) -> None:
    small = {"value": {"json": "x"}, "worker": "w@h"}
    assert spill_if_big(small, "t1", tmp_path) == small
    big = {"value": {"json": "x" * 300_000}, "worker": "w@h"}
    pointer = spill_if_big(big, "t2", tmp_path)
    assert pointer == {"result_file": "results/t2.json", "worker": "w@h"}
    assert json.loads((tmp_path / pointer["result_file"]).read_text()) == big


def test_worker_command_starts_a_prefork_worker_on_the_stage_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from celery import Celery

    from isoscribe.cli.worker import worker_command
    from isoscribe.distributed import worker

    started: list[list[str]] = []
    monkeypatch.setattr(Celery, "worker_main", lambda app, argv: started.append(argv))
    monkeypatch.setattr(worker, "_worker_settings", None)
    settings = load_settings()
    assert worker_command(settings, argparse.Namespace(queues="asr", concurrency=3)) == 0
    assert {"--queues=asr", "--concurrency=3", "--pool=prefork"} <= set(started[0])
    assert worker_command(settings, argparse.Namespace(queues="asr,gpu", concurrency=1)) == 2
    assert len(started) == 1


def test_worker_computes_with_the_clients_settings_and_keeps_its_own_machine_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from isoscribe.distributed import worker as worker_side

    worker = load_settings(overrides={
        "asr": {"model_cache_dir": "/srv/models"}, "llm": {"api_key": "worker-secret"},
        "isolation": {"max_tasks_per_worker": 3},
    })
    client = load_settings(overrides={
        "asr": {"model": "base", "beam_size": 2, "model_cache_dir": "/home/me/models"}, "llm": {"max_tokens": 99},
        "diarization": {"enabled": True, "num_speakers": 2}, "isolation": {"max_tasks_per_worker": 40},
    })
    monkeypatch.setattr(worker_side, "_worker_settings", worker)
    effective = worker_side.effective_settings(json.loads(json.dumps(client_sections(client))))
    assert (effective.asr.model, effective.asr.beam_size, effective.llm.max_tokens) == ("base", 2, 99)
    assert effective.diarization.enabled and effective.diarization.num_speakers == 2
    assert effective.asr.model_cache_dir == Path("/srv/models")
    assert effective.llm.api_key.get_secret_value() == "worker-secret"
    assert effective.isolation.max_tasks_per_worker == 3


def test_result_backend_errors_leave_the_task_running(monkeypatch: pytest.MonkeyPatch, shared_data: Path) -> None:
    """Celery's backend gives up on a Redis that stays away with BackendStoreError / BackendGetMetaError:
    the STARTED and PROGRESS bookkeeping is skipped, the stage still runs and the task returns its result."""
    from types import SimpleNamespace

    from celery.exceptions import BackendGetMetaError, BackendStoreError

    from isoscribe.distributed import worker
    from isoscribe.transcript import ProbeRequest

    def get_task_meta(task_id: str) -> dict:
        raise BackendGetMetaError("Redis is away", task_id=task_id)

    def update_state(**fields: object) -> None:
        raise BackendStoreError("Redis is away", state=fields.get("state"), task_id="t1")

    settings = load_settings(overrides={"celery": {"broker_url": f"redis://127.0.0.1:{free_port()}/0"}})
    monkeypatch.setattr(worker, "_worker_settings", settings)
    task = SimpleNamespace(
        request=SimpleNamespace(id="t1", hostname="w@h"), backend=SimpleNamespace(get_task_meta=get_task_meta),
        update_state=update_state,
    )
    envelope = {"request": encode_value(ProbeRequest(str(shared_data / "jfk" / "jfk.wav"))),
                "settings": client_sections(settings)}
    try:
        payload = worker.run_task(task, "probe", envelope)
    finally:
        worker.shutdown_pools()
    assert "error" not in payload, payload
    assert decode_value(payload["value"]).duration_s == pytest.approx(11.0, abs=0.1)


def test_run_with_a_broker_that_does_not_answer_says_so_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture
) -> None:
    """Not four silent minutes and then a kombu traceback: a warning at once, then one line naming the broker."""
    import kombu.utils.functional

    from isoscribe.cli import main

    monkeypatch.setattr(kombu.utils.functional, "sleep", lambda _s: None)  # the back-off counted, not slept
    closed = f"redis://:secret@127.0.0.1:{free_port()}"
    monkeypatch.setenv("ISOSCRIBE_CELERY__BROKER_URL", f"{closed}/0")
    monkeypatch.setenv("ISOSCRIBE_CELERY__RESULT_BACKEND", f"{closed}/1")
    code = main(["run", str(shared_data / "jfk" / "jfk.wav"), "--out", str(tmp_path / "out"), "--executor", "celery",
                 "--no-summarize", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "event=redis_unreachable" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("isoscribe: the Celery broker redis://127.0.0.1:") and "did not answer" in last, last
    assert "secret" not in err


# --- real Redis, real workers ---------------------------------------------------------------------


class RedisServer:
    """A throwaway redis-server; without ``persistent`` a restart loses every key, as a crash would."""

    def __init__(self, workdir: Path, persistent: bool = False) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.persistent = persistent
        self.process: subprocess.Popen | None = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server not found; scripts/setup.sh installs it (apt-get install redis-server)")
        log = open(self.workdir / "redis.log", "ab")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always",
             "--daemonize", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        client = Redis(port=self.port)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():
                    return
            except Exception:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def restart(self) -> None:
        self.stop()
        self.start()


class Worker:
    """An ``isoscribe worker`` subprocess in its own session, so it can be killed whole."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "isoscribe.cli", "worker", "--queues", "asr,llm", "--concurrency", "1"],
            env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.hostname_prefix = f"isoscribe-{self.process.pid}@"

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while " ready." not in self.log_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker did not start:\n{self.log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    def kill_everything(self) -> None:
        """SIGKILL the worker and all its descendants at once: the machine is gone."""
        root = psutil.Process(self.process.pid)
        tree = [root, *root.children(recursive=True)]
        for process in tree:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_everything()


@pytest.fixture
def redis_server(tmp_path: Path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@dataclass
class Cluster:
    settings: Settings
    """The client's settings: same Redis and shared_dir as the workers, the default visibility timeout."""
    env: dict[str, str]
    """Environment giving a subprocess (worker or ``isoscribe run``) the same settings."""
    tmp_path: Path
    workers: list[Worker] = field(default_factory=list)

    def start_workers(self, count: int) -> list[Worker]:
        started = [Worker(self.env, self.tmp_path / f"worker{len(self.workers) + i}.log") for i in range(count)]
        self.workers.extend(started)
        for worker in started:
            worker.wait_ready()
        return started

    def worker_running(self, node: str) -> Worker:
        return next(worker for worker in self.workers if node.startswith(worker.hostname_prefix))


@pytest.fixture
def cluster(redis_server: RedisServer, tmp_path: Path):
    shared_dir = tmp_path / "shared"
    # visibility_timeout_s keeps its default: a dead worker's task must not wait for it.
    celery = {
        "broker_url": redis_server.url(0), "result_backend": redis_server.url(1), "shared_dir": str(shared_dir),
        "poll_interval_s": "0.1",
    }
    asr = {"device": "cpu", "cpu_threads": "1"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOSCRIBE_")}
    env |= {f"ISOSCRIBE_CELERY__{key.upper()}": value for key, value in celery.items()}
    env |= {f"ISOSCRIBE_ASR__{key.upper()}": value for key, value in asr.items()}
    cluster = Cluster(load_settings(overrides={"asr": asr, "celery": celery}), env, tmp_path)
    yield cluster
    for worker in cluster.workers:
        worker.stop()


def _word_recall(hypothesis: str, reference: str) -> float:
    words = lambda text: re.findall(r"[a-z]+", text.lower())  # noqa: E731
    said = set(words(hypothesis))
    expected = words(reference)
    return sum(word in said for word in expected) / len(expected)


def _check_transcripts(futures: dict[str, Future], shared_data: Path, manifest: list[dict]) -> None:
    references = {clip["path"]: clip["reference_text"] for clip in manifest}
    for clip, future in futures.items():
        transcript = future.result(timeout=0).value
        assert isinstance(transcript, Transcript)
        assert transcript.source == str(shared_data / clip)
        assert _word_recall(transcript.text, references[clip]) > 0.6, (clip, transcript.text)


def _all_done(futures: dict[str, Future], timeout_s: float) -> None:
    _, not_done = wait(list(futures.values()), timeout=timeout_s)
    assert not not_done, f"{len(not_done)} tasks unfinished after {timeout_s} s"


def _client_settings(redis_server: RedisServer, shared_dir: Path) -> Settings:
    return load_settings(overrides={"celery": {
        "broker_url": redis_server.url(0), "result_backend": redis_server.url(1), "shared_dir": str(shared_dir),
        "poll_interval_s": 0.05,
    }})


@pytest.mark.celery
def test_staged_audio_stays_while_another_client_uses_it(redis_server: RedisServer, tmp_path: Path, shared_data: Path) -> None:
    """Two clients stage the same content under one name; the file goes when the last of them is done with it."""
    settings = _client_settings(redis_server, tmp_path / "shared")
    clip = shared_data / SHORT_CLIPS[0]
    staged = tmp_path / "shared" / stage_audio(clip, tmp_path / "elsewhere")
    with CeleryExecutor(settings) as first, CeleryExecutor(settings) as second:
        mine = first.submit("speech", SpeechRequest(str(clip)))
        theirs = second.submit("speech", SpeechRequest(str(clip)))
        also_mine = first.submit("speech", SpeechRequest(str(clip)))
        assert staged.is_file()
        assert first.cancel(mine) and first.cancel(also_mine)
        assert staged.is_file(), "the other client's task still needs the file"
        assert second.cancel(theirs)
        assert not staged.exists(), "no client holds it any more"
        again = first.submit("speech", SpeechRequest(str(clip)))
        assert staged.is_file(), "staged again by the next client that needs it"
        assert first.cancel(again) and not staged.exists()
    assert Redis.from_url(settings.celery.broker_url).keys("isoscribe:staged:*") == []


def _queued_task_id(settings: Settings, queue: str) -> str:
    """Take the one published task off its queue (no worker runs here) and return its id."""
    broker = Redis.from_url(settings.celery.broker_url)
    deadline = time.monotonic() + 10
    while (message := broker.rpop(queue)) is None:
        assert time.monotonic() < deadline, f"nothing published on {queue}"
        time.sleep(0.05)
    return json.loads(message)["headers"]["id"]


@pytest.mark.celery
def test_a_persistent_redis_restart_neither_leaks_staged_audio_nor_publishes_twice(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``appendonly yes`` the holds and the queued messages survive a restart: the client keeps one
    hold per task and one message per task, and the staged file goes when its tasks are done."""
    server = RedisServer(tmp_path, persistent=True)
    server.start()
    try:
        settings = _client_settings(server, tmp_path / "shared")
        clip = shared_data / SHORT_CLIPS[0]
        broker = Redis.from_url(settings.celery.broker_url)
        with CeleryExecutor(settings) as executor:
            futures = [executor.submit("speech", SpeechRequest(str(clip))) for _ in range(2)]
            name = stage_audio(clip, tmp_path / "elsewhere")
            staged = tmp_path / "shared" / name
            assert broker.llen("asr") == 2
            server.restart()
            deadline = time.monotonic() + 60
            while "event=redis_restarted" not in caplog.text:
                assert time.monotonic() < deadline, "the client did not notice the restart"
                time.sleep(0.05)
            assert broker.llen("asr") == 2, "a surviving task was published again: it would run twice"
            assert executor.republished == 0
            assert list(broker.hgetall(f"isoscribe:staged:{name}").values()) == [b"2"], "one hold per task"
            for future in futures:
                assert executor.cancel(future)
            assert not staged.exists(), "no task holds the staged audio any more"
        assert broker.keys("isoscribe:staged:*") == []
    finally:
        server.stop()


@pytest.mark.celery
def test_a_cancelled_tasks_late_result_file_is_removed(redis_server: RedisServer, tmp_path: Path) -> None:
    """Cancelling a queued task fails its Future with TaskCancelled; the result a worker still stores
    for it later (spilled to shared storage) is read by nobody and goes."""
    shared_dir = tmp_path / "shared"
    settings = _client_settings(redis_server, shared_dir)
    with CeleryExecutor(settings) as executor:
        future = executor.submit("summary", SummaryRequest(tuple(turns_from_text("text"))))
        task_id = _queued_task_id(settings, "llm")
        assert executor.cancel(future)
        late = {"value": encode_value(Summary("s" * 300_000, model="smollm2")), "worker": "w@h"}
        pointer = spill_if_big(late, task_id, shared_dir)
        executor.app.backend.store_result(task_id, pointer, "SUCCESS")
        spilled = shared_dir / pointer["result_file"]
        deadline = time.monotonic() + 30
        while spilled.exists():
            assert time.monotonic() < deadline, "the cancelled task's spilled result was left behind"
            time.sleep(0.05)
    assert isinstance(future.exception(timeout=0), TaskCancelled)


@pytest.mark.celery
def test_a_malformed_task_state_fails_its_future_and_the_waiter_goes_on(redis_server: RedisServer, tmp_path: Path) -> None:
    settings = _client_settings(redis_server, tmp_path / "shared")
    backend = Redis.from_url(settings.celery.result_backend)
    with CeleryExecutor(settings) as executor:
        garbled = executor.submit("summary", SummaryRequest(tuple(turns_from_text("text"))))
        backend.set(f"celery-task-meta-{_queued_task_id(settings, 'llm')}", b"{not json")
        with pytest.raises(StageError, match="state"):
            garbled.result(timeout=30)

        odd_progress = executor.submit("summary", SummaryRequest(tuple(turns_from_text("text"))), on_event=lambda event: None)
        executor.app.backend.store_result(_queued_task_id(settings, "llm"), ["not", "a", "dict"], "PROGRESS")
        with pytest.raises(StageError):
            odd_progress.result(timeout=30)

        good = executor.submit("summary", SummaryRequest(tuple(turns_from_text("text"))))
        summary = Summary("fine", model="smollm2")
        stats = {"wall_s": 1.0, "peak_rss_mb": 10.0, "peak_gpu_mb": None, "worker_pid": 1, "worker_task_number": 1}
        executor.app.backend.store_result(
            _queued_task_id(settings, "llm"), {"value": encode_value(summary), "stats": stats, "worker": "w@h"}, "SUCCESS"
        )
        assert good.result(timeout=30).value == summary, "the waiter still resolves later tasks"


@pytest.mark.celery
def test_a_task_celery_lost_is_published_again_then_fails_with_the_runtimes_error(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A pool process that died (WorkerLostError) or Celery's hard time limit (TimeLimitExceeded) is not the
    stage's fault: the task is published again, twice, then fails as a crash or a timeout (which the
    pipeline's retry policy understands), not as a StageError."""
    from billiard.exceptions import TimeLimitExceeded, WorkerLostError

    settings = _client_settings(redis_server, tmp_path / "shared")
    with CeleryExecutor(settings) as executor:
        for lost, expected in ((WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL)."), WorkerCrashed),
                               (TimeLimitExceeded(420.0), StageTimeout)):
            future = executor.submit("summary", SummaryRequest(tuple(turns_from_text("text"))))
            task_id = _queued_task_id(settings, "llm")
            for _ in range(2):
                executor.app.backend.mark_as_failure(task_id, lost)
                assert _queued_task_id(settings, "llm") == task_id, "published again under its id"
                assert not future.done()
            executor.app.backend.mark_as_failure(task_id, lost)
            with pytest.raises(expected):
                future.result(timeout=30)


@pytest.mark.celery
def test_the_completed_list_keeps_only_the_latest_tasks(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CeleryExecutor, "completed_kept", 3)
    with CeleryExecutor(_client_settings(redis_server, tmp_path / "shared")) as executor:
        futures = [executor.submit("summary", SummaryRequest(tuple(turns_from_text(f"text {i}")))) for i in range(5)]
        for future in futures:
            executor.cancel(future)
        assert len(executor.completed) == 3
        assert all(isinstance(future.exception(timeout=0), TaskCancelled) for future in futures)


@pytest.mark.celery
def test_a_task_waiting_on_a_redis_that_stays_away_fails_naming_the_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch must not hang on a Redis that never comes back: after ``REDIS_OUTAGE_S`` (4 min; 3 s here) its
    waiting tasks fail, and a batch marks their files failed, to be run again."""
    from isoscribe.distributed import waiter

    monkeypatch.setattr(waiter, "REDIS_OUTAGE_S", 3.0)
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        with CeleryExecutor(_client_settings(redis, tmp_path / "shared")) as executor:
            waiting = executor.submit("summary", SummaryRequest(tuple(turns_from_text("text"))))  # no worker runs it
            redis.stop()
            with pytest.raises(StageError, match="Redis was unreachable for 3 s"):
                waiting.result(timeout=60)
    finally:
        redis.stop()


@pytest.mark.celery
def test_spilled_result_file_goes_only_after_it_is_decoded(redis_server: RedisServer, tmp_path: Path) -> None:
    shared_dir = tmp_path / "shared"
    settings = _client_settings(redis_server, shared_dir)
    stats = {"wall_s": 1.0, "peak_rss_mb": 10.0, "peak_gpu_mb": None, "worker_pid": 1, "worker_task_number": 1}
    with CeleryExecutor(settings) as executor:
        broken = executor.submit("summary", SummaryRequest(tuple(turns_from_text("text"))))
        task_id = _queued_task_id(settings, "llm")
        undecodable = {"value": {"type": "isoscribe.transcript:NoSuchType", "data": {}}, "stats": stats,
                       "worker": "w@h", "padding": "x" * 300_000}
        pointer = spill_if_big(undecodable, task_id, shared_dir)
        executor.app.backend.store_result(task_id, pointer, "SUCCESS")
        with pytest.raises(AttributeError, match="NoSuchType"):
            broken.result(timeout=30)
        assert (shared_dir / pointer["result_file"]).is_file(), "a result that could not be decoded is kept"

        good = executor.submit("summary", SummaryRequest(tuple(turns_from_text("text"))))
        task_id = _queued_task_id(settings, "llm")
        summary = Summary("s" * 300_000, model="smollm2")
        pointer = spill_if_big({"value": encode_value(summary), "stats": stats, "worker": "w@h"}, task_id, shared_dir)
        executor.app.backend.store_result(task_id, pointer, "SUCCESS")
        assert good.result(timeout=30).value == summary
        assert not (shared_dir / pointer["result_file"]).exists(), "a decoded result's file is removed"


@pytest.mark.celery
def test_two_workers_share_a_batch(cluster, shared_data: Path, manifest: list[dict]) -> None:
    """While one worker runs a task of the batch, the other takes the next one: two run at once."""
    settings = cluster.settings
    cluster.start_workers(2)
    with CeleryExecutor(settings) as executor:
        futures = {clip: executor.submit("speech", SpeechRequest(str(shared_data / clip))) for clip in SHORT_CLIPS}
        assert len(_workers_running_at_once(settings, 2, 300)) == 2
        _all_done(futures, 300)
        _check_transcripts(futures, shared_data, manifest)
        assert len(executor.completed) == len(SHORT_CLIPS)
    assert not list((settings.celery.shared_dir / "audio").iterdir()), "staged audio left behind"


def _workers_running_at_once(settings: Settings, count: int, timeout_s: float) -> set[str]:
    """Wait until tasks run on ``count`` different workers at the same moment; return those workers."""
    backend = Redis.from_url(settings.celery.result_backend)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        metas = [json.loads(raw) for key in backend.scan_iter("celery-task-meta-*") if (raw := backend.get(key))]
        running = {meta["result"]["worker"] for meta in metas if meta["status"] in ("STARTED", "PROGRESS")}
        if len(running) >= count:
            return running
        time.sleep(0.05)
    pytest.fail(f"never {count} workers busy at once")


def _started_task(settings: Settings, timeout_s: float, states: tuple[str, ...] = ("STARTED", "PROGRESS")) -> tuple[str, dict]:
    """Wait until some task runs on a worker (is in one of ``states``); return its id and its meta (worker, pid)."""
    backend = Redis.from_url(settings.celery.result_backend)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for key in backend.scan_iter("celery-task-meta-*"):
            raw = backend.get(key)
            meta = json.loads(raw) if raw else None
            if meta and meta["status"] in states:
                return meta["task_id"], meta["result"]
        time.sleep(0.05)
    pytest.fail("no task started")


@pytest.mark.celery
def test_task_of_a_killed_worker_is_dispatched_again_and_finishes_once(
    cluster, shared_data: Path, manifest: list[dict], caplog: pytest.LogCaptureFixture
) -> None:
    """The whole worker tree dies with SIGKILL; its heartbeat stops and the task runs elsewhere in minutes, not hours."""
    settings = cluster.settings
    assert visibility_timeout_s(settings) > settings.isolation.asr_timeout_s >= 3600
    cluster.start_workers(2)
    with CeleryExecutor(settings) as executor:
        futures = {clip: executor.submit("speech", SpeechRequest(str(shared_data / clip))) for clip in LONGER_CLIPS}
        killed_task, running = _started_task(settings, 120)
        heartbeat = Redis.from_url(settings.celery.broker_url).pttl(f"isoscribe:worker-heartbeat:{running['worker']}")
        assert 0 < heartbeat <= settings.celery.heartbeat_timeout_s * 1000, "the worker keeps a heartbeat key with a TTL"
        victim = cluster.worker_running(running["worker"])
        victim.kill_everything()
        # visibility_timeout_s is over an hour: finishing at all means the heartbeat brought the task back.
        _all_done(futures, 600)
        _check_transcripts(futures, shared_data, manifest)
        done = executor.completed
        assert len(done) == len(LONGER_CLIPS) == len({d.task_id for d in done}), "each task resolved exactly once"
        assert all(d.ok for d in done)
        finished_by = next(d.worker for d in done if d.task_id == killed_task)
        assert not finished_by.startswith(victim.hostname_prefix), "the killed worker cannot have finished it"
        assert executor.redispatched == 1
    assert f"event=celery_task_redispatched task_id={killed_task}" in caplog.text
    assert "unacked_dropped=1" in caplog.text, "the dead worker's copy will not come back after visibility_timeout"
    assert Redis.from_url(settings.celery.broker_url).hlen("unacked") == 0


@pytest.mark.celery
def test_batch_survives_a_redis_restart(cluster, redis_server: RedisServer, shared_data: Path, manifest: list[dict]) -> None:
    settings = cluster.settings
    cluster.start_workers(2)
    with CeleryExecutor(settings) as executor:
        futures = {clip: executor.submit("speech", SpeechRequest(str(shared_data / clip))) for clip in SHORT_CLIPS}
        deadline = time.monotonic() + 120
        while not executor.completed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert executor.completed, "nothing finished before the restart"
        unfinished_at_restart = len(SHORT_CLIPS) - len(executor.completed)
        assert unfinished_at_restart >= 2, "two workers cannot have done six files by the first result"
        redis_server.restart()
        _all_done(futures, 300)
        _check_transcripts(futures, shared_data, manifest)
        assert len(executor.completed) == len(SHORT_CLIPS) == len({d.task_id for d in executor.completed})
        assert 1 <= executor.republished <= unfinished_at_restart, "the lost tasks were published again"


@pytest.mark.celery
def test_task_of_a_killed_pool_process_is_requeued_at_once(cluster: Cluster, shared_data: Path, manifest: list[dict]) -> None:
    """Only the Celery pool process dies: task_reject_on_worker_lost puts the task back without waiting."""
    settings = cluster.settings
    cluster.start_workers(2)
    with CeleryExecutor(settings) as executor:
        futures = {clip: executor.submit("speech", SpeechRequest(str(shared_data / clip))) for clip in LONGER_CLIPS}
        killed_task, running = _started_task(settings, 120)
        os.kill(running["pid"], signal.SIGKILL)
        _all_done(futures, 300)
        _check_transcripts(futures, shared_data, manifest)
        done = executor.completed
        assert len(done) == len(LONGER_CLIPS) == len({d.task_id for d in done})
        assert all(d.ok for d in done)
    log = "".join(worker.log_path.read_text(errors="replace") for worker in cluster.workers)
    assert "WorkerLostError" in log
    assert all(worker.process.poll() is None for worker in cluster.workers), "the worker itself lives on"


@pytest.mark.celery
def test_cancel_stops_the_stage_on_the_worker(cluster: Cluster, shared_data: Path, manifest: list[dict]) -> None:
    """Cancelling a running task kills its isolated worker: the Celery worker (concurrency 1) is free for the
    next task at once, and the cancelled task never finishes its stage."""
    settings = cluster.settings
    worker = cluster.start_workers(1)[0]
    with CeleryExecutor(settings) as executor:
        long_task = executor.submit("speech", SpeechRequest(str(shared_data / "long" / "sonnet001.wav"), diarize=True))
        cancelled_id, _ = _started_task(settings, 120, states=("PROGRESS",))
        assert executor.cancel(long_task)
        futures = {SHORT_CLIPS[0]: executor.submit("speech", SpeechRequest(str(shared_data / SHORT_CLIPS[0])))}
        _all_done(futures, 300)
        _check_transcripts(futures, shared_data, manifest)
    log = worker.log_path.read_text(errors="replace")
    assert f"event=celery_task_cancelled task_id={cancelled_id}" in log
    assert f"event=celery_task_done task_id={cancelled_id}" not in log, "the cancelled stage ran to its end"
    assert re.search(r"event=worker_exit stage=speech .*reason='?cancelled", log), "its isolated worker was killed"
    assert isinstance(long_task.exception(timeout=0), TaskCancelled)


@pytest.mark.celery
def test_task_state_carries_the_stages_progress(cluster: Cluster, shared_data: Path) -> None:
    from isoscribe.pipeline import Progress

    cluster.start_workers(1)
    received: list = []
    with CeleryExecutor(cluster.settings) as executor:
        request = SpeechRequest(str(shared_data / "long" / "sonnet001.wav"))
        result = executor.submit("speech", request, on_event=received.append).result(timeout=300)
    done_s = [event.done_s for event in received if isinstance(event, Progress) and event.stage == "speech"]
    assert done_s and done_s == sorted(done_s) and 0 < done_s[-1] <= result.value.duration_s + 0.01


@pytest.mark.celery
def test_known_speakers_samples_reach_the_worker_through_shared_storage(cluster: Cluster, tmp_path: Path) -> None:
    """The meeting and the voice samples are copied to shared storage when the task is sent: the worker
    names the speakers although the client's own files are gone by the time it starts."""
    from speaker_fixtures import render_meeting, render_references, spoken_by

    from isoscribe.benchmarks.meetings import script_turns
    from isoscribe.transcript import KnownSpeaker

    meeting = render_meeting(tmp_path / "client" / "meeting.wav")
    turns = script_turns(meeting)
    samples = render_references(tmp_path / "client" / "speakers")
    known = tuple(KnownSpeaker(name, str(path)) for name, path in samples.items())
    with CeleryExecutor(cluster.settings) as executor:
        future = executor.submit("speech", SpeechRequest(str(meeting), diarize=True, known_speakers=known))
        shutil.rmtree(tmp_path / "client")
        cluster.start_workers(1)
        transcript = future.result(timeout=300).value
    named = {(turn.speaker, spoken_by(turn.start, turn.end, turns)) for turn in transcript.speaker_turns}
    assert {speaker for speaker, said_by in named if said_by in ("alice", "bob")} == {"Alice", "Bob"}, named
    assert not list((cluster.settings.celery.shared_dir / "audio").iterdir()), "staged files left behind"


@pytest.mark.celery
def test_summary_runs_on_the_llm_queue(cluster: Cluster) -> None:
    cluster.start_workers(1)
    text = (
        "SPEAKER_00: We need the quarterly report by Friday. SPEAKER_01: I will draft it tomorrow "
        "and send it to Anna for review. SPEAKER_00: Good, and book the meeting room for Monday."
    )
    # Only the client asks for short answers: the worker computes with the client's llm settings.
    settings = cluster.settings.model_copy(update={"llm": cluster.settings.llm.model_copy(update={"max_tokens": 16, "threads": 1})})
    with CeleryExecutor(settings) as executor:
        result = executor.submit("summary", SummaryRequest(tuple(turns_from_text(text.replace(" SPEAKER_", "\nSPEAKER_"))))).result(timeout=300)
    assert isinstance(result.value, Summary)
    assert result.value.overview.strip() and result.value.warning is None
    assert result.stats.wall_s > 0


@pytest.mark.celery
def test_an_error_names_the_callers_file_not_its_staged_copy(cluster: Cluster, tmp_path: Path) -> None:
    """A worker decodes shared storage's copy (audio/<sha256>.wav): its error must still name the file the
    caller gave, as a local run does (the service hides that path from its clients; the batch reports it)."""
    from isoscribe.transcript import ProbeRequest

    cluster.start_workers(1)
    noise = tmp_path / "client" / "my meeting.wav"
    noise.parent.mkdir()
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    with CeleryExecutor(cluster.settings) as executor:
        error = executor.submit("probe", ProbeRequest(str(noise))).exception(timeout=120)
    assert isinstance(error, StageError) and error.exc_type == "AudioError", error
    assert str(noise) in error.message and "audio/" not in error.message, error.message
    assert str(cluster.settings.celery.shared_dir) not in str(error) + error.traceback_text


@pytest.mark.celery
def test_cancelling_a_queued_tasks_future_drops_the_task(cluster: Cluster, shared_data: Path, manifest: list[dict]) -> None:
    """A stopped batch cancels the Futures of its queued tasks (Cancellation.stop_starting): the task never runs
    and its staged audio goes; the running task's Future cannot be cancelled that way and finishes."""
    worker = cluster.start_workers(1)[0]
    with CeleryExecutor(cluster.settings) as executor:
        running = executor.submit("speech", SpeechRequest(str(shared_data / "long" / "sonnet001.wav")))
        queued = executor.submit("speech", SpeechRequest(str(shared_data / SHORT_CLIPS[1])))
        _started_task(cluster.settings, 120)
        deadline = time.monotonic() + 30
        while not running.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running.cancel(), "a started task's Future was cancelled"
        assert queued.cancel() and queued.cancelled()
        futures = {SHORT_CLIPS[0]: executor.submit("speech", SpeechRequest(str(shared_data / SHORT_CLIPS[0])))}
        _all_done(futures, 300)
        _check_transcripts(futures, shared_data, manifest)
        assert running.result(timeout=0).value.text
    log = worker.log_path.read_text(errors="replace")
    assert len(re.findall(r"event=celery_task_start \S+ stage=speech", log)) == 2, "the dropped task ran"
    assert not list((cluster.settings.celery.shared_dir / "audio").iterdir()), "staged files left behind"


@pytest.mark.celery
def test_a_diarized_file_in_pieces_runs_through_celery(cluster: Cluster, shared_data: Path) -> None:
    """A file longer than piece_s (300 s in use) with diarization: its pieces, then one task clustering their speaker
    vectors, whose answer (the file's speaker turns) must come back through Redis. The stitched transcript names the
    caller's file (its JSON's source, its RTTM's file id), not the pieces' staged copy."""
    from isoscribe.pipeline import FilePipeline, Policy
    from isoscribe.pipeline.stages import speech_request

    cluster.start_workers(1)
    settings = cluster.settings.model_copy(update={"diarization": cluster.settings.diarization.model_copy(
        update={"enabled": True, "num_speakers": 2})})
    request = speech_request(settings, shared_data / "diarization" / "sample.wav", piece_s=10.0)
    with CeleryExecutor(settings) as executor:
        transcript = FilePipeline(executor, Policy(piece_workers=2)).transcribe(request)
    assert transcript.timings_s["pieces"] > 1
    assert sorted(transcript.speakers) == ["SPEAKER_00", "SPEAKER_01"], transcript.speakers
    assert transcript.source == str(shared_data / "diarization" / "sample.wav")


@pytest.mark.celery
def test_a_speech_task_on_another_model_runs_that_model_on_the_worker(cluster: Cluster, shared_data: Path) -> None:
    cluster.start_workers(1)
    request = SpeechRequest(str(shared_data / "jfk" / "jfk.wav"), task="translate")
    with CeleryExecutor(cluster.settings) as executor:
        with pytest.raises(ValueError, match="unknown stage"):
            executor.submit("summary:base", request)
        translated = executor.submit("speech:base", request).result(timeout=300).value
        default = executor.submit("speech", SpeechRequest(str(shared_data / "jfk" / "jfk.wav"))).result(timeout=300).value
    assert (translated.model, default.model) == ("base", cluster.settings.asr.model)
    assert "country" in translated.text.lower()


@pytest.mark.celery
def test_run_command_with_celery_executor_does_every_file_once(
    cluster: Cluster, shared_data: Path, manifest: list[dict]
) -> None:
    """``isoscribe run --executor celery`` with a worker killed mid-batch: one done ledger row per file."""
    import sqlite3

    from isoscribe.ledger import LEDGER_NAME, FileStatus, Ledger

    cluster.start_workers(2)
    out_dir = cluster.tmp_path / "out"
    clips = [*LONGER_CLIPS, *SHORT_CLIPS[:3]]
    run_log = cluster.tmp_path / "run.log"
    run = subprocess.Popen(
        [sys.executable, "-m", "isoscribe.cli", "run", *(str(shared_data / clip) for clip in clips),
         "--out", str(out_dir), "--executor", "celery", "--no-summarize", "--formats", "json,txt",
         "--workers", "4", "--memory-budget", "100000", "--no-progress"],
        env=cluster.env, stdout=open(run_log, "wb"), stderr=subprocess.STDOUT,
    )
    try:
        _, running = _started_task(cluster.settings, 120)
        cluster.worker_running(running["worker"]).kill_everything()
        # visibility_timeout_s is over an hour: the run ends only if the dead worker's task was redispatched.
        assert run.wait(timeout=600) == 0, run_log.read_text()[-3000:]
        assert "event=celery_task_redispatched" in run_log.read_text(), "the dead worker's file waited for visibility_timeout"
    finally:
        if run.poll() is None:
            run.kill()
    with Ledger.in_dir(out_dir) as ledger:
        rows = ledger.rows()
    assert sorted(row.input_path for row in rows) == sorted(str(shared_data / clip) for clip in clips)
    assert all(row.status == FileStatus.DONE and row.attempts == 1 for row in rows), rows
    with sqlite3.connect(out_dir / LEDGER_NAME) as db:
        speech_runs = db.execute("SELECT key, COUNT(*) FROM stage_runs WHERE stage = 'speech' GROUP BY key").fetchall()
    assert sorted(count for _, count in speech_runs) == [1] * len(clips)
    references = {clip["path"]: clip["reference_text"] for clip in manifest}
    for row in rows:
        transcript = Transcript.from_dict(json.loads((out_dir / row.output_name / f"{row.output_name}.json").read_text()))
        clip = str(Path(row.input_path).relative_to(shared_data))
        assert _word_recall(transcript.text, references[clip]) > 0.6, (clip, transcript.text)


@pytest.mark.celery
def test_a_claim_asked_again_after_a_lost_reply_returns_the_same_job(redis_server: RedisServer, tmp_path: Path) -> None:
    """Redis ran the claim but the reply was lost: the retry must not leave that job running with nobody on it."""
    from isoscribe.service.job_store_redis import RedisJobStore
    from isoscribe.service.job_store import JobOptions

    store = RedisJobStore(redis_server.url(1))
    first = store.create(tmp_path / "a.wav", JobOptions())
    second = store.create(tmp_path / "b.wav", JobOptions())
    assert store.claim_next("claim-1").id == first.id
    retried = store.claim_next("claim-1")
    assert (retried.id, retried.attempts) == (first.id, 1)
    assert store.claim_next("claim-2").id == second.id
    assert store.claim_next("claim-3") is None
    store.close()


@pytest.mark.celery
def test_service_job_state_lives_in_redis(redis_server: RedisServer, tmp_path: Path) -> None:
    from isoscribe.service.job_store_redis import RedisJobStore
    from isoscribe.service.job_store import JobOptions

    first = RedisJobStore(redis_server.url(1))
    second = RedisJobStore(redis_server.url(1))
    older = first.create(tmp_path / "a.wav", JobOptions(model="tiny.en", diarize=True), "http://hook")
    newer = second.create(tmp_path / "b.wav", JobOptions(summarize=True))
    assert first.count("queued") == 2
    claimed = second.claim_next()
    assert (claimed.id, claimed.status, claimed.attempts) == (older.id, "running", 1)
    assert claimed.options == JobOptions(model="tiny.en", diarize=True) and claimed.webhook_url == "http://hook"
    first.set_progress(older.id, 0.9, "summary")
    assert not first.succeed(older.id, {"text": "stale"}, None, {}), "only the instance that claimed it records it"
    assert not first.fail(older.id, "x", "y", {}) and not first.requeue(older.id)
    second.set_progress(older.id, 0.5, "speech")
    assert first.get(older.id).stage == "speech" and first.get(older.id).progress == 0.5
    assert second.succeed(older.id, {"text": "hi"}, None, {"speech_s": 1.5})
    done = first.get(older.id)
    assert (done.status, done.transcript, done.summary, done.timings) == ("succeeded", {"text": "hi"}, None, {"speech_s": 1.5})
    assert first.cancel(older.id) is None, "a finished job cannot be cancelled"
    assert not first.fail(older.id, "x", "y", {}), "nor fail after it succeeded"
    assert first.claim_next().id == newer.id
    assert first.requeue(newer.id) and first.get(newer.id).status == "queued"
    assert second.claim_next().id == newer.id
    assert first.requeue_running() == [] and first.requeue_orphans() == [], "its owner is alive: no one takes it back"
    assert second.requeue_orphans() == [], "the sweep of a running instance leaves its own jobs alone"
    second.close()
    assert first.requeue_orphans() == [newer.id], "its owner stopped: the job goes back to the queue"
    assert first.count("queued") == 1 and first.count("running") == 0
    assert first.cancel(newer.id) == "queued" and first.get(newer.id).status == "cancelled"
    assert first.claim_next() is None and first.get("job_missing") is None
    assert first.owner_of(newer.id) == "" and first.owner_of("job_missing") is None
    assert [job.id for job in first.recent(5)] == [newer.id, older.id]
    assert first.add_revision(older.id, 0, {"text": "renamed"}, {"summary": "s"}) == 1
    assert first.add_revision(newer.id, 0, {"text": "x"}) is None, "only a succeeded job's result is replaced"
    assert (first.get(older.id).transcript, first.get(older.id).summary) == ({"text": "renamed"}, {"summary": "s"})
    assert first.delete(older.id) and first.get(older.id) is None and not first.delete(older.id)
    assert [job.id for job in first.recent(5)] == [newer.id] and first.count("succeeded") == 0
    first.close()


@pytest.mark.celery
def test_service_transcribes_through_celery_workers(
    cluster: Cluster, redis_server: RedisServer, shared_data: Path, manifest: list[dict]
) -> None:
    """``isoscribe serve`` with ``service.executor = celery``: the upload is transcribed by a Celery worker."""
    from service_support import ServerProcess, base_config

    worker = cluster.start_workers(1)[0]
    config = base_config(cluster.tmp_path / "service-data", executor="celery")
    server = ServerProcess(cluster.tmp_path, config, env={k: v for k, v in cluster.env.items() if k.startswith("ISOSCRIBE_CELERY")})
    server.start()
    try:
        clip = SHORT_CLIPS[0]
        with server.client() as client, open(shared_data / clip, "rb") as audio:
            response = client.post("/v1/audio/transcriptions", files={"file": ("clip.wav", audio)}, data={"model": "whisper-1"})
        assert response.status_code == 200, response.text
        reference = next(c["reference_text"] for c in manifest if c["path"] == clip)
        assert _word_recall(response.json()["text"], reference) > 0.6
        with server.client() as client, open(shared_data / clip, "rb") as audio:
            job_id = client.post("/v1/jobs", files={"file": ("clip.wav", audio)}).json()["id"]
        job_key = f"isoscribe:jobs:job:{job_id}"
        store = Redis.from_url(redis_server.url(1), decode_responses=True)
        deadline = time.monotonic() + 240
        while store.hget(job_key, "status") not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert store.hget(job_key, "status") == "succeeded", "the job's state is kept in Redis"
    finally:
        assert server.stop() == 0, server.log()
    assert not (cluster.tmp_path / "service-data" / "jobs.sqlite3").exists(), "no SQLite job store beside Celery"
    assert "celery_task_done" in worker.log_path.read_text(errors="replace"), "the worker did the transcription"


def test_a_worker_keeps_its_speech_pool_when_clients_differ_only_in_what_speech_does_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import isoscribe.executors
    from isoscribe.distributed import worker as worker_side

    built: list[str] = []

    class CountedPool:
        def __init__(self, spec: object, *args: object, **kwargs: object) -> None:
            built.append(str(spec))

        def shutdown(self) -> None:
            pass

    monkeypatch.setattr(isoscribe.executors, "pool_from_settings", CountedPool)
    monkeypatch.setattr(worker_side, "_worker_settings", load_settings())
    monkeypatch.setattr(worker_side, "_pools", {})
    service, batch = (json.loads(json.dumps(client_sections(load_settings(overrides={"llm": {"max_tokens": tokens}}))))
                      for tokens in (384, 200))
    for sections in (service, batch, service, batch):
        worker_side._pool("speech", worker_side.effective_settings(sections))
    assert len(built) == 1
    worker_side._pool("speech", worker_side.effective_settings(
        json.loads(json.dumps(client_sections(load_settings(overrides={"asr": {"beam_size": 2}}))))
    ))
    assert len(built) == 2, "what speech reads still rebuilds it"


def test_a_broker_that_is_down_at_start_is_given_minutes_not_an_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    import kombu.utils.functional
    from kombu.exceptions import OperationalError

    from isoscribe.distributed.client import CeleryExecutor

    waited: list[float] = []
    monkeypatch.setattr(kombu.utils.functional, "sleep", waited.append)  # the back-off counted, not slept
    closed = f"redis://127.0.0.1:{free_port()}"
    settings = load_settings(overrides={"celery": {"broker_url": f"{closed}/0", "result_backend": f"{closed}/1"}})
    with pytest.raises(OperationalError):
        CeleryExecutor(settings)
    assert 60 < sum(waited) < 600, f"{sum(waited):.0f} s of back-off"


@pytest.mark.celery
def test_tasks_waiting_with_no_worker_running_are_said_to(cluster: Cluster, shared_data: Path, caplog) -> None:
    """With no worker's heartbeat in Redis, a task waits: after the heartbeat timeout a warning says why (a batch
    waited without a word); once a worker starts, the task runs."""
    from isoscribe.transcript import ProbeRequest

    caplog.set_level(logging.INFO, logger="isoscribe")
    celery = cluster.settings.celery.model_copy(update={"heartbeat_timeout_s": 1.0})
    settings = cluster.settings.model_copy(update={"celery": celery})
    with CeleryExecutor(settings) as executor:
        future = executor.submit("probe", ProbeRequest(str(shared_data / "jfk" / "jfk.wav")))
        deadline = time.monotonic() + 30
        while "event=celery_no_worker" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "event=celery_no_worker waiting=1" in caplog.text and "isoscribe worker" in caplog.text
        assert not future.done()
        cluster.start_workers(1)
        assert future.result(timeout=120).value.duration_s == pytest.approx(11.0, abs=0.1)


@pytest.mark.celery
def test_a_dead_clients_leftovers_in_shared_storage_go_a_day_later(redis_server: RedisServer, tmp_path: Path) -> None:
    """Staged audio whose holds expired, a copy cut short and a spilled result nobody read stay after a client is
    killed; the next client removes them once a day old, and keeps what is newer or still held."""
    from isoscribe.distributed.staging import STAGED_KEY, sweep_leftovers

    shared = tmp_path / "shared"
    (shared / "audio").mkdir(parents=True)
    (shared / "results").mkdir()
    files = {name: shared / name for name in ("audio/old.wav", "audio/.old.wav.1234.partial", "results/t1.json",
                                             "audio/held.wav", "audio/new.wav", "results/t2.json")}
    day_ago = time.time() - 25 * 3600
    for name, path in files.items():
        path.write_bytes(b"x")
        if "new" not in name and "t2" not in name:
            os.utime(path, (day_ago, day_ago))
    broker = Redis.from_url(redis_server.url(0))
    broker.hset(STAGED_KEY + "audio/held.wav", "a-client", 1)
    assert sweep_leftovers(broker, shared) == 3
    assert sorted(name for name, path in files.items() if path.exists()) == [
        "audio/held.wav", "audio/new.wav", "results/t2.json"]
    files["results/t1.json"].write_bytes(b"x")
    os.utime(files["results/t1.json"], (day_ago, day_ago))
    celery = {"broker_url": redis_server.url(0), "result_backend": redis_server.url(1), "shared_dir": str(shared)}
    with CeleryExecutor(load_settings(overrides={"celery": celery})):
        assert not files["results/t1.json"].exists(), "a client sweeps as it starts"
