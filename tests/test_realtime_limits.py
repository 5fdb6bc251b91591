"""Live sessions under faults and limits: a killed worker, the session length, a client that does not
read, and the server's memory over many sessions.

The server's realtime stage is tests/stages/realtime_fault_stage.py: the real stage, whose worker
kills itself (SIGKILL) on an utterance whose prompt says "sigkill".
"""

from __future__ import annotations

import base64
import contextlib
import inspect
import json
import threading
import time
from pathlib import Path

import psutil
import pytest
import uvicorn
import websockets.sync.client
from isolation_support import wait_for
from service_support import API_KEY, ServerProcess, base_config, words

from isoscribe.benchmarks.realtime_client import connect
from isoscribe.service.realtime_session import SessionLimits

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


@pytest.fixture(scope="module")
def unhurried_server(tmp_path_factory: pytest.TempPathFactory):
    """Sessions as long as the default allows: a session held back by the server, or under load by the
    machine, must not expire (the other tests' 30 s sessions would, and the expiry would free the sender)."""
    tmp_path = tmp_path_factory.mktemp("realtime-unhurried")
    config = base_config(tmp_path / "data")
    config["isolation"]["realtime_stage"] = "realtime_fault_stage"
    running = ServerProcess(tmp_path, config).start()
    yield running
    assert running.stop() == 0, running.log()


_UVICORN_DEFAULTS = inspect.signature(uvicorn.Config).parameters
KEEPALIVE_WINDOW_S = _UVICORN_DEFAULTS["ws_ping_interval"].default + _UVICORN_DEFAULTS["ws_ping_timeout"].default
"""When uvicorn's default keepalive drops a peer whose pong is late: the first ping, then its timeout."""


def _flooding_socket(server: ServerProcess):
    """A raw client without keepalive of its own: it floods on purpose, and its pings would wait behind
    the audio the server has not read, as the server's pongs would."""
    url = server.url.replace("http", "ws", 1) + "/v1/realtime?intent=transcription"
    return websockets.sync.client.connect(url, additional_headers={"Authorization": f"Bearer {API_KEY}"},
                                          max_size=None, ping_interval=None, close_timeout=120)


class _Sender:
    """Sends ``messages`` from a thread as fast as the socket takes them, counting them, until stopped."""

    def __init__(self, socket, messages: list[str]) -> None:
        self.socket, self.messages = socket, messages
        self.sent = [0]
        self.closed: websockets.exceptions.ConnectionClosed | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._send_all, daemon=True)
        self.thread.start()

    def _send_all(self) -> None:
        try:
            for message in self.messages:
                if self.stop.is_set():
                    return
                self.socket.send(message)
                self.sent[0] += 1
        except websockets.exceptions.ConnectionClosed as closed:
            self.closed = closed


def _close_and_drain(socket, sender: _Sender) -> list[dict]:
    """Stop the sender, close, and read the events still on their way up to the server's close frame:
    a session closed properly answers the client's close (code 1000), not a dropped connection."""
    sender.stop.set()

    def close() -> None:
        sender.thread.join()  # its last send returns once the server reads again
        socket.close()

    closer = threading.Thread(target=close, daemon=True)
    closer.start()
    rest = []
    with contextlib.suppress(websockets.exceptions.ConnectionClosedOK):
        while True:
            rest.append(json.loads(socket.recv(timeout=120)))
    closer.join(timeout=120)
    assert socket.close_code == 1000, socket.close_code
    return rest


def test_client_that_does_not_read_is_slowed_down_not_buffered(
    unhurried_server: ServerProcess, jfk_24k: bytes, tmp_path: Path
) -> None:
    """Ten minutes of speech sent as fast as possible, no event read, while the session's decodes are
    held (as on a machine that decodes slower than the client sends): the server stops reading the
    socket once the VAD lag and the decode queue are full, so the sender blocks and the server's memory
    stays put. Once the decodes go on and the client reads, the server reads again, and the session
    closes properly. (Held, because on a quiet machine the decodes keep pace with any sender: the
    server then reads everything, at the decodes' pace, which is no buffering either.)"""
    release = tmp_path / "release"
    process = psutil.Process(unhurried_server.pid)
    speech = (jfk_24k + bytes(24000)) * 50
    hold = {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "transcription": {"model": "whisper-1", "prompt": f"hold:{release}"}}}}}
    messages = [json.dumps(hold)]
    messages += [json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(speech[i : i + 48000]).decode()})
                 for i in range(0, len(speech), 48000)]
    try:
        with _flooding_socket(unhurried_server) as socket:
            rss_before_mb = process.memory_info().rss / 2**20
            sender = _Sender(socket, messages)
            assert _stalls(sender.sent), "the sender never blocked"
            stalled_at = sender.sent[0]
            assert stalled_at < len(messages) // 2, f"the server read {stalled_at} of {len(messages)} chunks"
            grown_mb = process.memory_info().rss / 2**20 - rss_before_mb
            assert grown_mb < 40, f"server RSS grew {grown_mb:.0f} MB while the client did not read"
            release.touch()
            completed = 0
            while completed < 3 or sender.sent[0] == stalled_at:
                message = json.loads(socket.recv(timeout=120))
                assert message["type"] != "error", message
                completed += message["type"] == "conversation.item.input_audio_transcription.completed"
            _close_and_drain(socket, sender)
    finally:
        release.touch()


def test_session_held_back_past_the_websocket_keepalive_goes_on(
    unhurried_server: ServerProcess, jfk_24k: bytes, tmp_path: Path
) -> None:
    """The server stops reading for longer than a WebSocket keepalive allows for a pong (its decodes are
    held: the worker waits for a file), while the client goes on sending. The client's pong waits behind
    the audio the server has not read, so a late pong is the server's own doing: the session must not
    be dropped for it. Once the decodes go on, every commit completes and the session closes properly."""
    release = tmp_path / "release"
    utterance = base64.b64encode(jfk_24k[: 2 * 48000]).decode()
    commits = 2 + SessionLimits().pending_decodes  # one decoding, a full queue, and one that waits for room
    messages = [json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "transcription": {"model": "whisper-1", "prompt": f"hold:{release}"}, "turn_detection": None}}}})]
    for _ in range(commits):
        messages += [json.dumps({"type": "input_audio_buffer.append", "audio": utterance}),
                     json.dumps({"type": "input_audio_buffer.commit"})]
    speech = [base64.b64encode(jfk_24k[i : i + 48000]).decode() for i in range(0, len(jfk_24k), 48000)]
    for index in range(1000):  # far more than socket buffers hold: speech, which deflate cannot shrink much
        messages += [json.dumps({"type": "input_audio_buffer.append", "audio": speech[index % len(speech)]}),
                     json.dumps({"type": "input_audio_buffer.clear"})]
    try:
        with _flooding_socket(unhurried_server) as socket:
            sender = _Sender(socket, messages)
            time.sleep(KEEPALIVE_WINDOW_S + 10)  # the scenario's length, past the keepalive's deadline
            assert sender.sent[0] < len(messages), "the server never stopped reading"
            assert sender.thread.is_alive(), f"the connection was dropped while the server held the client back: {sender.closed!r}"
            sender.stop.set()
            release.touch()
            completed = 0
            while completed < commits:
                message = json.loads(socket.recv(timeout=120))
                assert message["type"] != "error", message
                completed += message["type"] == "conversation.item.input_audio_transcription.completed"
            rest = _close_and_drain(socket, sender)
        assert not [event for event in rest if event["type"] == "error"], rest
    finally:
        release.touch()


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

    def closed() -> int:  # the whole log: ServerProcess.log() is only its tail
        return server.log_path.read_text(errors="replace").count("event=realtime_session_closed")

    closed_before = closed()
    for index in range(100):
        with connect(server.url, API_KEY) as connection:
            _manual(connection)
            events = _commit_and_wait(connection, jfk_24k[: 3 * 48000])
            assert events[-1].type.endswith("completed") and words(events[-1].transcript), events
        if index in (9, 99):
            released = closed_before + index + 1
            assert wait_for(lambda: closed() >= released, timeout_s=120), server.log()
            rss_mb.append(process.memory_info().rss / 2**20)
    grown_mb = rss_mb[1] - rss_mb[0]
    print(f"server RSS after 10 sessions {rss_mb[0]:.1f} MB, after 100 {rss_mb[1]:.1f} MB")
    # a leaked session (its 3 s buffer, 144 kB, and its objects) would add up to over 13 MB over 90 sessions
    assert grown_mb < 8, f"server RSS {rss_mb[0]:.1f} -> {rss_mb[1]:.1f} MB over 90 sessions"
