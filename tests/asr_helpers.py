"""Shared by the ASR and diarization tests: text normalization for WER, DER against an RTTM."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from isoscribe.transcript import SpeakerTurn

ISOSCRIBE = Path(sys.executable).with_name("isoscribe")


def run_cli(*args: str, cwd: Path, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    """``isoscribe ARGS`` as a real subprocess, without this shell's ISOSCRIBE_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOSCRIBE_")}
    return subprocess.run([str(ISOSCRIBE), *args], capture_output=True, text=True, timeout=timeout_s, cwd=cwd, env=env)


def normalize(text: str) -> str:
    """Lower case, no punctuation (apostrophes kept inside words), single spaces."""
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^\w\s']", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return jiwer.wer(normalize(reference), normalize(hypothesis))


def read_rttm(path: Path):
    from pyannote.core import Annotation, Segment

    annotation = Annotation()
    for track, line in enumerate(Path(path).read_text().splitlines()):
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            start, duration = float(fields[3]), float(fields[4])
            annotation[Segment(start, start + duration), track] = fields[7]
    return annotation


def turns_annotation(turns: list[SpeakerTurn]):
    from pyannote.core import Annotation, Segment

    annotation = Annotation()
    for track, turn in enumerate(turns):  # a track each: two voices over the same span are both kept
        annotation[Segment(turn.start, turn.end), track] = turn.speaker
    return annotation


def der(reference_rttm: Path, turns: list[SpeakerTurn], collar_each_side_s: float = 0.25) -> float:
    """Diarization error rate; pyannote.metrics' ``collar`` is the total width, so it is twice the side."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    metric = DiarizationErrorRate(collar=2 * collar_each_side_s, skip_overlap=False)
    return float(metric(read_rttm(reference_rttm), turns_annotation(turns)))
