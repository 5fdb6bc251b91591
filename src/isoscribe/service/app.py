"""The FastAPI app: the edge (Host, Origin), routers, the web page, OpenAI-shaped errors, Bearer keys, latency
metrics, and the service lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException

from isoscribe.config import Settings
from isoscribe.executors import StageExecutor
from isoscribe.service.auth import require_api_key
from isoscribe.service.core import Service
from isoscribe.service.edge import EdgeGuard
from isoscribe.service.errors import (
    ApiError, api_error_handler, http_error_handler, unexpected_error_handler, validation_error_handler,
)
from isoscribe.service.metrics import LatencyMiddleware
from isoscribe.service.realtime import RealtimeSessions
from isoscribe.service.routers import health, jobs, models, realtime, transcriptions
from isoscribe.service.routers.web import add_web_page

__all__ = ["create_app"]


def create_app(settings: Settings, executor: StageExecutor | None = None) -> FastAPI:
    """``executor`` None: one recycled WorkerPool per stage built from settings (and shut down with the app).

    An injected executor (Celery, tests) is used as given and left running for its owner to shut down.
    """
    service = Service(settings, executor)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="isoscribe", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.service = service
    app.state.realtime = RealtimeSessions(service)
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    app.add_middleware(LatencyMiddleware, service=service)
    if settings.service.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.service.cors_origins, allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"], expose_headers=["Location", "Retry-After"],
        )
    app.add_middleware(EdgeGuard, settings=settings, keys=service.keys)  # outermost: before CORS and routes
    app.include_router(health.router)
    app.include_router(transcriptions.router, dependencies=[Depends(require_api_key)])
    app.include_router(models.router, dependencies=[Depends(require_api_key)])
    app.include_router(jobs.router, dependencies=[Depends(require_api_key)])
    app.include_router(realtime.router)  # authenticates in the handshake: see routers/realtime.py
    add_web_page(app)
    return app
