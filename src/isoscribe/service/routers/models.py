"""OpenAI-compatible GET /v1/models and /v1/models/{id}, with what each model is and whether it is loaded
(workers, RSS); POST /v1/models/{id}/load and DELETE /v1/models/{id} warm up or unload a model's pool
(admin keys only)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from isoscribe.service.auth import caller_of
from isoscribe.service.errors import ApiError

router = APIRouter(prefix="/v1")


@router.get("/models")
async def list_models(request: Request) -> dict:
    models = request.app.state.service.models
    return {"object": "list", "data": await asyncio.to_thread(lambda: [models.describe(name) for name in models.ids()])}


@router.post("/models/{model_id:path}/load")
async def load_model(model_id: str, request: Request) -> dict:
    """Start the model's workers and answer once they are loaded."""
    _require_admin(request, "load a model")
    return await asyncio.to_thread(request.app.state.service.models.load, model_id)


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict:
    return await asyncio.to_thread(request.app.state.service.models.describe, model_id)


@router.delete("/models/{model_id:path}")
async def unload_model(model_id: str, request: Request) -> dict:
    """End the model's worker processes; the next request for it (or a load) starts them again."""
    _require_admin(request, "unload a model")
    return await asyncio.to_thread(request.app.state.service.models.unload, model_id)


def _require_admin(request: Request, action: str) -> None:
    if not caller_of(request).admin:
        raise ApiError(403, f"only an admin key may {action}", type="permission_error", code="admin_only")
