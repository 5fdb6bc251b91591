"""The decoding options every entry point takes, by name: CLI flags, ``[asr]`` keys, API form and job fields.

``service.client_options`` says which of them a request may set; the server refuses the others (400).
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["DecodingOption", "DECODING_OPTIONS", "CLIENT_OPTIONS", "MAX_BEAM_SIZE", "setting_name"]

DecodingOption = Literal[
    "prompt", "hotwords", "beam_size", "temperature", "vad_filter", "condition_on_previous_text", "word_timestamps",
    "no_speech_threshold",
]
DECODING_OPTIONS: tuple[str, ...] = get_args(DecodingOption)

CLIENT_OPTIONS: tuple[str, ...] = tuple(name for name in DECODING_OPTIONS if name != "beam_size")
"""What a client may set unless the server says otherwise. Not beam_size: a wider beam makes a request cost
more decoding time than admission counts for it, so one client could slow everyone's."""

MAX_BEAM_SIZE = 10

_SETTING_NAMES = {"prompt": "initial_prompt", "temperature": "temperatures"}


def setting_name(option: str) -> str:
    """The ``[asr]`` key of ``option`` (OpenAI's field names differ for two)."""
    return _SETTING_NAMES.get(option, option)
