"""Live sessions under faults and limits: a killed worker, the session length, a client that does not
read, and the server's memory over many sessions.

The server's realtime stage is tests/stages/realtime_fault_stage.py: the real stage, whose worker
kills itself (SIGKILL) on an utterance whose prompt says "sigkill".
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from pathlib import Path

import psutil
import pytest
import websockets.sync.client
from service_support import API_KEY, ServerProcess, base_config, words

from isoscribe.benchmarks.realtime_client import connect

pytestmark = pytest.mark.slow

SESSION_S = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("realtime-limits")
    config = base_config(tmp_path / "data", max_realtime_sessions=2, max_realtime_session_s=SESSION_S)
    config["isolation"]["realtime_stage"] = "realtime_fault_stage"
    running = ServerProcess(tmp_path, config).start()
    yield running
    assert running.stop() == 0, running.log()


def _manual(connection, prompt: str = "") -> None:
    connection.session.update(session={"type": "transcription", "audio": {"input": {
        "transcription": {"model": "whisper-1", "prompt": prompt}, "turn_detection": None}}})


def _commit_and_wait(connection, pcm16: bytes) -> list:
    """Append and commit ``pcm16``; the events up to its completed or failed one."""
    connection.input_audio_buffer.append(audio=base64.b64encode(pcm16).decode())
    connection.input_audio_buffer.commit()
    seen = []
    for event in connection:
        seen.append(event)
        if event.type in ("conversation.item.input_audio_transcription.completed",
                          "conversation.item.input_audio_transcription.failed"):
            if event.type.endswith("failed"):
                seen.append(connection.recv())  # the error event that follows it
            return seen
    raise AssertionError(f"the session closed after {[e.type for e in seen]}")


def test_killed_worker_costs_one_utterance_and_the_session_goes_on(server: ServerProcess, jfk_24k: bytes) -> None:
    with connect(server.url, API_KEY) as connection:
        _manual(connection, prompt="sigkill")
        lost = _commit_and_wait(connection, jfk_24k)
        errors = [event for event in lost if event.type == "error"]
        assert len(errors) == 1 and errors[0].error.code == "worker_crashed", lost
        assert "signal 9" in errors[0].error.message
        _manual(connection)
        after = _commit_and_wait(connection, jfk_24k)
    assert not [event for event in after if event.type == "error"]
    assert {"ask", "country"} <= set(words(after[-1].transcript))


def test_session_ends_at_its_maximum_length_with_an_error(server: ServerProcess) -> None:
    with connect(server.url, API_KEY) as connection:
        assert connection.recv().type == "session.created"
        expired = connection.recv()  # nothing is sent: the session's clock runs out
        assert expired.type == "error" and expired.error.code == "session_expired"
        assert "max_realtime_session_s" in expired.error.message
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            connection.recv()


@pytest.fixture
def unhurried_server(tmp_path: Path):
    """Sessions as long as the default allows: under load, reaching the point where the server stops
    reading can take longer than the other tests' 30 s sessions, whose expiry would then free the sender."""
    running = ServerProcess(tmp_path, base_config(tmp_path / "data")).start()
    yield running
    assert running.stop() == 0, running.log()


@pytest.mark.xfail(
    reason="back-pressure not reliable yet: in a clean-clone run the server closed the socket without a close frame",
    strict=False,
)
def test_client_that_does_not_read_is_slowed_down_not_buffered(
    unhurried_server: ServerProcess, jfk_24k: bytes
) -> None:
    """Ten minutes of speech sent as fast as possible, no event read: the server stops reading the
    socket (VAD lag, decode queue and outbox are bounded), so the sender blocks and the server's memory
    stays put; once the client reads, the server reads again."""
    process = psutil.Process(unhurried_server.pid)
    speech = (jfk_24k + bytes(24000)) * 50
    chunks = [base64.b64encode(speech[i : i + 48000]).decode() for i in range(0, len(speech), 48000)]
    url = unhurried_server.url.replace("http", "ws", 1) + "/v1/realtime?intent=transcription"
    sent = [0]
    with websockets.sync.client.connect(url, additional_headers={"Authorization": f"Bearer {API_KEY}"},
                                        max_size=None) as socket:
        rss_before_mb = process.memory_info().rss / 2**20

        def send_all() -> None:
            with contextlib.suppress(websockets.exceptions.ConnectionClosed):
                for chunk in chunks:
                    socket.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
                    sent[0] += 1

        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        assert _stalls(sent), "the sender never blocked"
        stalled_at = sent[0]
        assert stalled_at < len(chunks)
        grown_mb = process.memory_info().rss / 2**20 - rss_before_mb
        assert grown_mb < 40, f"server RSS grew {grown_mb:.0f} MB while the client did not read"
        completed = 0
        while completed < 3 or sent[0] == stalled_at:
            message = json.loads(socket.recv(timeout=120))
            completed += message["type"] == "conversation.item.input_audio_transcription.completed"
    sender.join(timeout=30)


def _stalls(counter: list[int], quiet_s: float = 3.0, limit_s: float = 120.0) -> bool:
    """True once ``counter[0]`` has not moved for ``quiet_s``."""
    end = time.monotonic() + limit_s
    last, since = counter[0], time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.2)
        if counter[0] != last:
            last, since = counter[0], time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return True
    return False


def test_server_memory_is_flat_over_100_sessions(server: ServerProcess, jfk_24k: bytes) -> None:
    process = psutil.Process(server.pid)
    rss_mb = []
    for index in range(100):
        with connect(server.url, API_KEY) as connection:
            _manual(connection)
            events = _commit_and_wait(connection, jfk_24k[: 3 * 48000])
            assert events[-1].type.endswith("completed") and words(events[-1].transcript), events
        if index in (9, 99):
            time.sleep(1.0)  # the server notices the close and releases the session
            rss_mb.append(process.memory_info().rss / 2**20)
    grown_mb = rss_mb[1] - rss_mb[0]
    print(f"server RSS after 10 sessions {rss_mb[0]:.1f} MB, after 100 {rss_mb[1]:.1f} MB")
    # a leaked session (its 3 s buffer, 144 kB, and its objects) would add up to over 13 MB over 90 sessions
    assert grown_mb < 8, f"server RSS {rss_mb[0]:.1f} -> {rss_mb[1]:.1f} MB over 90 sessions"
