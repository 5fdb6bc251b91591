"""The pieces of a live session that need no model: turn detection, the byte buffer, session updates."""

from __future__ import annotations

import asyncio
import base64
import json
from types import SimpleNamespace

import pytest

from isoscribe.config import load_settings
from isoscribe.executors import PooledExecutor
from isoscribe.models import model_info
from isoscribe.service import realtime
from isoscribe.service.realtime_audio import AudioBuffer
from isoscribe.service.realtime_protocol import ProtocolError, SessionConfig, updated_config
from isoscribe.service.realtime_session import LiveSession, SessionClosed, SessionLimits
from isoscribe.service.realtime_turns import SpeechStarted, SpeechStopped, TurnDetection, TurnDetector
from isoscribe.stages.realtime import UtteranceText, VoiceActivity, VoiceActivityRequest

FRAME_S = 0.032
SERVED = ("whisper-1", "tiny.en")


def _turns(detector: TurnDetector, probabilities: list[float]) -> list:
    found = [detector.feed(i * FRAME_S, FRAME_S, p) for i, p in enumerate(probabilities)]
    return [(i, turn) for i, turn in enumerate(found) if turn is not None]


def test_speech_starts_with_its_prefix_padding_and_stops_after_the_silence() -> None:
    detector = TurnDetector(TurnDetection(threshold=0.5, prefix_padding_s=0.3, silence_s=0.5))
    turns = _turns(detector, [0.1] * 20 + [0.9] * 40 + [0.2] * 30)
    (start_frame, started), (stop_frame, stopped) = turns
    assert isinstance(started, SpeechStarted) and started.start_s == pytest.approx(20 * FRAME_S - 0.3)
    assert start_frame == 22  # three frames confirm speech
    assert isinstance(stopped, SpeechStopped)
    assert stopped.end_s - 60 * FRAME_S == pytest.approx(16 * FRAME_S)  # the first frame end past 0.5 s of silence
    assert not detector.speaking


def test_a_click_is_not_a_turn_and_a_short_dip_does_not_end_one() -> None:
    detector = TurnDetector(TurnDetection(silence_s=0.5))
    assert _turns(detector, [0.1] * 10 + [0.95, 0.95] + [0.1] * 40) == []
    turns = _turns(detector, [0.9] * 20 + [0.1] * 10 + [0.9] * 20 + [0.4] * 5 + [0.9] * 5)
    assert [type(turn) for _, turn in turns] == [SpeechStarted]  # 0.32 s dips, 0.4 is above the hysteresis


def test_an_utterance_is_closed_at_the_maximum_length_and_the_next_does_not_start_earlier() -> None:
    detector = TurnDetector(TurnDetection(max_utterance_s=2.0, prefix_padding_s=0.3))
    turns = _turns(detector, [0.9] * 100)
    assert isinstance(turns[1][1], SpeechStopped) and turns[1][1].end_s == pytest.approx(2.0, abs=FRAME_S)
    assert isinstance(turns[2][1], SpeechStarted) and turns[2][1].start_s == pytest.approx(turns[1][1].end_s)


def test_a_pause_of_half_the_closing_silence_is_noticed_and_speech_ends_it() -> None:
    detector = TurnDetector(TurnDetection(silence_s=0.5))
    _turns(detector, [0.9] * 20 + [0.1] * 7)  # 0.22 s of silence
    assert detector.speaking and not detector.pausing
    detector.feed(27 * FRAME_S, FRAME_S, 0.1)
    assert detector.pausing  # 0.26 s
    detector.feed(28 * FRAME_S, FRAME_S, 0.9)
    assert not detector.pausing


def test_previews_start_after_a_while_and_come_no_faster_than_twice_their_own_time() -> None:
    limits = SessionLimits(partial_after_s=3.0, partial_every_s=1.5)
    assert not limits.preview_due(2.9, 2.9, 0.0)
    assert limits.preview_due(3.0, 3.0, 0.0)
    assert limits.preview_due(4.5, 1.5, 0.5)
    assert not limits.preview_due(6.0, 1.5, 1.2) and limits.preview_due(6.9, 2.4, 1.2)
    assert not SessionLimits(partial_after_s=0).preview_due(10.0, 10.0, 0.0)


def test_buffer_slices_by_seconds_after_dropping_old_audio() -> None:
    buffer = AudioBuffer(1000)
    buffer.data += bytes(range(200)) * 20  # 2000 samples: 2 s
    assert buffer.end_s == 2.0
    buffer.drop_before(0.5)
    assert buffer.origin == 500 and len(buffer.data) == 3000
    assert buffer.slice(0.5, 0.502) == (bytes(range(200)) * 20)[1000:1004]
    assert buffer.slice(0.0, 0.501) == buffer.slice(0.5, 0.501)  # what was dropped is gone, not an error
    assert buffer.end_s == 2.0


def test_ga_and_older_session_updates() -> None:
    config = updated_config(SessionConfig(), {"type": "session.update", "session": {"type": "transcription", "audio": {
        "input": {"format": {"type": "audio/pcm", "rate": 16000}, "transcription": {"model": "tiny.en", "language": "en"},
                  "turn_detection": {"type": "server_vad", "silence_duration_ms": 800, "threshold": 0.6}}}}}, SERVED)
    assert (config.sample_rate_hz, config.model, config.language) == (16000, "tiny.en", "en")
    assert config.turn_detection == TurnDetection(threshold=0.6, silence_s=0.8)
    older = updated_config(config, {"type": "transcription_session.update", "session": {
        "input_audio_format": "pcm16", "input_audio_transcription": {"prompt": "budget"}, "turn_detection": None}}, SERVED)
    assert older.turn_detection is None and older.prompt == "budget" and older.sample_rate_hz == 16000


@pytest.mark.parametrize(("session", "param"), [
    ({"type": "realtime"}, "session.type"),
    ({"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 44100}}}},
     "session.audio.input.format.rate"),
    ({"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"}}}}, "session.audio.input.format.type"),
    ({"type": "transcription", "audio": {"input": {"transcription": {"model": "large-v9"}}}},
     "session.audio.input.transcription.model"),
    ({"type": "transcription", "audio": {"input": {"turn_detection": {"type": "push_to_talk"}}}},
     "session.audio.input.turn_detection.type"),
    ({"type": "transcription", "audio": {"input": {"format": "pcm16"}}}, "session.audio.input.format"),
    ({"type": "transcription", "audio": {"input": {"transcription": "whisper-1"}}}, "session.audio.input.transcription"),
    ({"type": "transcription", "audio": {"input": {"transcription": {"language": "xx"}}}},
     "session.audio.input.transcription.language"),
    ({"type": "transcription", "audio": {"input": {"transcription": {"prompt": ["a"]}}}},
     "session.audio.input.transcription.prompt"),
    ({"type": "transcription", "audio": {"input": {"turn_detection": "server_vad"}}},
     "session.audio.input.turn_detection"),
    ({"type": "transcription", "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": "high"}}}},
     "session.audio.input.turn_detection.threshold"),
    ({"type": "transcription", "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": "500"}}}},
     "session.audio.input.turn_detection.silence_duration_ms"),
])
def test_refused_session_updates_name_their_parameter(session: dict, param: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        updated_config(SessionConfig(), {"type": "session.update", "session": session}, SERVED)
    assert refused.value.param == param


def test_a_language_the_model_has_no_token_for_is_refused() -> None:
    update = {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "transcription": {"language": "DE"}}}}}
    assert updated_config(SessionConfig(), update, SERVED).language == "de"
    with pytest.raises(ProtocolError) as refused:
        updated_config(SessionConfig(), update, SERVED, languages=model_info("tiny.en").languages)
    assert refused.value.code == "unsupported_language"
    assert updated_config(SessionConfig(), update, SERVED, languages=model_info("base").languages).language == "de"


def _append(pcm16: bytes) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm16).decode()})


def _samples(seconds: float, value: int = 1000, rate_hz: int = 24000) -> bytes:
    return value.to_bytes(2, "little", signed=True) * round(seconds * rate_hz)


async def _silence_only(request: object) -> object:
    """The realtime stage's answers without its models: the VAD hears nothing, decoding says nothing."""
    if isinstance(request, VoiceActivityRequest):
        return VoiceActivity([0.0] * (len(request.pcm16) // 2 * 16000 // request.sample_rate_hz // 512))
    return UtteranceText("", "en", 0.0)


async def _nothing_sent(event: dict) -> None:
    pass


def test_a_manual_commit_with_server_vad_takes_all_the_audio_since_the_last_one() -> None:
    async def commit_after_six_seconds() -> bytes:
        session = LiveSession(_silence_only, _nothing_sent, SessionLimits())
        for _ in range(60):
            await session.handle(_append(_samples(0.1)))
            if session._scan is not None:
                await session._scan
        await session.handle(json.dumps({"type": "input_audio_buffer.commit"}))
        return session._decodes.get_nowait().pcm16

    assert len(asyncio.run(commit_after_six_seconds())) == len(_samples(6.0)), "speech the VAD missed is kept"


def test_a_clear_also_forgets_half_a_sample() -> None:
    async def clear_then_commit() -> bytes:
        session = LiveSession(_silence_only, _nothing_sent, SessionLimits(), SessionConfig(turn_detection=None))
        await session.handle(_append(_samples(0.5) + b"\x07"))
        await session.handle(json.dumps({"type": "input_audio_buffer.clear"}))
        await session.handle(_append(_samples(0.5)))
        await session.handle(json.dumps({"type": "input_audio_buffer.commit"}))
        return session._decodes.get_nowait().pcm16

    assert asyncio.run(clear_then_commit()) == _samples(0.5), "later samples are not shifted by a byte"


def test_a_pool_that_fails_to_start_takes_no_session_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_room(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(realtime, "WorkerPool", no_room)
    service = SimpleNamespace(settings=load_settings(), accepting=True, executor=PooledExecutor())
    sessions = realtime.RealtimeSessions(service)
    with pytest.raises(OSError):
        sessions.admit()
    assert sessions.open == 0 and realtime.REALTIME_STAGE not in service.executor.factories, "the next one retries"


def test_turning_server_vad_off_mid_utterance_ends_and_commits_it() -> None:
    async def all_speech(request: object) -> object:
        if isinstance(request, VoiceActivityRequest):
            return VoiceActivity([1.0] * (len(request.pcm16) // 2 * 16000 // request.sample_rate_hz // 512))
        return UtteranceText("", "en", 0.0)

    async def speak_then_turn_vad_off() -> list[str]:
        session = LiveSession(all_speech, _nothing_sent, SessionLimits())
        for _ in range(10):
            await session.handle(_append(_samples(0.1)))
            if session._scan is not None:
                await session._scan
        update = {"type": "session.update", "session": {"type": "transcription", "audio": {
            "input": {"turn_detection": None}}}}
        await session.handle(json.dumps(update))
        assert not session._decodes.empty(), "the open utterance is decoded"
        return [session._outbox.get_nowait()["type"] for _ in range(session._outbox.qsize())]

    types = asyncio.run(speak_then_turn_vad_off())
    assert types == [
        "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
        "session.updated",
    ]


def test_a_clear_while_a_turn_waits_for_the_outbox_commits_nothing_it_cleared() -> None:
    async def speech_then_silence(request: object) -> object:
        """A third of a second of speech, then silence: the VAD closes the turn within the same window."""
        frames = len(request.pcm16) // 2 * 16000 // request.sample_rate_hz // 512
        return VoiceActivity([0.9 if index < 10 else 0.0 for index in range(frames)])

    async def clear_while_blocked() -> tuple[list[str], bool, float]:
        session = LiveSession(speech_then_silence, _nothing_sent, SessionLimits(outbox_events=1),
                              SessionConfig(sample_rate_hz=16000))
        await session.handle(_append(_samples(1.2, rate_hz=16000)))
        for _ in range(5):  # the scan announces the turn, then waits: the client reads no events yet
            await asyncio.sleep(0)
        clearing = asyncio.create_task(session.handle(json.dumps({"type": "input_audio_buffer.clear"})))
        seen: list[str] = []
        while not (clearing.done() and session._scan.done() and session._outbox.empty()):
            await asyncio.sleep(0.01)
            while not session._outbox.empty():
                seen.append(session._outbox.get_nowait()["type"])
        return seen, session._decodes.empty(), session.floor_s

    seen, nothing_to_decode, floor_s = asyncio.run(clear_while_blocked())
    assert "input_audio_buffer.committed" not in seen and seen[-1] == "input_audio_buffer.cleared", seen
    assert nothing_to_decode and floor_s == 1.2


def test_a_client_that_stopped_reading_and_left_ends_its_session() -> None:
    """The outbox is full and the session waits to queue one more event when the socket dies: the session
    ends (its slot comes back) instead of waiting for ever."""
    async def stuck_then_gone() -> None:
        gone = asyncio.Event()

        async def send(event: dict) -> None:
            await gone.wait()
            raise ConnectionError("the client left")

        async def receive() -> str:
            return json.dumps({"type": "no.such.event"})

        session = LiveSession(_silence_only, send, SessionLimits(outbox_events=2))
        serving = asyncio.create_task(session.serve(receive))
        await asyncio.sleep(0.2)
        gone.set()
        with pytest.raises(SessionClosed):
            await asyncio.wait_for(serving, 10)

    asyncio.run(stuck_then_gone())


def test_audio_that_came_during_a_scan_is_scanned_without_another_append() -> None:
    """A client that sends the rest of a file while a VAD task runs, then waits, gets its last turn's end."""
    async def send_all_then_wait() -> float:
        scanning = asyncio.Event()

        async def slow_vad(request: object) -> object:
            await scanning.wait()
            return await _silence_only(request)

        session = LiveSession(slow_vad, _nothing_sent, SessionLimits())
        await session.handle(_append(_samples(0.2)))
        await asyncio.sleep(0.05)  # the first scan has taken its audio and waits for its answer
        await session.handle(_append(_samples(3.0)))
        scanning.set()
        for _ in range(10):
            await asyncio.sleep(0.05)
        return session.scanned_s

    assert asyncio.run(send_all_then_wait()) >= 3.0


def test_an_append_that_would_overfill_the_manual_buffer_is_refused() -> None:
    async def append_too_much() -> list[dict]:
        sent: list[dict] = []

        async def keep(event: dict) -> None:
            sent.append(event)

        session = LiveSession(_silence_only, keep, SessionLimits(max_buffer_s=5.0), SessionConfig(turn_detection=None))
        await session.handle(_append(_samples(6.0)))
        return [event.get("error", {}).get("code") for event in session._outbox._queue]

    assert asyncio.run(append_too_much()) == ["buffer_too_large"]


@pytest.mark.parametrize("number", ["1e400", "-1e400", str(10**400), "60001"])
def test_a_turn_detection_number_out_of_range_is_an_error_event_naming_it(number: str) -> None:
    update = json.loads('{"type": "session.update", "session": {"type": "transcription", "audio": {"input": '
                        '{"turn_detection": {"type": "server_vad", "silence_duration_ms": ' + number + "}}}}}")
    with pytest.raises(ProtocolError) as refused:
        updated_config(SessionConfig(), update, SERVED)
    assert refused.value.param == "session.audio.input.turn_detection.silence_duration_ms"


def test_at_expiry_a_committed_utterance_is_still_transcribed_or_said_to_have_failed() -> None:
    """The session's clock runs out while a committed utterance is being decoded: its completed event comes
    before the session ends; one that takes longer than the grace gets a failed event, not silence."""
    async def expire_while_decoding(decode_s: float) -> list[dict]:
        async def slow_decode(request: object) -> object:
            await asyncio.sleep(decode_s)
            return UtteranceText("ask not", "en", 1.0)

        sent: list[dict] = []

        async def send(event: dict) -> None:
            sent.append(event)

        client_events = [_append(_samples(1.0)), json.dumps({"type": "input_audio_buffer.commit"})]

        async def receive() -> str:
            if client_events:
                return client_events.pop(0)
            await asyncio.sleep(3600)
            return ""

        session = LiveSession(slow_decode, send, SessionLimits(max_session_s=0.5, expiry_grace_s=1.0),
                              SessionConfig(turn_detection=None))
        with pytest.raises(SessionClosed) as closed:
            await session.serve(receive)
        await session.drain()
        return [*sent, closed.value.error]

    finished = [event["type"] for event in asyncio.run(expire_while_decoding(0.8))]
    assert finished[-2:] == ["conversation.item.input_audio_transcription.completed", "error"], finished
    late = asyncio.run(expire_while_decoding(5.0))
    failed = [event for event in late if event["type"].endswith("transcription.failed")]
    assert len(failed) == 1 and failed[0]["error"]["code"] == "session_expired", [e["type"] for e in late]
    assert late[-1]["error"]["code"] == "session_expired"
