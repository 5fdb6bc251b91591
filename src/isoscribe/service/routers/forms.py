"""The HTTP side of an upload: admit it, stream the multipart body to a file, validate the typed parameters."""

from __future__ import annotations

from typing import Literal, TypeVar

from fastapi import Request
from pydantic import BaseModel

from isoscribe.service.admission import Upload
from isoscribe.service.errors import ApiError
from isoscribe.service.schemas import check_fields, from_form
from isoscribe.service.uploads import ReadLimits, receive_multipart

__all__ = ["receive_form"]

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
            lambda fields: check_fields(params_type, fields),
        )
    except BaseException:
        release_slot()
        raise
    if form.file_path is None:
        release_slot()
        raise ApiError(400, "missing the 'file' part", param="file", code="missing_file")
    upload = Upload(form.file_path, form.filename, form.file_bytes, release_slot)
    try:
        return upload, from_form(params_type, form)
    except BaseException:
        upload.close()
        raise
