"""The web page: ``/`` and its ES modules and style under ``/ui/``, shipped in the package, no build step.

The page needs no key to load; it asks for the API key and sends it with every API call.
``/ui/languages.json?model=M`` is what the form's language drop-down offers for model ``M`` (one the
service serves): the codes it has a token for (``["en"]`` for an English-only model).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from isoscribe.languages import WHISPER_LANGUAGES

__all__ = ["WEB_DIR", "add_web_page"]

WEB_DIR = Path(__file__).resolve().parents[1] / "web"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/ui/languages.json")
async def languages(request: Request, model: str = "whisper-1") -> list[str]:
    service = request.app.state.service
    # Only the names the service offers: a path would let anyone probe the server's directories.
    if model in service.models.ids():
        return sorted(service.models.languages(model))
    return sorted(WHISPER_LANGUAGES)


class _Revalidated(StaticFiles):
    """The page's modules import each other: after an upgrade a browser must not mix cached and new ones."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


def add_web_page(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui", _Revalidated(directory=WEB_DIR), name="ui")
