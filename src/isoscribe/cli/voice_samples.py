"""Known speakers' voice samples measured before any file runs: a sample of the wrong length, or one that is
not audio, would otherwise fail every file of a batch after its transcription."""

from __future__ import annotations

from isoscribe.config import Settings
from isoscribe.executors import PerTaskExecutor
from isoscribe.pipeline import FilePipeline, PipelineError, Policy
from isoscribe.pipeline.stages import known_speakers_in, stage_specs
from isoscribe.transcript import REFERENCE_MAX_S, REFERENCE_MIN_S

__all__ = ["voice_sample_refusal"]

_LENGTHS = f"{REFERENCE_MIN_S:g}-{REFERENCE_MAX_S:g} s"


def voice_sample_refusal(settings: Settings) -> str | None:
    """Why a voice sample of ``diarization.speakers_dir`` cannot be used, as the probe stage counts its
    seconds from decoded samples in a worker; None when every one is 2-10 s of audio."""
    known = known_speakers_in(settings.diarization.speakers_dir)
    if not known:
        return None
    executor = PerTaskExecutor(stage_specs(settings), start_method=settings.isolation.start_method)
    pipeline = FilePipeline(executor, Policy(max_duration_s=REFERENCE_MAX_S))
    try:
        for speaker in known:
            try:
                seconds = pipeline.measure(speaker.audio_path)
            except PipelineError as error:
                return f"the voice sample of {speaker.name!r} must be {_LENGTHS} of audio: {error.message}"
            if seconds < REFERENCE_MIN_S:
                return f"the voice sample of {speaker.name!r} ({speaker.audio_path}) lasts {seconds:.2f} s, not {_LENGTHS}"
    finally:
        executor.shutdown()
    return None
