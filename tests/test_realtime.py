"""Live transcription over /v1/realtime, driven by the official ``openai`` client against a real server.

The meeting is streamed at real-time pace, as the issue's acceptance asks (faster, the base model falls
behind on a shared 2-core machine and the test would measure the machine); latency is measured by
``isoscribe bench realtime``, not asserted here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import websockets.sync.client
from service_support import API_KEY, ServerProcess, base_config, words
from speaker_fixtures import MEETING, render_meeting

from isoscribe.benchmarks.realtime_client import connect, pcm16_of, stream_pcm16

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("realtime")
    running = ServerProcess(tmp_path, base_config(tmp_path / "data", max_realtime_sessions=3)).start()
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def base_server(tmp_path_factory: pytest.TempPathFactory):
    """The multilingual base model: on the rendered meeting tiny.en finds 84-88 % of the words whether
    live or from the file (measured), too close to the 85 % the issue asks of a live session."""
    tmp_path = tmp_path_factory.mktemp("realtime-base")
    config = base_config(tmp_path / "data")
    config["asr"]["model"] = "base"
    running = ServerProcess(tmp_path, config).start()
    yield running
    assert running.stop() == 0, running.log()


def found_share(reference: str, hypothesis: str) -> float:
    """The share of reference words the hypothesis contains (each hypothesis word counts once)."""
    wanted, got = Counter(words(reference)), Counter(words(hypothesis))
    return sum(min(count, got[word]) for word, count in wanted.items()) / sum(wanted.values())


def _raw_socket(server: ServerProcess, **kwargs):
    url = server.url.replace("http", "ws", 1) + "/v1/realtime?intent=transcription"
    return websockets.sync.client.connect(url, **kwargs)


def _until(socket, wanted: str, limit: int = 200) -> list[dict]:
    """Events up to and including the first of type ``wanted``."""
    seen = []
    for _ in range(limit):
        seen.append(json.loads(socket.recv(timeout=120)))
        if seen[-1]["type"] == wanted:
            return seen
    raise AssertionError(f"no {wanted} in {[e['type'] for e in seen]}")


def test_three_speaker_meeting_streamed_through_the_official_client(base_server: ServerProcess, tmp_path: Path) -> None:
    pcm16 = pcm16_of(render_meeting(tmp_path / "meeting.wav"), 24000)
    record = stream_pcm16(base_server.url, API_KEY, pcm16, 24000, pace=1.0)
    reference = " ".join(line for _, line in MEETING)
    assert found_share(reference, record.text) >= 0.85, record.text
    assert not record.of_type("error"), record.of_type("error")
    committed = [e.data["item_id"] for e in record.of_type("input_audio_buffer.committed")]
    started = [e.data["item_id"] for e in record.of_type("input_audio_buffer.speech_started")]
    completed = record.of_type("conversation.item.input_audio_transcription.completed")
    assert len(committed) >= 3 and committed == started == [e.data["item_id"] for e in completed]
    revised, all_deltas = 0, []
    for event in completed:  # deltas add up to the transcript: its decode continues the words they sent
        deltas = "".join(e.data["delta"] for e in record.of_type("conversation.item.input_audio_transcription.delta")
                         if e.data["item_id"] == event.data["item_id"])
        assert deltas, event.data
        revised += deltas != " ".join(event.data["transcript"].split())
        all_deltas.append(deltas)
        assert event.data["usage"]["type"] == "duration" and event.data["usage"]["seconds"] > 0
    assert revised <= 1, revised  # one allowed: speech the first decode skipped may be recovered before them
    transcripts = " ".join(event.data["transcript"] for event in completed)
    assert found_share(" ".join(all_deltas), transcripts) >= 0.9, (all_deltas, transcripts)
    with base_server.client() as client:  # the live workers hold the model too, and say so
        listed = client.get("/v1/models/base").json()
    live = [worker for worker in listed["workers"] if worker["stage"] == "realtime"]
    assert listed["loaded"] and live and all(worker["rss_mb"] > 100 for worker in live), listed


def test_long_utterance_sends_partial_deltas_before_it_ends(server: ServerProcess, jfk_24k: bytes) -> None:
    """jfk.wav at a stricter silence setting is one 11 s utterance, spoken at real-time pace: partial
    decodes deliver deltas while it is still spoken. A delta needs two partial decodes that agree; under
    load they may take longer than jfk lasts, so the speaker goes on (jfk once more: still one utterance,
    shorter than max_utterance_s) until a delta has come, and only then falls silent."""
    session = {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 24000},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 1500}}}}
    events: list[dict] = []
    with connect(server.url, API_KEY) as connection:
        connection.session.update(session=session)
        threading.Thread(target=_record, args=(connection, events), daemon=True).start()
        _speak(connection, jfk_24k)
        if not _of(events, "conversation.item.input_audio_transcription.delta"):
            _speak(connection, jfk_24k)
        for _ in range(120):  # silence, a second at a time as a microphone sends it, until the utterance completes
            if _of(events, "conversation.item.input_audio_transcription.completed"):
                break
            _speak(connection, bytes(10 * _CHUNK_BYTES))
    completed = _of(events, "conversation.item.input_audio_transcription.completed")[0]
    assert "country" in words(completed["transcript"])
    item_id = completed["item_id"]
    first_stop = next(i for i, e in enumerate(events) if e["type"] == "input_audio_buffer.speech_stopped")
    early = [e for e in events[:first_stop]
             if e["type"] == "conversation.item.input_audio_transcription.delta" and e["item_id"] == item_id]
    assert early, [e["type"] for e in events]


_CHUNK_BYTES = 2400 * 2
"""0.1 s of PCM16 at 24 kHz."""


def _speak(connection, pcm16: bytes) -> None:
    """Send ``pcm16`` in 0.1 s chunks at real-time pace, as a microphone does."""
    started = time.monotonic()
    for index, position in enumerate(range(0, len(pcm16), _CHUNK_BYTES)):
        time.sleep(max(0.0, started + index * 0.1 - time.monotonic()))
        connection.input_audio_buffer.append(audio=base64.b64encode(pcm16[position : position + _CHUNK_BYTES]).decode())


def _record(connection, events: list[dict]) -> None:
    with contextlib.suppress(Exception):  # the connection closed: nothing more to record
        while True:
            events.append(json.loads(connection.recv_bytes()))


def _of(events: list[dict], kind: str) -> list[dict]:
    return [e for e in list(events) if e["type"] == kind]


def test_manual_commit_at_16_khz_and_the_older_session_update(server: ServerProcess, shared_data: Path) -> None:
    pcm16 = pcm16_of(shared_data / "jfk" / "jfk.wav", 16000)
    with connect(server.url, API_KEY) as connection:
        connection.send({"type": "transcription_session.update",
                         "session": {"input_audio_transcription": {"model": "whisper-1"}, "turn_detection": None}})
        assert connection.recv().type == "session.created"
        updated = json.loads(connection.recv_bytes())
        assert updated["type"] == "transcription_session.updated" and updated["session"]["turn_detection"] is None
        connection.session.update(session={"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": None}}})
        assert connection.recv().session.audio.input.format.rate == 16000
        for start in range(0, len(pcm16), 32000):
            connection.input_audio_buffer.append(audio=base64.b64encode(pcm16[start : start + 32000]).decode())
        connection.input_audio_buffer.commit()
        kinds = []
        for event in connection:
            kinds.append(event.type)
            if event.type == "conversation.item.input_audio_transcription.completed":
                break
    assert "input_audio_buffer.speech_started" not in kinds and kinds[0] == "input_audio_buffer.committed"
    assert {"ask", "country"} <= set(words(event.transcript))


def test_bad_client_events_get_error_events_and_the_session_goes_on(server: ServerProcess, jfk_24k: bytes) -> None:
    with _raw_socket(server, additional_headers={"Authorization": f"Bearer {API_KEY}"}) as socket:
        assert json.loads(socket.recv(timeout=60))["type"] == "session.created"
        socket.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "mine"}))
        empty = _until(socket, "error")[-1]["error"]
        assert empty["code"] == "input_audio_buffer_commit_empty" and empty["event_id"] == "mine"
        socket.send(json.dumps({"type": "input_audio_buffer.append", "audio": "not base64!"}))
        assert _until(socket, "error")[-1]["error"]["param"] == "audio"
        socket.send(json.dumps({"type": "response.create"}))
        assert _until(socket, "error")[-1]["error"]["code"] == "unknown_event"
        socket.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
        assert "transcription" in _until(socket, "error")[-1]["error"]["message"]
        socket.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {
            "input": {"transcription": {"model": "no-such-model"}}}}}))
        assert _until(socket, "error")[-1]["error"]["code"] == "model_not_found"
        socket.send("{")
        assert _until(socket, "error")[-1]["error"]["code"] == "invalid_json"
        socket.send(jfk_24k[:4800])  # raw audio in a binary frame: an error event, not a closed session
        assert _until(socket, "error")[-1]["error"]["code"] == "invalid_json"
        socket.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "as-bytes"}).encode())
        assert _until(socket, "error")[-1]["error"]["event_id"] == "as-bytes", "JSON in a binary frame is read"
        socket.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(jfk_24k[:48000]).decode()}))
        socket.send(json.dumps({"type": "input_audio_buffer.clear"}))
        assert _until(socket, "input_audio_buffer.cleared")
        socket.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(jfk_24k).decode()}))
        socket.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(48000 * 2)).decode()}))
        completed = _until(socket, "conversation.item.input_audio_transcription.completed")[-1]
        assert words(completed["transcript"])


def test_api_key_in_header_or_browser_subprotocol(server: ServerProcess) -> None:
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        _raw_socket(server).close()
    assert refused.value.response.status_code == 401
    assert b"invalid_api_key" in refused.value.response.body
    with pytest.raises(websockets.exceptions.InvalidStatus):
        connect(server.url, "wrong-key").__enter__()
    protocols = ["realtime", f"openai-insecure-api-key.{API_KEY}"]
    with _raw_socket(server, subprotocols=protocols) as socket:
        assert socket.subprotocol == "realtime"
        assert json.loads(socket.recv(timeout=60))["type"] == "session.created"


def test_sessions_beyond_the_limit_are_refused_with_an_error(server: ServerProcess) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    held = [_raw_socket(server, additional_headers=headers) for _ in range(3)]
    try:
        for socket in held:
            assert json.loads(socket.recv(timeout=60))["type"] == "session.created"
        with connect(server.url, API_KEY) as refused:
            error = refused.recv()
            assert error.type == "error" and error.error.code == "session_limit_reached"
            assert "max_realtime_sessions" in error.error.message
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                refused.recv()
            assert closed.value.rcvd.code == 1013  # try again later
    finally:
        for socket in held:
            socket.close()
