"""What crosses Redis: requests, results and isolation errors as JSON, the client's settings
sections, the files a request reads (named relative to shared storage), and big results spilled
to a file there."""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np

from isoscribe.config import Settings
from isoscribe.files import write_atomic
from isoscribe.isolation import IsolationError, StageError
from isoscribe.transcript import PieceResult

__all__ = [
    "encode_value",
    "decode_value",
    "encode_error",
    "decode_error",
    "client_sections",
    "request_files",
    "with_request_files",
    "localize_request",
    "renamed_paths",
    "with_callers_source",
    "spill_if_big",
]

_ARRAY = "__ndarray__"
SPILL_BYTES = 256 * 1024
"""Results larger than this go to a file in shared_dir; Redis gets the file's name."""


def encode_value(value: Any) -> dict[str, Any]:
    """JSON for a request or result: plain JSON values, an isoscribe dataclass by type name, or a list of
    either (the speaker turns that clustering a long file's pieces returns)."""
    if isinstance(value, list) and any(dataclasses.is_dataclass(item) for item in value):
        return {"list": [encode_value(item) for item in value]}
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return {"json": value}
    cls = type(value)
    if dataclasses.is_dataclass(value) and cls.__module__.startswith("isoscribe."):
        data = value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
        return {"type": f"{cls.__module__}:{cls.__qualname__}", "data": _without_arrays(data)}
    raise TypeError(f"cannot send {cls.__name__} through Celery: not JSON and not an isoscribe dataclass")


def decode_value(encoded: dict[str, Any]) -> Any:
    if "json" in encoded:
        return encoded["json"]
    if "list" in encoded:
        return [decode_value(item) for item in encoded["list"]]
    module_name, _, qualname = encoded["type"].partition(":")
    if not module_name.startswith("isoscribe."):
        raise ValueError(f"refusing to build {encoded['type']}: only isoscribe types cross Celery")
    cls = getattr(importlib.import_module(module_name), qualname)
    data = _with_arrays(encoded["data"])
    return cls.from_dict(data) if hasattr(cls, "from_dict") else _build(cls, data)


def _without_arrays(value: Any) -> Any:
    """``value`` with each numpy array (a piece's speaker vectors) as base64 bytes, dtype and shape."""
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        return {_ARRAY: base64.b64encode(array.tobytes()).decode("ascii"), "dtype": array.dtype.str,
                "shape": list(array.shape)}
    if isinstance(value, dict):
        return {key: _without_arrays(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_arrays(item) for item in value]
    return value


def _with_arrays(value: Any) -> Any:
    if isinstance(value, dict):
        if _ARRAY in value:
            flat = np.frombuffer(base64.b64decode(value[_ARRAY]), dtype=np.dtype(value["dtype"]))
            return flat.reshape(value["shape"]).copy()
        return {key: _with_arrays(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_arrays(item) for item in value]
    return value


def _build(cls: type, data: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {field.name for field in dataclasses.fields(cls)}
    return cls(**{name: _coerce(hints[name], value) for name, value in data.items() if name in known})


def _coerce(hint: Any, value: Any) -> Any:
    """JSON gives lists where the dataclass wants tuples or nested dataclasses; put them back."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in args if arg is not type(None)]
        return _coerce(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _build(hint, value)
    if origin is tuple and isinstance(value, list):
        item = args[0] if args else Any
        return tuple(_coerce(item, v) for v in value)
    if origin is list and isinstance(value, list) and args:
        return [_coerce(args[0], v) for v in value]
    return value


def _error_types() -> dict[str, type[IsolationError]]:
    from isoscribe import isolation

    found = {name: value for name, value in vars(isolation).items() if isinstance(value, type)}
    return {name: cls for name, cls in found.items() if issubclass(cls, IsolationError)}


def encode_error(error: IsolationError) -> dict[str, Any]:
    fields = {field.name: getattr(error, field.name) for field in dataclasses.fields(error)}
    return {"type": type(error).__name__, "fields": fields}


def decode_error(encoded: dict[str, Any]) -> IsolationError:
    cls = _error_types().get(encoded["type"], StageError)
    return cls(**encoded["fields"])


def client_sections(settings: Settings) -> dict[str, Any]:
    """The client's result-changing settings (asr, diarization, llm), less its paths and secrets (its voice
    samples travel with each request, staged like its audio)."""
    return settings.model_dump(
        mode="json",
        include={"asr", "diarization", "llm"},
        exclude={"asr": {"model_cache_dir"}, "llm": {"api_key"}, "diarization": {"speakers_dir"}},
    )


def request_files(request: Any) -> list[str]:
    """The files a request reads: its audio (if any), then its known speakers' voice samples."""
    audio_path = getattr(request, "audio_path", None)
    samples = [speaker.audio_path for speaker in getattr(request, "known_speakers", ())]
    return ([audio_path] if audio_path is not None else []) + samples


def with_request_files(request: Any, paths: list[str]) -> Any:
    """``request`` reading ``paths`` instead, in ``request_files``'s order."""
    if not paths:
        return request
    remaining = iter(paths)
    changes: dict[str, Any] = {}
    if getattr(request, "audio_path", None) is not None:
        changes["audio_path"] = next(remaining)
    known = getattr(request, "known_speakers", ())
    if known:
        changes["known_speakers"] = tuple(dataclasses.replace(speaker, audio_path=next(remaining)) for speaker in known)
    return dataclasses.replace(request, **changes)


def localize_request(request: Any, shared_dir: Path | None) -> Any:
    """``request`` with the files it names relative to shared storage under this machine's ``shared_dir``."""
    paths = request_files(request)
    relative = [path for path in paths if not Path(path).is_absolute()]
    if not relative:
        return request
    if shared_dir is None:
        raise ValueError(f"request names {relative[0]} in shared storage but this worker has no celery.shared_dir")
    return with_request_files(request, [str(Path(shared_dir) / path) for path in paths])


def with_callers_source(value: Any, sent_audio: str | None, original_audio: str | None) -> Any:
    """``value`` (a transcript, or a piece's) naming the caller's audio where the worker named its copy of it."""
    if isinstance(value, PieceResult):
        return dataclasses.replace(value, transcript=with_callers_source(value.transcript, sent_audio, original_audio))
    source = getattr(value, "source", None)
    if source and sent_audio and Path(source).name == Path(sent_audio).name:
        return dataclasses.replace(value, source=original_audio)
    return value


def renamed_paths(error: IsolationError, renames: dict[str, str]) -> IsolationError:
    """``error`` with each path of ``renames`` in its text replaced by the path it maps to: a worker's error
    names the files as its client sent them, and the client gives it back naming the caller's own files."""
    changes: dict[str, str] = {}
    for field in dataclasses.fields(error):
        value = getattr(error, field.name)
        if field.name != "stage" and isinstance(value, str):
            for old, new in renames.items():
                value = _replace_path(value, old, new)
            changes[field.name] = value
    return dataclasses.replace(error, **changes)


_CUT_PATH_CHARS = 16
"""The shortest start of a path that a message cut short ("…") is taken to end in."""


def _replace_path(text: str, old: str, new: str) -> str:
    text = text.replace(old, new)
    # Decoders' messages are cut at a length (isoscribe.audio), often inside the path they repeat.
    for length in range(len(old) - 1, _CUT_PATH_CHARS - 1, -1):
        text = text.replace(f"{old[:length]}…", f"{new}…")
    return text


def spill_if_big(payload: dict[str, Any], task_id: str, shared_dir: Path | None) -> dict[str, Any]:
    """``payload``, or when it is big a pointer to the file in ``shared_dir`` that holds it."""
    text = json.dumps(payload)
    if len(text) <= SPILL_BYTES or shared_dir is None:
        return payload
    name = f"results/{task_id}.json"
    write_atomic(Path(shared_dir) / name, text)
    return {"result_file": name, "worker": payload["worker"]}
