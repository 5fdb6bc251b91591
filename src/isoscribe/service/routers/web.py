"""The web page: ``/`` and its script and style under ``/ui/``, shipped in the package, no build step.

The page needs no key to load; it asks for the API key and sends it with every API call.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["WEB_DIR", "add_web_page"]

WEB_DIR = Path(__file__).resolve().parents[1] / "web"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def add_web_page(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=WEB_DIR), name="ui")
