"""Real transcripts for the summary tests, built from the reference annotations in shared/data."""

from __future__ import annotations

import json
from pathlib import Path

from isoscribe.pipeline import summary_text
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


def stm_dialogue_text(shared_data: Path) -> str:
    return summary_text(stm_dialogue_transcript(shared_data))


def long_transcript_text(shared_data: Path) -> str:
    """Every reference transcript in the manifest, one labelled line each, after the dialogue (~800 tokens)."""
    clips = json.loads((shared_data / "manifest.json").read_text())["clips"]
    seen: set[str] = set()
    lines = [stm_dialogue_text(shared_data)]
    for clip in clips:
        text = clip.get("reference_text")
        if text and text not in seen and not clip["path"].startswith("diarization/"):
            seen.add(text)
            lines.append(f"{clip['path'].split('/')[0].upper()}: {text}")
    return "\n".join(lines)
