"""One live transcription session: its byte buffer, its turns, and the order of its events.

The server holds the session's PCM16 bytes and nothing else of its audio. Every ``VAD_STEP_S`` of
new audio a task of the realtime stage scores the new frames (with a second of context); the turn
detector closes an utterance after its silence, and the utterance's bytes go to the same pool to be
decoded, one task at a time per session so that completions come in order. An open utterance
longer than ``partial_after_s`` is also decoded partially, for deltas while it is still spoken.

Back-pressure, never unbounded buffering: events wait in a bounded outbox that only the socket
drains; decodes wait in a bounded queue; while either is full, or the VAD lags more than
``MAX_UNSCANNED_S``, the session stops reading the socket, so a client that sends faster than the
server keeps up (or reads slower) is slowed down by TCP instead of growing the server's memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from isoscribe.isolation import IsolationError
from isoscribe.service.realtime_protocol import (
    ProtocolError, SessionClosed, SessionConfig, SessionLimits, error_event, event, legacy_session_object, new_id,
    session_object, updated_config,
)
from isoscribe.service.realtime_audio import AudioBuffer
from isoscribe.service.realtime_turns import SpeechStarted, SpeechStopped, TurnDetector
from isoscribe.stages.realtime import VAD_FRAME_S, UtteranceRequest, UtteranceText, VoiceActivityRequest

__all__ = ["SessionLimits", "LiveSession", "SessionClosed", "RunTask"]

VAD_STEP_S = 0.2
"""New audio that triggers a VAD task: the delay a turn's end may wait before it is seen."""
VAD_CONTEXT_S = 1.0
"""Audio before the new frames that each VAD task sees again, so Silero's state has settled."""
MAX_UNSCANNED_S = 5.0
_MIN_COMMIT_S = 0.1
_PROMPT_CHARS = 200
"""Whisper conditions on the previous text as a prompt: a short utterance ("ask not") is misheard without it."""
_ISOLATION_CODES = {"WorkerCrashed": "worker_crashed", "StageTimeout": "stage_timeout",
                    "StageOutOfMemory": "out_of_memory", "StageError": "transcription_failed"}

RunTask = Callable[[Any], Awaitable[Any]]
"""Runs one realtime-stage request in the worker pool and returns its value (or raises IsolationError)."""


@dataclass
class _Item:
    id: str
    start_s: float
    emitted: str = ""
    """The text sent in deltas so far."""
    partial_end_s: float = 0.0
    partial_words: list[str] = field(default_factory=list)


@dataclass
class _Decode:
    item: _Item
    pcm16: bytes
    final: bool
    end_s: float = field(default=0.0)


class LiveSession:
    def __init__(
        self, run_task: RunTask, send: Callable[[dict], Awaitable[None]], limits: SessionLimits,
        config: SessionConfig = SessionConfig(),
    ) -> None:
        self.id = new_id("sess")
        self.run_task = run_task
        self.send = send
        self.limits = limits
        self.config = config
        self.expires_at = int(time.time() + limits.max_session_s)
        self.audio = AudioBuffer(config.sample_rate_hz)
        self.floor_s = 0.0
        """Audio before this is committed or cleared."""
        self.scanned_s = 0.0
        self.detector = TurnDetector(config.turn_detection) if config.turn_detection else None
        self.open_item: _Item | None = None
        self.previous_item_id: str | None = None
        self.items: dict[str, _Item] = {}
        self._outbox: asyncio.Queue[dict] = asyncio.Queue(limits.outbox_events)
        self._decodes: asyncio.Queue[_Decode] = asyncio.Queue(limits.pending_decodes)
        self._decoding = False
        self._last_preview_took_s = 0.0
        self._scan: asyncio.Task | None = None
        self._sender: asyncio.Task | None = None
        self._generation = 0
        """Bumped by commit and clear: a VAD answer for audio from before then is dropped."""
        self._recent_text = ""
        """The end of the session's transcript so far: the next utterance is decoded in its context."""

    async def serve(self, receive: Callable[[], Awaitable[str]]) -> None:
        """Run until the client leaves (its receive raises) or a ``SessionClosed`` ends the session."""
        self._sender = asyncio.create_task(self._send_loop())
        workers = [self._sender, asyncio.create_task(self._decode_loop())]
        try:
            await self.emit(event("session.created", session=session_object(self.id, self.config, self.expires_at)))
            deadline = time.monotonic() + self.limits.max_session_s
            while True:
                if any(worker.done() for worker in workers):
                    raise SessionClosed(1011)
                message = await self._next_message(receive, deadline)
                await self.handle(message)
        finally:
            for task in [*workers, self._scan]:
                if task is not None:
                    task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def drain(self) -> None:
        """Send what the outbox holds (before the socket closes on purpose)."""
        while not self._outbox.empty():
            await self.send(self._outbox.get_nowait())

    async def _next_message(self, receive: Callable[[], Awaitable[str]], deadline: float) -> str:
        try:
            return await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            await self._finish_committed()
            raise SessionClosed(1000, error_event(
                f"the session reached its maximum length of {self.limits.max_session_s:g} s "
                "(service.max_realtime_session_s); open a new one to go on", code="session_expired",
            )) from None

    async def _finish_committed(self) -> None:
        """At expiry, what was committed is still decoded (for ``expiry_grace_s``); what is not by then fails."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._decodes.join(), self.limits.expiry_grace_s)
        for item in list(self.items.values()):
            error = {"type": "server_error", "code": "session_expired", "param": None,
                     "message": f"the session ended before {item.id} was transcribed"}
            with contextlib.suppress(asyncio.QueueFull):  # a client that reads nothing must not hold the end
                self._outbox.put_nowait(event("conversation.item.input_audio_transcription.failed",
                                              item_id=item.id, content_index=0, error=error))

    async def emit(self, message: dict) -> None:
        """Queue an event for the socket; SessionClosed when the socket is gone (a full outbox would wait for ever)."""
        put = asyncio.ensure_future(self._outbox.put(message))
        await asyncio.wait({put, *filter(None, [self._sender])}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            raise SessionClosed(1011)

    async def _send_loop(self) -> None:
        while True:
            await self.send(await self._outbox.get())

    async def handle(self, raw: str) -> None:
        client_event_id = None
        try:
            message = json.loads(raw)
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise ProtocolError("a client event is a JSON object with a 'type'", param="type")
            client_event_id = message.get("event_id")
            await self._dispatch(message)
        except json.JSONDecodeError as bad:
            await self.emit(error_event(f"not JSON: {bad}", code="invalid_json"))
        except ProtocolError as refused:
            await self.emit(error_event(refused.message, refused.code, param=refused.param,
                                        client_event_id=client_event_id))

    async def _dispatch(self, message: dict) -> None:
        kind = message["type"]
        if kind in ("session.update", "transcription_session.update"):
            await self._update(message)
        elif kind == "input_audio_buffer.append":
            await self._append(message.get("audio"))
        elif kind == "input_audio_buffer.commit":
            await self._commit_manually()
        elif kind == "input_audio_buffer.clear":
            await self._clear()
        else:
            raise ProtocolError(
                f"event type {kind!r} is not served in a transcription session", code="unknown_event", param="type"
            )

    async def _update(self, message: dict) -> None:
        config = updated_config(self.config, message, self.limits.served_models, self.limits.languages)
        if config.sample_rate_hz != self.config.sample_rate_hz and self.audio.end_s > 0:
            raise ProtocolError("the sample rate cannot change once audio was sent",
                                param="session.audio.input.format.rate")
        if config.turn_detection != self.config.turn_detection:
            if self.open_item is not None:  # announced by speech_started: it ends here, committed, not orphaned
                await self._on_turn(SpeechStopped(self.audio.end_s))
            self.detector = TurnDetector(config.turn_detection, self.floor_s) if config.turn_detection else None
        self.config = config
        self.audio.sample_rate_hz = config.sample_rate_hz
        if message["type"] == "session.update":
            await self.emit(event("session.updated", session=session_object(self.id, config, self.expires_at)))
        else:
            session = legacy_session_object(self.id, config, self.expires_at)
            await self.emit(event("transcription_session.updated", session=session))

    async def _append(self, audio: Any) -> None:
        try:
            pcm16 = base64.b64decode(audio or "", validate=True)
        except (binascii.Error, TypeError):
            raise ProtocolError("'audio' must be base64 PCM16", param="audio") from None
        held_s = self.audio.end_s - self.floor_s + len(pcm16) / 2 / self.audio.sample_rate_hz
        if self.detector is None and held_s > self.limits.max_buffer_s:
            raise ProtocolError(
                f"the input audio buffer holds over {self.limits.max_buffer_s:g} s; commit or clear it",
                code="buffer_too_large",
            )
        self.audio.data += pcm16
        if self.detector is None:
            return
        if self._scan is not None and self.audio.end_s - self.scanned_s > MAX_UNSCANNED_S:
            await asyncio.gather(self._scan, return_exceptions=True)  # back-pressure: stop reading meanwhile
        if (self._scan is None or self._scan.done()) and self.audio.end_s - self.scanned_s >= VAD_STEP_S:
            self._scan = asyncio.create_task(self._scan_new_audio())

    async def _scan_new_audio(self) -> None:
        generation = self._generation
        window_start_s = max(self.audio.origin / self.audio.sample_rate_hz, self.scanned_s - VAD_CONTEXT_S)
        pcm16 = self.audio.slice(window_start_s, self.audio.end_s)
        try:
            activity = await self.run_task(VoiceActivityRequest(pcm16, self.audio.sample_rate_hz))
        except IsolationError as failure:
            await self.emit(error_event(
                f"voice activity detection failed ({failure.describe()}); the audio is scanned again",
                _ISOLATION_CODES.get(type(failure).__name__), "server_error",
            ))
            return
        if generation != self._generation or self.detector is None:
            return
        for index, probability in enumerate(activity.speech_probabilities):
            frame_start_s = window_start_s + index * VAD_FRAME_S
            if frame_start_s + VAD_FRAME_S <= self.scanned_s:
                continue
            turn = self.detector.feed(frame_start_s, VAD_FRAME_S, probability)
            if turn is not None and await self._on_turn(turn) != self._generation:
                return  # a clear, a manual commit or an update came while an event waited for the outbox
            self.scanned_s = frame_start_s + VAD_FRAME_S
        await self._maybe_partial()
        self._forget_scanned_audio()
        if self.audio.end_s - self.scanned_s >= VAD_STEP_S:  # what came while this scan ran, without waiting for more
            self._scan = asyncio.create_task(self._scan_new_audio())

    async def _on_turn(self, turn: SpeechStarted | SpeechStopped) -> int:
        """Announce (and at its end commit) a turn; returns the generation it left the buffer in."""
        generation = self._generation
        if isinstance(turn, SpeechStarted):
            self.open_item = _Item(new_id("item"), turn.start_s)
            await self.emit(event("input_audio_buffer.speech_started",
                                  audio_start_ms=round(turn.start_s * 1000), item_id=self.open_item.id))
        elif self.open_item is not None:
            item, self.open_item = self.open_item, None
            await self.emit(event("input_audio_buffer.speech_stopped",
                                  audio_end_ms=round(turn.end_s * 1000), item_id=item.id))
            if generation == self._generation:  # not cleared meanwhile
                return await self._commit(item, turn.end_s)
        return generation

    async def _commit_manually(self) -> None:
        end_s = self.audio.end_s
        item = self.open_item or _Item(new_id("item"), max(self.floor_s, self.audio.start_s))
        if end_s - item.start_s < _MIN_COMMIT_S:
            raise ProtocolError(
                f"buffer too small: expected at least {_MIN_COMMIT_S * 1000:g} ms of audio, "
                f"but the buffer holds {max(0.0, end_s - item.start_s) * 1000:.0f} ms",
                code="input_audio_buffer_commit_empty",
            )
        self.open_item = None
        await self._commit(item, end_s)

    async def _commit(self, item: _Item, end_s: float) -> int:  # returns the generation it starts
        pcm16 = self.audio.slice(item.start_s, end_s)
        self._restart_at(end_s)
        generation = self._generation
        self.items[item.id] = item
        await self.emit(event("input_audio_buffer.committed", item_id=item.id, previous_item_id=self.previous_item_id))
        self.previous_item_id = item.id
        await self._decodes.put(_Decode(item, pcm16, final=True, end_s=end_s))
        self._forget_scanned_audio()
        return generation

    async def _clear(self) -> None:
        self.open_item = None
        self.audio.drop_partial_sample()
        self._restart_at(self.audio.end_s)
        self._forget_scanned_audio()
        await self.emit(event("input_audio_buffer.cleared"))

    def _restart_at(self, floor_s: float) -> None:
        self.floor_s = floor_s
        self.scanned_s = max(self.scanned_s, floor_s)
        self._generation += 1
        if self.detector is not None:
            self.detector.restart(floor_s)

    def _forget_scanned_audio(self) -> None:
        """Keep only what a later commit or VAD task can still need."""
        keep_from_s = self.floor_s
        if self.detector is not None and self.open_item is None:
            # what a manual commit would take (speech the VAD missed too), as much as a buffer may hold
            keep_from_s = max(keep_from_s, self.audio.end_s - self.limits.max_buffer_s)
        elif self.open_item is not None:
            keep_from_s = max(keep_from_s, min(self.open_item.start_s, self.scanned_s - VAD_CONTEXT_S))
        self.audio.drop_before(keep_from_s)

    async def _maybe_partial(self) -> None:
        item, detector = self.open_item, self.detector
        if item is None or self._decoding or not self._decodes.empty() or (detector and detector.pausing):
            return  # in a pause the utterance may be closing: a preview would only delay its final decode
        end_s = self.scanned_s
        if self.limits.preview_due(end_s - item.start_s, end_s - item.partial_end_s, self._last_preview_took_s):
            item.partial_end_s = end_s
            self._decodes.put_nowait(_Decode(item, self.audio.slice(item.start_s, end_s), final=False, end_s=end_s))

    async def _decode_loop(self) -> None:
        while True:
            decode = await self._decodes.get()
            self._decoding = True
            try:
                await self._decode(decode)
            finally:
                self._decoding = False
                self._decodes.task_done()

    async def _decode(self, decode: _Decode) -> None:
        config, item = self.config, decode.item
        prompt = f"{config.prompt} {self._recent_text}".strip()[-_PROMPT_CHARS:]
        request = UtteranceRequest(decode.pcm16, self.audio.sample_rate_hz, config.language, prompt, decode.final,
                                   item.emitted.strip() or None)
        started = time.monotonic()
        try:
            result: UtteranceText = await self.run_task(request)
        except IsolationError as failure:
            await self._failed(decode, _ISOLATION_CODES.get(type(failure).__name__), failure.describe())
            return
        except RuntimeError as failure:  # the pool is shut down: the server is stopping
            await self._failed(decode, "server_shutting_down", str(failure))
            return
        if decode.final:
            await self._complete(item, result)
            return
        self._last_preview_took_s = time.monotonic() - started
        if self.open_item is item or item.id in self.items:
            await self._partial(item, result.text)

    async def _partial(self, item: _Item, text: str) -> None:
        """Send the new words on which this partial decode and the one before agree (whisper_streaming's
        local agreement). Every later decode of the utterance is asked to continue what was sent (its
        ``prefix``), so the deltas add up to ``completed``'s text."""
        words = text.split()
        agreed = []
        for before, now in zip(item.partial_words, words):
            if before != now:
                break
            agreed.append(now)
        item.partial_words = words
        await self._delta_beyond_emitted(item, agreed)

    async def _complete(self, item: _Item, result: UtteranceText) -> None:
        self.items.pop(item.id, None)
        self._recent_text = f"{self._recent_text} {result.text}".strip()[-_PROMPT_CHARS:]
        await self._delta_beyond_emitted(item, result.text.split())
        usage = {"type": "duration", "seconds": round(result.duration_s, 3)}
        await self.emit(event("conversation.item.input_audio_transcription.completed", item_id=item.id,
                              content_index=0, transcript=result.text, usage=usage))

    async def _delta_beyond_emitted(self, item: _Item, words: list[str]) -> None:
        """A delta with ``words`` past those already sent, if what was sent is where they begin."""
        sent = item.emitted.split()
        if words[: len(sent)] == sent and len(words) > len(sent):
            new = " ".join(words[len(sent) :])
            await self._delta(item, f" {new}" if sent else new)

    async def _delta(self, item: _Item, delta: str) -> None:
        item.emitted += delta
        await self.emit(event("conversation.item.input_audio_transcription.delta", item_id=item.id,
                              content_index=0, delta=delta))

    async def _failed(self, decode: _Decode, code: str | None, cause: str) -> None:
        """A failed decode costs its utterance (or, for a partial, only that partial): the session goes on."""
        what = "transcription" if decode.final else "partial transcription"
        message = f"{what} of {decode.item.id} failed: {cause}"
        if decode.final:
            self.items.pop(decode.item.id, None)
            error = {"type": "server_error", "code": code, "message": message, "param": None}
            await self.emit(event("conversation.item.input_audio_transcription.failed", item_id=decode.item.id,
                                  content_index=0, error=error))
        await self.emit(error_event(message, code, "server_error"))

