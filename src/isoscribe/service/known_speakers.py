"""Known speakers of a request: names with voice samples sent as data URLs (OpenAI's
``known_speaker_names[]`` / ``known_speaker_references[]``), saved to files and measured by the probe
stage in a worker before the file is run; the speech stage embeds them (``stages.diarize``)."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from pathlib import Path

from isoscribe.pipeline import PipelineError, Policy
from isoscribe.service.errors import ApiError
from isoscribe.service.execution import PipelineRunner
from isoscribe.service.uploads import MAX_VOICE_SAMPLES
from isoscribe.transcript import REFERENCE_MAX_S, REFERENCE_MIN_S, KnownSpeaker

__all__ = ["MAX_KNOWN_SPEAKERS", "save_references", "check_references"]

MAX_KNOWN_SPEAKERS = MAX_VOICE_SAMPLES
_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+(?:;[\w-]+=[\w.+-]+)*;base64,", re.IGNORECASE)
_PARAM = "known_speaker_references"


def save_references(names: list[str], references: list[str], folder: Path) -> list[KnownSpeaker]:
    """Each base64 data URL to a new file in ``folder``; 400 naming the first that is not one.
    The caller deletes the files (their paths are the KnownSpeakers' ``audio_path``)."""
    samples = [_decode(index, name, reference) for index, (name, reference) in enumerate(zip(names, references))]
    known: list[KnownSpeaker] = []
    for name, sample in zip(names, samples):
        path = folder / f"{uuid.uuid4().hex}.reference"
        path.write_bytes(sample)
        known.append(KnownSpeaker(name, str(path)))
    return known


async def check_references(pipelines: PipelineRunner, known: list[KnownSpeaker]) -> None:
    """Every sample must be ``REFERENCE_MIN_S``–``REFERENCE_MAX_S`` of decodable audio, as the probe
    stage counts it from decoded samples in a worker; 400 naming the first that is not."""
    for index, speaker in enumerate(known):
        pipeline = pipelines.pipeline(Policy(max_duration_s=REFERENCE_MAX_S))
        try:
            seconds = await pipelines.run(pipeline, lambda path=speaker.audio_path: pipeline.measure(path))
        except PipelineError as error:
            reason = error.message.replace(f"{speaker.audio_path}: ", "").replace(speaker.audio_path, "the sample")
            raise _refused(index, speaker.name, f"{error.kind.value}: {reason}") from None
        if seconds < REFERENCE_MIN_S:
            raise _refused(index, speaker.name, f"it is {seconds:.2f} s long")


def _decode(index: int, name: str, reference: str) -> bytes:
    match = _DATA_URL.match(reference)
    if match is None:
        raise _refused(index, name, "it is not a base64 data URL (data:audio/wav;base64,...)")
    try:
        return base64.b64decode(reference[match.end() :], validate=True)
    except (binascii.Error, ValueError):
        raise _refused(index, name, "its base64 does not decode") from None


def _refused(index: int, name: str, reason: str) -> ApiError:
    return ApiError(
        400,
        f"known_speaker_references[{index}] (for {name!r}) must be {REFERENCE_MIN_S:g}-{REFERENCE_MAX_S:g} s of "
        f"decodable audio: {reason}",
        param=f"{_PARAM}[{index}]",
        code="invalid_known_speaker_reference",
    )
