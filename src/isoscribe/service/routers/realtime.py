"""OpenAI Realtime transcription over WebSocket: ``/v1/realtime?intent=transcription``.

The API key comes as for every route (``Authorization: Bearer KEY``) or, from a browser, which cannot
set WebSocket headers, as OpenAI's ``openai-insecure-api-key.KEY`` subprotocol. A wrong key is
refused at the handshake (401); a refused session (limit, intent, executor) is accepted just long
enough to say why in an ``error`` event, then closed.
"""

from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from isoscribe.logs import log_event
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
    if not _authorized(websocket):
        await _deny(websocket)
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
    try:
        await session.serve(websocket.receive_text)
    except WebSocketDisconnect:
        return
    except SessionClosed as closed:
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


def _authorized(websocket: WebSocket) -> bool:
    expected = websocket.app.state.settings.service.api_key
    if expected is None:
        return True
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    presented = [token.strip()] if scheme.lower() == "bearer" else []
    presented += [p[len(_KEY_SUBPROTOCOL):] for p in websocket.scope.get("subprotocols", []) if p.startswith(_KEY_SUBPROTOCOL)]
    key = expected.get_secret_value().encode()
    return any(hmac.compare_digest(candidate.encode(), key) for candidate in presented)


async def _deny(websocket: WebSocket) -> None:
    """401 with the usual error body where the server can answer a handshake with a response; else 403."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        body = error_body("missing or invalid API key (send 'Authorization: Bearer KEY')", "invalid_request_error",
                          "invalid_api_key")
        await websocket.send_denial_response(JSONResponse(body, 401, headers={"WWW-Authenticate": "Bearer"}))
    else:
        await websocket.close(1008, reason="invalid_api_key")

