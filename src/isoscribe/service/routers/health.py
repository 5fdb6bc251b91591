"""Operations: /healthz (process up), /readyz (pools started, job store reachable, accepting work), /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from isoscribe.service.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    ready = await request.app.state.service.is_ready()
    return JSONResponse({"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    service = request.app.state.service
    if service.metrics is None:
        return Response("", status_code=503, media_type=CONTENT_TYPE)
    return Response(await service.off_loop(service.metrics.export), media_type=CONTENT_TYPE)
