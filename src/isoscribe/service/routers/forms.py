"""The HTTP side of an upload: admit it, stream the multipart body to a file, validate the typed parameters."""

from __future__ import annotations

from typing import Literal, TypeVar

from fastapi import Request
from pydantic import BaseModel

from isoscribe.decoding import DECODING_OPTIONS
from isoscribe.service.admission import Upload
from isoscribe.service.errors import ApiError
from isoscribe.service.schemas import check_fields, from_form
from isoscribe.service.uploads import ReadLimits, receive_multipart

__all__ = ["receive_form", "refuse_closed_options"]

P = TypeVar("P", bound=BaseModel)


async def receive_form(request: Request, params_type: type[P], kind: Literal["request", "job"]) -> tuple[Upload, P]:
    """The upload (on disk, admitted) and its parameters; on any error nothing is left behind."""
    service = request.app.state.service
    release_slot = await service.admit(kind)
    try:
        settings = service.settings.service
        limits = ReadLimits(
            int(settings.max_upload_mb * 1_000_000), settings.upload_idle_timeout_s, settings.upload_timeout_s
        )
        form = await receive_multipart(
            request.headers.get("content-type", ""),
            request.stream(),
            service.upload_dir(kind),
            "file",
            limits,
            lambda fields: _check(params_type, fields, settings.client_options),
        )
    except BaseException:
        release_slot()
        raise
    if form.file_path is None:
        release_slot()
        raise ApiError(400, "missing the 'file' part", param="file", code="missing_file")
    upload = Upload(form.file_path, form.filename, form.file_bytes, release_slot)
    try:
        refuse_closed_options(form.fields, settings.client_options)
        return upload, from_form(params_type, form)
    except BaseException:
        upload.close()
        raise


def refuse_closed_options(fields: dict[str, list[str]], client_options: list[str]) -> None:
    """ApiError 400 for a decoding option the server keeps to itself (``service.client_options``); a blank
    field sets nothing, so clients that send every field empty pass."""
    for name in DECODING_OPTIONS:
        if name not in client_options and any(value.strip() for value in fields.get(name, [])):
            allowed = ", ".join(client_options) or "none"
            raise ApiError(
                400,
                f"parameter {name} is not open to clients on this server, which decodes with its own setting "
                f"(service.client_options allows: {allowed})",
                param=name,
                code="option_not_allowed",
            )


def _check(params_type: type[BaseModel], fields: dict[str, list[str]], client_options: list[str]) -> None:
    """The fields received before the file part: closed options first, then values."""
    refuse_closed_options(fields, client_options)
    check_fields(params_type, fields)
