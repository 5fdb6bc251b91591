"""OpenAI Realtime transcription over WebSocket: ``/v1/realtime?intent=transcription``.

The API key comes as for every route (``Authorization: Bearer KEY``) or, from a browser, which cannot
set WebSocket headers, as OpenAI's ``openai-insecure-api-key.KEY`` subprotocol; the edge's Host and
Origin rules apply as to HTTP. A refused handshake gets the usual JSON error (401, 403); a refused session (limit, intent, executor) is accepted just long
enough to say why in an ``error`` event, then closed.
"""

from __future__ import annotations

import contextlib
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from isoscribe.logs import log_event
from isoscribe.service.edge import EdgeGuard
from isoscribe.service.errors import error_body
from isoscribe.service.realtime import SessionRefused
from isoscribe.service.realtime_protocol import error_event
from isoscribe.service.realtime_session import LiveSession, SessionClosed

__all__ = ["router"]

router = APIRouter(prefix="/v1")
logger = logging.getLogger("isoscribe.service")

_KEY_SUBPROTOCOL = "openai-insecure-api-key."


@router.websocket("/realtime")
async def realtime(websocket: WebSocket, intent: str | None = None) -> None:
    refusal = _edge_refusal(websocket)
    if refusal is not None:
        await _deny(websocket, refusal)
        return
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
    sessions = websocket.app.state.realtime
    if intent != "transcription":
        await _refuse(websocket, SessionRefused(
            "this server runs transcription sessions only: connect to /v1/realtime?intent=transcription",
            "unsupported_intent", 1008,
        ))
        return
    try:
        sessions.admit()
    except SessionRefused as refused:
        await _refuse(websocket, refused)
        return
    try:
        await _serve(websocket, LiveSession(sessions.run_task, websocket.send_json, sessions.limits()))
    finally:
        sessions.release()


async def _serve(websocket: WebSocket, session: LiveSession) -> None:
    async def next_frame() -> str:
        """A text frame, or a binary one read as UTF-8 (JSON some clients send that way; else an error event)."""
        frame = await websocket.receive()
        if frame["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(frame.get("code", 1000))
        text = frame.get("text")
        return text if text is not None else (frame.get("bytes") or b"").decode("utf-8", "replace")

    try:
        await session.serve(next_frame)
    except WebSocketDisconnect:
        return
    except SessionClosed as closed:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # the client may be gone already
            await session.drain()
            if closed.error is not None:
                await websocket.send_json(closed.error)
            await websocket.close(closed.close_code)
    except Exception as failure:  # noqa: BLE001 - a bug in one session must not reach the server
        log_event(logger, "realtime_session_failed", logging.ERROR, error=repr(failure))
        await websocket.send_json(error_event(f"the session failed: {failure}", "session_failed", "server_error"))
        await websocket.close(1011)


async def _refuse(websocket: WebSocket, refused: SessionRefused) -> None:
    log_event(logger, "realtime_session_refused", code=refused.code)
    await websocket.send_json(error_event(refused.message, refused.code))
    await websocket.close(refused.close_code, reason=refused.code)


def _edge_refusal(websocket: WebSocket) -> tuple[int, str, str] | None:
    """The HTTP edge's Host and Origin rules, which a WebSocket handshake (outside CORS) must pass too,
    then the key: in the Authorization header or, from a browser, the key subprotocol."""
    settings, keys = websocket.app.state.settings, websocket.app.state.service.keys
    refusal = EdgeGuard(None, settings, keys).refusal(websocket.headers, websocket.url.path)
    if refusal is not None:
        return refusal
    offered = [p[len(_KEY_SUBPROTOCOL) :] for p in websocket.scope.get("subprotocols", []) if p.startswith(_KEY_SUBPROTOCOL)]
    authorizations = [websocket.headers.get("authorization", ""), *(f"Bearer {key}" for key in offered)]
    if not any(keys.identify(authorization) is not None for authorization in authorizations):
        return 401, "missing or invalid API key (send 'Authorization: Bearer KEY')", "invalid_api_key"
    return None


async def _deny(websocket: WebSocket, refusal: tuple[int, str, str]) -> None:
    """The refusal as an HTTP answer to the handshake where the server can send one; else a 403 close."""
    status, message, code = refusal
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        body = error_body(message, "invalid_request_error", code)
        await websocket.send_denial_response(JSONResponse(body, status, headers=headers))
    else:
        await websocket.close(1008, reason=code)
