"""``stream=true``: the pipeline's events as OpenAI's transcription stream of server-sent events.

A ``transcript.text.delta`` goes out for each segment as the speech stage yields it (``SegmentReady``
from the worker), not after the file is done; when the request is diarized, one
``transcript.text.segment`` per speaker segment follows once speakers are known (they need the whole
file); ``transcript.text.done`` ends the stream with the full text and the usage in audio seconds.
A client that goes away cancels the run, which kills the worker running its stage.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from openai.types.audio import TranscriptionTextDeltaEvent, TranscriptionTextDoneEvent, TranscriptionTextSegmentEvent

from isoscribe.pipeline import Event, FileResult, Policy, Probed, SegmentReady
from isoscribe.service.execution import PipelineRunner
from isoscribe.openai_shapes import diarized_segment, logprobs, speaker_labels, usage
from isoscribe.transcript import SpeechRequest

__all__ = ["LiveRun", "transcription_events", "sse_body", "cancel_on_disconnect", "SSE_MEDIA_TYPE", "SSE_HEADERS"]

SSE_MEDIA_TYPE = "text/event-stream"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""No cache may keep the stream, and nginx must not buffer it."""
SSE_KEEPALIVE_S = 15.0


class LiveRun:
    """One file through the pipeline on the PipelineRunner's threads, its events handed to asyncio as they come.

    Events reach the queue through ``call_soon_threadsafe`` in the order the pipeline emits them, and
    the end marker (None) after all of them, since the task finishes only after the pipeline returns.
    """

    def __init__(self, pipelines: PipelineRunner, policy: Policy, speech: SpeechRequest) -> None:
        loop = asyncio.get_running_loop()
        self.audio_path = Path(speech.audio_path)
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self.pipeline = pipelines.pipeline(policy, lambda event: loop.call_soon_threadsafe(self._events.put_nowait, event))
        self.task: asyncio.Future[FileResult] = asyncio.ensure_future(
            pipelines.run(self.pipeline, lambda: self.pipeline.run(speech))
        )
        self.task.add_done_callback(lambda _: self._events.put_nowait(None))

    async def next_event(self) -> Event | None:
        """The next pipeline event; None once the run has ended."""
        return await self._events.get()

    async def wait_probed(self) -> None:
        """Return once the probe has measured the audio; raise the pipeline's error if it fails first."""
        while (event := await self.next_event()) is not None:
            if isinstance(event, Probed):
                return
        await self.task

    def cancel(self) -> None:
        self.task.cancel()


async def transcription_events(run: LiveRun, diarized: bool, with_logprobs: bool) -> AsyncIterator[dict[str, Any]]:
    """OpenAI's stream events as JSON-ready dicts; raises the pipeline's error if the run fails."""
    first, segments_seen = True, 0
    while (event := await run.next_event()) is not None:
        # A speech stage retried after a crash numbers its segments from 0 again: those sent already are skipped.
        if not isinstance(event, SegmentReady) or event.segment.id < segments_seen:
            continue
        segments_seen = event.segment.id + 1
        if text := event.segment.text.strip():
            delta = TranscriptionTextDeltaEvent(
                type="transcript.text.delta",
                delta=text if first else f" {text}",
                logprobs=[p.model_dump() for p in logprobs([event.segment])] if with_logprobs else None,
            )
            first = False
            yield delta.model_dump(exclude_none=True)
    if run.task.cancelled():
        return
    transcript = (await run.task).transcript
    if diarized:
        labels = speaker_labels(transcript)
        for segment in transcript.segments:
            yield TranscriptionTextSegmentEvent(**diarized_segment(segment, labels).model_dump()).model_dump()
    done = TranscriptionTextDoneEvent(
        type="transcript.text.done",
        text=transcript.text,
        logprobs=[p.model_dump() for p in logprobs(transcript.segments)] if with_logprobs else None,
    ).model_dump(exclude_none=True)
    # The stream type knows only token usage; whisper-style models are billed by audio seconds.
    done["usage"] = usage(transcript)
    yield done


async def sse_body(
    events: AsyncIterator[dict[str, Any]],
    run: LiveRun,
    receive: Callable[[], Awaitable[dict]],
    error_of: Callable[[Exception], dict[str, Any]],
    keepalive_s: float = SSE_KEEPALIVE_S,
) -> AsyncIterator[str]:
    """``events`` as server-sent events; a failed run ends with an ``{"error": …}`` event, which the
    ``openai`` client raises as APIError. A comment line goes out after ``keepalive_s`` without an event
    (diarization can be silent for a minute, and a proxy would cut the stream). The run is cancelled
    when the client disconnects."""
    watcher = asyncio.ensure_future(cancel_on_disconnect(receive, run))
    iterator = events.__aiter__()
    next_event: asyncio.Future | None = None
    try:
        while True:
            next_event = next_event or asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({next_event}, timeout=keepalive_s)
            if not done:
                yield ": keep-alive\n\n"
                continue
            event, next_event = next_event.result(), None
            yield _sse(event)
    except StopAsyncIteration:
        pass
    except Exception as error:  # noqa: BLE001 - every failure becomes the stream's error event
        yield _sse(error_of(error))
    finally:
        if next_event is not None:
            next_event.cancel()
        watcher.cancel()
        run.cancel()


async def cancel_on_disconnect(receive: Callable[[], Awaitable[dict]], run: LiveRun) -> None:
    """Cancel ``run`` when the client goes. The body was read whole before, so the next message is the
    disconnect."""
    while (await receive())["type"] != "http.disconnect":
        pass
    run.cancel()


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
