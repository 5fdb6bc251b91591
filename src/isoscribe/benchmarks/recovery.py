"""Part of ``isoscribe bench accuracy``: what skipped-speech recovery brings and what it invents.

Each recording is transcribed twice with the same loaded model, recovery on and off; the segments
only the first has are the recovered fragments. Reported per group (the shared real clips with a
reference, rendered dialogues, long files joined from referenced clips):
* false fragments per minute: recovered fragments none of whose words is in the reference;
* the WER gain from recovery (WER off minus WER on, over the group's joined text);
* whether recovery is worth keeping on there: it gains, or at least invents nothing.
Tuning data (``TUNED_ON``, measured here too, so their rows are not independent figures): the demo
dialogue and acoustic_corpus for the stray-fragment rules of ``stages/recovery.py``, the 300 s long
file for its word-probability rule. The other shared clips and the rendered meetings tuned nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from isoscribe.audio import SAMPLE_RATE, decode_audio
from isoscribe.benchmarks.asr import make_referenced_long_audio
from isoscribe.benchmarks.meetings import make_meeting, script_turns
from isoscribe.demo import make_dialogue
from isoscribe.repetition import words_of
from isoscribe.transcript import Segment, Transcript

__all__ = ["recovery_section", "recovered_fragments"]

LONG_FILE_S = 300.0
QUICK_LONG_FILE_S = 60.0
MEETING_SEED = 100
TUNED_ON = ("demo dialogue", "long/acoustic_corpus.wav", f"referenced clips joined, {LONG_FILE_S:.0f} s")


def recovered_fragments(with_recovery: Transcript, without: Transcript) -> list[Segment]:
    """The segments only the transcript made with recovery has."""
    main = {(round(s.start, 2), round(s.end, 2), s.text) for s in without.segments}
    return [s for s in with_recovery.segments if (round(s.start, 2), round(s.end, 2), s.text) not in main]


def recovery_section(engines: Any, data_dir: Path, temp: Path, quick: bool) -> dict[str, Any]:
    """``engines``: the accuracy bench's ``_Engines`` (one loaded model, isoscribe's transcribe)."""
    groups = {
        "shared_clips": _shared_clips(data_dir, quick),
        "rendered_dialogues": _dialogues(temp, quick),
        "long_files": _long_files(data_dir, temp, quick),
    }
    section: dict[str, Any] = {"model": engines.settings.asr.model, "tuned_on": list(TUNED_ON)}
    for name, recordings in groups.items():
        rows = [_row(engines, label, path, reference) for label, path, reference in recordings]
        section[name] = _summary(rows)
    section["recovery_worth_it_everywhere"] = all(section[name]["recovery_worth_it"] for name in groups)
    return section


def _shared_clips(data_dir: Path, quick: bool) -> list[tuple[str, Path, str]]:
    """Every shared clip with one reference for its whole audio (the two-channel MFA file included:
    its second channel speaks after the first)."""
    manifest = json.loads((data_dir / "manifest.json").read_text())["clips"]
    prefixes = ("jfk/jfk.wav", "librispeech/", "long/acoustic_corpus") if quick else ("jfk/", "librispeech/",
                                                                                      "librivox/", "long/")
    return [(c["path"], data_dir / c["path"], c["reference_text"]) for c in manifest
            if c["reference_text"] and c["path"].startswith(prefixes)]


def _dialogues(temp: Path, quick: bool) -> list[tuple[str, Path, str]]:
    paths = [("demo dialogue", make_dialogue(temp / "recovery" / "demo.wav"))]
    for speakers in (2, 3) if quick else (2, 3, 4, 5):
        path = make_meeting(temp / "recovery" / f"meeting{speakers}.wav", speakers, MEETING_SEED)
        paths.append((f"rendered {speakers} voices seed {MEETING_SEED}", path))
    return [(label, path, " ".join(turn["text"] for turn in script_turns(path))) for label, path in paths]


def _long_files(data_dir: Path, temp: Path, quick: bool) -> list[tuple[str, Path, str]]:
    duration_s = QUICK_LONG_FILE_S if quick else LONG_FILE_S
    path = temp / "recovery" / "long.wav"
    reference = make_referenced_long_audio(data_dir, path, duration_s)
    return [(f"referenced clips joined, {duration_s:.0f} s", path, reference)]


def _row(engines: Any, label: str, path: Path, reference: str) -> dict[str, Any]:
    from isoscribe.benchmarks.accuracy import wer

    audio = decode_audio(path)
    with_recovery = engines.isoscribe(audio, path)
    without = engines.isoscribe(audio, path, recover=False)
    reference_words = set(words_of(reference))
    fragments = recovered_fragments(with_recovery, without)
    false = [s for s in fragments if not set(words_of(s.text)) & reference_words]
    return {
        "recording": label,
        "minutes": round(audio.size / SAMPLE_RATE / 60, 3),
        "wer_with_recovery": round(wer(reference, with_recovery.text), 4),
        "wer_without_recovery": round(wer(reference, without.text), 4),
        "recovered": [f"{s.start:.2f}-{s.end:.2f} {s.text}" for s in fragments],
        "false_fragments": [f"{s.start:.2f}-{s.end:.2f} {s.text}" for s in false],
        "reference": reference,
        "with_recovery_text": with_recovery.text,
        "without_recovery_text": without.text,
    }


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from isoscribe.benchmarks.accuracy import wer

    minutes = sum(r["minutes"] for r in rows)
    reference = " ".join(r["reference"] for r in rows)
    gain = wer(reference, " ".join(r["without_recovery_text"] for r in rows)) - wer(
        reference, " ".join(r["with_recovery_text"] for r in rows)
    )
    false_per_minute = sum(len(r["false_fragments"]) for r in rows) / minutes if minutes else 0.0
    for row in rows:
        del row["reference"], row["with_recovery_text"], row["without_recovery_text"]
    return {
        "recordings": rows,
        "minutes": round(minutes, 2),
        "recovered_fragments": sum(len(r["recovered"]) for r in rows),
        "false_fragments_per_minute": round(false_per_minute, 3),
        "wer_gain": round(gain, 4),
        "recovery_worth_it": gain > 0 or (gain >= 0 and false_per_minute == 0),
    }
