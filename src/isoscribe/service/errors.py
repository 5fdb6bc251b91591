"""HTTP errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

The official ``openai`` client reads this shape, so a client sees our message in its exception.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

__all__ = [
    "ApiError", "api_error_handler", "validation_error_handler", "http_error_handler", "unexpected_error_handler",
    "error_body",
]


class ApiError(Exception):
    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


async def api_error_handler(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.message, exc.type, exc.code, exc.param), status_code=exc.status_code, headers=exc.headers
    )


async def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return JSONResponse(error_body(problems, "invalid_request_error", "invalid_parameter"), status_code=400)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def http_error_handler(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own errors (an unknown path, a wrong method) in OpenAI's shape too."""
    message = f"{request.method} {request.url.path}: {exc.detail}"
    error_type = "server_error" if exc.status_code >= 500 else "invalid_request_error"
    body = error_body(message, error_type, _HTTP_CODES.get(exc.status_code))
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A bug still answers in OpenAI's shape; Starlette logs the traceback after this response is sent."""
    return JSONResponse(error_body("internal server error", "server_error", "internal_error"), status_code=500)
