"""The web page: ``/`` and its ES modules and style under ``/ui/``, shipped in the package, no build step.

The page needs no key to load; it asks for the API key and sends it with every API call.
``/ui/languages.json`` is the list of language codes Whisper knows, for the form's drop-down when
GET /v1/models does not name a model's languages.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
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
async def languages() -> list[str]:
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
