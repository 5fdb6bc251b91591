"""The probe stage: is this file decodable audio, and how long is it really?

Runs in a worker before any model work, so a crafted file that crashes or hangs the demuxer costs a
small worker, never the server or the batch. The duration is counted from decoded samples and
decoding stops at ``max_duration_s``: a header that claims 1 s for 10 hours of audio changes nothing.
"""

from __future__ import annotations

from isoscribe.audio import measure_duration
from isoscribe.transcript import ProbeRequest, ProbeResult

__all__ = ["load", "run"]


def load(config: object) -> None:
    """Nothing to load: PyAV is imported with this module."""


def run(model: None, request: ProbeRequest) -> ProbeResult:
    return ProbeResult(measure_duration(request.audio_path, request.max_duration_s))
