"""Real transcripts for the summary tests, built from the reference annotations in shared/data."""

from __future__ import annotations

import json
from pathlib import Path

from isoscribe.summary.text import turns_of
from isoscribe.summary.types import SummaryTurn
from isoscribe.transcript import Segment, Transcript


def stm_dialogue_transcript(shared_data: Path) -> Transcript:
    """pyannote's sample.wav as a diarized transcript: its STM gives speaker, times and text per line."""
    segments = []
    for index, line in enumerate((shared_data / "diarization" / "sample.stm").read_text().splitlines()):
        _, _, speaker, start, end, text = line.split(" ", 5)
        segments.append(Segment(id=index, start=float(start), end=float(end), text=" " + text, speaker=speaker))
    return Transcript(
        segments=segments,
        language="en",
        language_probability=1.0,
        duration_s=30.0,
        model="reference",
        speakers=sorted({segment.speaker for segment in segments}),
        source=str(shared_data / "diarization" / "sample.wav"),
    )


def stm_dialogue_turns(shared_data: Path) -> list[SummaryTurn]:
    return turns_of(stm_dialogue_transcript(shared_data))


def qmsum_meeting(name: str, split: str = "val"):
    """A QMSum meeting (shared/data/qmsum) as turns timed at 150 words a minute."""
    from isoscribe.benchmarks.qmsum import load_meetings

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "qmsum"
    return next(m for m in load_meetings(shared, split) if m.name == name)
