"""The speaker-count rule chosen by leave-one-source-out, and what it gives on each held-out source.

Three sources of recordings with a known number of speakers:
* ``rendered``: espeak-ng meetings of 2–5 voices (``meetings.make_meeting``, seeds 100+);
* ``real``: the shared real recordings (``REAL_COUNTS``) and Picovoice's falcon test clip;
* ``long``: minutes of real clips of different speakers in rounds (``LONG_FILES``), like the hour files.

Each recording's speaker vectors (and segmentation's local-speaker units) are computed once per
backend. For each source, the ``CountRule`` (linkage distance, merge similarity, least windows and
share) that counts best on the other two sources is picked from a grid, then measured on the held-out
one: count accuracy, and DER (collar 0.25 s each side, and 0) where an RTTM exists. The count runs on
the units (``grid_counts``), or on windows alone for the rule without segmentation (``without_units``),
raised by NME-SC's count where the backend's rule has ``eigengap_floor`` (resemblyzer's: it lifted the
held-out mean count accuracy from 0.58 to 0.74; CAM++'s fell from 0.54 to 0.40 with it, so its rules
have none). The rule chosen on all three sources is the one a backend ships with
(``clustering.RESEMBLYZER_UNITS_RULE``; ``diarize.CAMPPLUS_UNITS_RULE`` was chosen before the least share
started at 1 %, and is kept until its 60-minute counts are measured again).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from isoscribe.audio import SAMPLE_RATE, decode_audio
from isoscribe.benchmarks.asr import open_wav, write_samples
from isoscribe.benchmarks.meetings import make_meeting, meeting_rttm_path
from isoscribe.stages import clustering, diarize, local_speakers, vad
from isoscribe.transcript import SpeakerClusterRequest, SpeakerVectors, SpeakerWindow

__all__ = ["Recording", "recordings", "vectors_of", "grid_counts", "without_units", "leave_one_source_out", "choose_rule", "measure", "rule_fields", "der", "FALCON_CLIP"]

SOURCES = ("rendered", "real", "long")
REAL_COUNTS = {
    "diarization/sample.wav": 2,
    "diarization/tst00.wav": 4,
    "jfk/jfk.wav": 1,
    "long/sonnet001.wav": 1,
    "long/acoustic_corpus.wav": 1,
}
"""The shared real recordings and their true speaker count (tst00: the four AMI speakers of its RTTM)."""
FALCON_CLIP = Path(__file__).resolve().parents[3] / "tests" / "data" / "diarization" / "falcon_test.wav"
"""Picovoice falcon's test clip (Apache-2.0): three real speakers, 18 s; its RTTM lies beside it."""
LONG_FILES = {
    "sample + jfk + librispeech 1089": (["diarization/sample.wav", "jfk/jfk.wav",
                                         "librispeech/1089-134686-0000.wav", "librispeech/1089-134686-0002.wav"], 4),
    "tst00 + sonnet + librivox": (["diarization/tst00.wav", "long/sonnet001.wav",
                                   "librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
                                   "librivox/sense_and_sensibility_01_austen_64kb-0920.wav"], 6),
    "falcon + acoustic + librispeech 61, 2412": (["falcon", "long/acoustic_corpus.wav",
                                                  "librispeech/61-70968-0000.flac",
                                                  "librispeech/2412-153948-0000.flac"], 6),
    "the hour file's five voices": (["diarization/sample.wav", "jfk/jfk.wav", "long/acoustic_corpus.wav",
                                     "long/sonnet001.wav"], 5),
}
"""Clips (shared-data paths, or "falcon") played in rounds, and the number of different speakers."""
LINKAGE_DISTANCES = tuple(round(float(x), 2) for x in np.arange(0.2, 0.61, 0.05))
MERGE_SIMILARITIES = tuple(round(float(x), 2) for x in np.arange(0.5, 0.96, 0.05))
MIN_WINDOWS = (2, 3, 5, 8)
MIN_SHARES = (0.01, 0.03, 0.06, 0.1)
"""From 1 %: with no least share, a speaker of two windows counts however long the file, and the 60-minute
file counted one speaker more in pieces than whole (the long files here last 4 minutes, too short to show it)."""
GRID = (LINKAGE_DISTANCES, MERGE_SIMILARITIES, MIN_WINDOWS, MIN_SHARES)
"""Every CountRule tried: its four fields' values."""


@dataclass(frozen=True)
class Recording:
    name: str
    source: str
    path: Path
    speakers: int
    rttm: Path | None = None


def recordings(data_dir: Path, folder: Path, quick: bool) -> list[Recording]:
    """Every source's recordings, rendered or built into ``folder``."""
    seeds = range(100, 102) if quick else range(100, 105)
    rendered = [
        Recording(f"rendered {k} voices seed {seed}", "rendered", path, k, meeting_rttm_path(path))
        for seed in seeds for k in (2, 3, 4, 5)
        for path in [make_meeting(folder / f"meeting{k}_{seed}.wav", k, seed)]
    ]
    real = [Recording(path, "real", data_dir / path, k, _rttm_beside(data_dir / path)) for path, k in REAL_COUNTS.items()]
    if FALCON_CLIP.is_file():
        real.append(Recording("falcon test clip", "real", FALCON_CLIP, 3, _rttm_beside(FALCON_CLIP)))
    minutes = 2.0 if quick else 4.0
    long = [
        Recording(f"long: {name}, {minutes:g} min", "long",
                  _build_long(data_dir, folder / f"long{index}.wav", clips, minutes * 60), speakers)
        for index, (name, (clips, speakers)) in enumerate(LONG_FILES.items())
        if "falcon" not in clips or FALCON_CLIP.is_file()
    ]
    return rendered + real + long


def vectors_of(model: diarize.Diarizer, recording: Recording, cache: Path | None = None) -> SpeakerVectors:
    """The recording's speaker vectors over its Silero VAD speech, as the diarize stage computes them."""
    name = f"{model.backend}-{diarize.window_s(model)}-units-{recording.path.stem}-{recording.source}.npz"
    cached = cache / name if cache else None
    if cached is not None and cached.is_file():
        stored = np.load(cached)
        windows = [SpeakerWindow(*row[:3], int(row[3])) for row in stored["windows"]]
        units = (stored["window_units"], stored["unit_chunks"]) if "unit_chunks" in stored else (None, None)
        return SpeakerVectors(windows, stored["vectors"], [tuple(span) for span in stored["overlaps"]], *units)
    audio = decode_audio(recording.path)
    vectors = diarize.speaker_vectors(model, audio, vad.detect(audio).seconds)
    if cached is not None:
        rows = np.array([[w.start, w.span_start, w.span_end, w.region] for w in vectors.windows]).reshape(-1, 4)
        units = {"window_units": vectors.window_units, "unit_chunks": vectors.unit_chunks}
        np.savez(cached, windows=rows, vectors=vectors.vectors, overlaps=np.array(vectors.overlaps).reshape(-1, 2),
                 **{key: value for key, value in units.items() if value is not None})
    return vectors


def grid_counts(vectors: SpeakerVectors, eigengap_floor: bool = False) -> np.ndarray:
    """The automatic count for every rule of ``GRID`` (one axis per field), as the stage counts: on
    segmentation's local-speaker units when the vectors have them, else on windows; with
    ``eigengap_floor``, raised by the windows' NME-SC count (``clustering.with_eigengap``)."""
    counts = np.ones(tuple(len(axis) for axis in GRID), dtype=int)
    if len(vectors.windows) < 2:
        return counts
    points = clustering.clustered_sample(vectors.vectors)
    units = local_speakers.units_of(vectors)
    tree = clustering.linkage_tree(points) if units is None else None
    eigengap = clustering.nme_count(points) if eigengap_floor else 1
    for index in np.ndindex(counts.shape):
        rule = _rule(index)
        most = max(1, min(8, len(points) - 1, len(points) // rule.min_windows))
        found = clustering.count_units(units, rule) if units is not None else clustering.count_speakers(points, rule, tree)
        counts[index] = min(clustering.with_eigengap(found, eigengap), most)
    return counts


def without_units(vectors: SpeakerVectors) -> SpeakerVectors:
    """The same vectors counted on windows alone (the rule before local speakers)."""
    return replace(vectors, window_units=None, unit_chunks=None)


def choose_rule(rows: list[dict[str, Any]], sources: tuple[str, ...], eigengap_floor: bool = False) -> clustering.CountRule:
    """The rule with the best mean count accuracy over ``sources`` (each source weighs the same), then
    the smallest mean count error; among equals, the one nearest their middle on the grid. ``eigengap_floor``:
    the rows' grids were counted with it, and so is the rule."""
    accuracy = np.mean([np.mean([r["grid"] == r["speakers"] for r in rows if r["source"] == s], axis=0)
                        for s in sources], axis=0)
    error = np.mean([np.mean([np.abs(r["grid"] - r["speakers"]) for r in rows if r["source"] == s], axis=0)
                     for s in sources], axis=0)
    best_accuracy = accuracy == accuracy.max()
    best = np.argwhere(best_accuracy & np.isclose(error, error[best_accuracy].min()))
    middle = best.mean(axis=0)
    return _rule(tuple(best[np.argmin(((best - middle) ** 2).sum(axis=1))]), eigengap_floor)


def _rule(index: tuple[int, ...], eigengap_floor: bool = False) -> clustering.CountRule:
    return clustering.CountRule(*(axis[i] for axis, i in zip(GRID, index)), eigengap_floor=eigengap_floor)


def rule_fields(rule: clustering.CountRule) -> dict[str, float]:
    return {"linkage_distance": rule.linkage_distance, "merge_similarity": rule.merge_similarity,
            "min_windows": rule.min_windows, "min_share": rule.min_share, "eigengap_floor": rule.eigengap_floor}


def leave_one_source_out(model: diarize.Diarizer, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """For each source: the rule chosen on the others, and its counts and DER on this one."""
    report: dict[str, Any] = {}
    floor = model.count_rule.eigengap_floor
    for held_out in SOURCES:
        rule = choose_rule(rows, tuple(s for s in SOURCES if s != held_out), floor)
        report[held_out] = {"tuned_on": [s for s in SOURCES if s != held_out], **measure(model, rule, rows, held_out)}
    final = choose_rule(rows, SOURCES, floor)
    report["chosen_on_all_sources"] = rule_fields(final)
    return report


def measure(model: diarize.Diarizer, rule: clustering.CountRule, rows: list[dict], source: str) -> dict[str, Any]:
    """``rule``'s counts on ``source``'s recordings, and its DER (collar 0.25 s and 0) where an RTTM exists."""
    ruled = replace(model, count_rule=rule)
    measured = []
    for row in (r for r in rows if r["source"] == source):
        turns = diarize.cluster_pieces(ruled, SpeakerClusterRequest([row["vectors"]]))
        count = len({t.speaker for t in turns})
        rttm = row["rttm"]
        measured.append({
            "recording": row["name"], "speakers": row["speakers"], "found": count,
            "der": der(rttm, turns) if rttm else None, "der_collar_0": der(rttm, turns, 0.0) if rttm else None,
        })
    with_der = [m["der"] for m in measured if m["der"] is not None]
    return {
        "rule": rule_fields(rule),
        "count_accuracy": round(float(np.mean([m["found"] == m["speakers"] for m in measured])), 4),
        "count_right": sum(m["found"] == m["speakers"] for m in measured),
        "recordings": measured,
        "mean_der": round(float(np.mean(with_der)), 4) if with_der else None,
    }


def der(rttm: Path, turns: list, collar_each_side_s: float = 0.25) -> float:
    """Diarization error rate against ``rttm`` (pyannote.metrics' collar is the total width)."""
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    reference, hypothesis = Annotation(), Annotation()
    for track, line in enumerate(rttm.read_text().splitlines()):
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            start, duration = float(fields[3]), float(fields[4])
            reference[Segment(start, start + duration), track] = fields[7]
    for track, turn in enumerate(turns):  # a track each: two voices over the same span are both kept
        hypothesis[Segment(turn.start, turn.end), track] = turn.speaker
    metric = DiarizationErrorRate(collar=2 * collar_each_side_s, skip_overlap=False)
    return round(float(metric(reference, hypothesis)), 4)


def _rttm_beside(path: Path) -> Path | None:
    rttm = path.with_suffix(".rttm")
    return rttm if rttm.is_file() else None


def _build_long(data_dir: Path, path: Path, clips: list[str], duration_s: float) -> Path:
    """``clips`` in rounds until ``duration_s`` (whole clips), as 16 kHz mono WAV."""
    audio = [decode_audio(FALCON_CLIP if clip == "falcon" else data_dir / clip) for clip in clips]
    written, index = 0, 0
    with open_wav(path) as out:
        while written < duration_s * SAMPLE_RATE:
            write_samples(out, audio[index % len(audio)])
            written += audio[index % len(audio)].size
            index += 1
    return path


def table(report: dict[str, Any]) -> str:
    """One line per held-out source, for logs and the README."""
    return json.dumps({s: {k: report[s][k] for k in ("rule", "count_right", "count_accuracy", "mean_der")}
                       for s in SOURCES})
