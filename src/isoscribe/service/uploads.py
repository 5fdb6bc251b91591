"""Multipart uploads streamed straight to a server-named file, with a byte limit enforced while streaming.

Starlette's ``request.form()`` spools files to a temporary file but only after the whole part is read,
and it has no limit for file parts; this parser writes each chunk as it arrives and stops at the limit,
so an upload is never held whole in memory and an oversized one costs at most ``max_bytes`` of disk.
The client's filename never names a file here: its extension is checked against a short allow-list,
and its base name is kept only to be shown back.

Limits hold while reading: each field has a size cap before it is buffered, voice samples are counted
as their parts begin (the fifth is refused before any of its bytes is kept), a sender that stalls for
``idle_timeout_s`` or takes longer than ``total_timeout_s`` is cut off (408), and ``check_fields`` sees
the fields that came before the file part, so a bad parameter is refused before the file is stored.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from isoscribe.service.errors import ApiError

__all__ = [
    "UploadedForm", "ReadLimits", "receive_multipart", "safe_extension", "MAX_FIELD_BYTES", "MAX_REFERENCE_BYTES",
]

MAX_FIELD_BYTES = 64 * 1024
"""A non-file form field (prompt, model …) larger than this is refused."""
MAX_REFERENCE_BYTES = 4 * 1024 * 1024
"""A known speaker's voice sample as a data URL: 10 s of 44.1 kHz stereo 16-bit WAV is 2.4 MB in base64."""
_LARGE_FIELDS = {"known_speaker_references[]": MAX_REFERENCE_BYTES, "known_speaker_references": MAX_REFERENCE_BYTES}
MAX_VOICE_SAMPLES = 4
"""Known speakers' voice samples per request."""
MAX_FIELDS = 64
_MAX_FILENAME_CHARS = 200
_EXTENSION = re.compile(r"^[a-z0-9]{1,5}$")
_AUDIO_EXTENSIONS = frozenset(
    "wav mp3 m4a mp4 mpeg mpga ogg oga opus webm flac aac wma aif aiff amr mkv mov avi 3gp caf".split()
)
"""Kept on the stored file (decoders look at it); anything else is stored without one."""
_MALFORMED = "invalid_multipart"


@dataclass(frozen=True)
class ReadLimits:
    max_bytes: int
    idle_timeout_s: float = 30.0
    total_timeout_s: float = 3600.0


@dataclass
class UploadedForm:
    fields: dict[str, list[str]] = field(default_factory=dict)
    file_path: Path | None = None
    """Server-chosen path of the uploaded file; the caller deletes it."""
    file_bytes: int = 0
    file_field: str = ""
    filename: str = ""
    """The client's name for the file without its folders, kept only to show it back to the client."""

    def first(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None


def _unescaped(filename: str) -> str:
    """Browsers and httpx send a filename's quote, CR and LF as %22, %0D and %0A (the HTML form encoding); the
    quote comes back, a line break becomes a space."""
    return re.sub(r"%(?:0D|0A)", " ", filename.replace("%22", '"'), flags=re.IGNORECASE)


def safe_extension(filename: str | None) -> str:
    """``.wav`` from ``../../x.WAV``; '' when the name has no plain short extension."""
    if not filename or "." not in filename:
        return ""
    ext = filename.rsplit(".", 1)[1].lower()
    return f".{ext}" if _EXTENSION.match(ext) and ext in _AUDIO_EXTENSIONS else ""


async def receive_multipart(
    content_type: str,
    body: AsyncIterator[bytes],
    upload_dir: Path,
    file_field: str,
    limits: ReadLimits | int,
    check_fields: Callable[[dict[str, list[str]]], None] | None = None,
) -> UploadedForm:
    """Parse a multipart body; the part named ``file_field`` goes to a new file in ``upload_dir``.

    Raises ApiError 400 for a malformed or unfinished body (no closing boundary: the file may be cut
    short) or what ``check_fields`` refuses, 408 for a sender too slow, and 413 (deleting the partial
    file) past ``limits.max_bytes``.
    """
    limits = limits if isinstance(limits, ReadLimits) else ReadLimits(limits)
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise ApiError(400, "expected a multipart/form-data body with a boundary", code="invalid_content_type")
    state = _PartState(upload_dir, file_field, limits.max_bytes, check_fields)
    parser = MultipartParser(boundary, state.callbacks())
    try:
        async for chunk in _within_deadlines(body, limits):
            _write(parser, chunk)
            state.raise_pending()
        parser.finalize()
        state.raise_pending()
        if not state.ended:
            raise ApiError(400, "incomplete multipart body: it ends before its closing boundary", code=_MALFORMED)
    except BaseException:
        state.discard()
        raise
    finally:
        state.close()
    return state.form


def _write(parser: MultipartParser, chunk: bytes) -> None:
    try:
        parser.write(chunk)
    except MultipartParseError as malformed:
        raise ApiError(400, f"malformed multipart body: {malformed}", code=_MALFORMED) from None


async def _within_deadlines(body: AsyncIterator[bytes], limits: ReadLimits) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.total_timeout_s
    chunks = body.__aiter__()
    while True:
        wait_s = min(limits.idle_timeout_s, deadline - loop.time())
        try:
            if wait_s <= 0:
                raise TimeoutError
            chunk = await asyncio.wait_for(chunks.__anext__(), wait_s)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise ApiError(
                408, f"upload too slow: nothing for {limits.idle_timeout_s:g} s or not whole within "
                f"{limits.total_timeout_s:g} s", code="upload_timeout", headers={"Connection": "close"},
            ) from None
        yield chunk


class _PartState:
    """Receives the parser's callbacks; errors are raised after ``write`` returns (see raise_pending)."""

    def __init__(
        self,
        upload_dir: Path,
        file_field: str,
        max_bytes: int,
        check_fields: Callable[[dict[str, list[str]]], None] | None = None,
    ) -> None:
        self.check_fields = check_fields
        self.large_fields = 0
        self.form = UploadedForm(file_field=file_field)
        self.upload_dir = upload_dir
        self.file_field = file_field
        self.max_bytes = max_bytes
        self.error: ApiError | None = None
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._value = bytearray()
        self._file: BinaryIO | None = None
        self._in_file = False
        self.ended = False
        """The closing boundary was read."""

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_cb,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def raise_pending(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        self.close()
        if self.form.file_path is not None:
            self.form.file_path.unlink(missing_ok=True)
            self.form.file_path = None

    def _fail(self, error: ApiError) -> None:
        if self.error is None:
            self.error = error

    def _part_begin(self) -> None:
        self._headers = {}
        self._header_name = b""
        self._header_value = b""
        self._value = bytearray()
        self._in_file = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = b""
        self._header_value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        if self._name in _LARGE_FIELDS:
            self.large_fields += 1
            if self.large_fields > MAX_VOICE_SAMPLES:
                return self._fail(ApiError(400, f"more than {MAX_VOICE_SAMPLES} '{self._name}' fields", param=self._name))
        if self._name != self.file_field:
            return
        if self.form.file_path is not None:
            return self._fail(ApiError(400, f"more than one '{self.file_field}' part", param=self.file_field))
        if self.check_fields is not None:
            try:
                self.check_fields(self.form.fields)
            except ApiError as refused:
                return self._fail(refused)
        filename = _unescaped(params.get(b"filename", b"").decode("utf-8", "replace"))
        self.form.filename = filename.replace("\\", "/").rsplit("/", 1)[-1][:_MAX_FILENAME_CHARS]
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self.form.file_path = self.upload_dir / f"{uuid.uuid4().hex}{safe_extension(filename)}"
        self._file = open(self.form.file_path, "wb")
        self._in_file = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        if self._in_file:
            self.form.file_bytes += end - start
            if self.form.file_bytes > self.max_bytes:
                limit_mb = self.max_bytes / 1_000_000
                return self._fail(
                    ApiError(413, f"upload larger than the limit of {limit_mb:g} MB", code="upload_too_large")
                )
            assert self._file is not None
            self._file.write(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > _LARGE_FIELDS.get(self._name, MAX_FIELD_BYTES):
            self._fail(ApiError(413, f"form field '{self._name}' is too large", param=self._name))

    def _end(self) -> None:
        self.ended = True

    def _part_end(self) -> None:
        if self._in_file:
            self.close()
            self._in_file = False
            return
        if sum(len(v) for v in self.form.fields.values()) >= MAX_FIELDS:
            return self._fail(ApiError(400, "too many form fields"))
        self.form.fields.setdefault(self._name, []).append(self._value.decode("utf-8", "replace"))
