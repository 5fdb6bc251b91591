"""The diarization section of ``isoscribe bench accuracy``: CAM++ against resemblyzer in one run.

For each backend: the count rule chosen by leave-one-source-out and what it gives on each held-out
source (``speaker_count``: count accuracy, DER at collar 0.25 s and 0), counting segmentation's
local-speaker units (``count``, the default) and windows alone (``count_on_windows``, the rule before
them, from the same vectors), the known-speaker threshold
chosen the same way (``known_speakers``), and the 60-minute five-voice file (``asr.make_referenced_long_audio``)
diarized on one worker (the isolated diarize stage: speakers, wall time, real-time factor, peak RSS) and
from 5-minute pieces' vectors clustered together (speakers). Ratios are CAM++ over resemblyzer.

``refresh(results_dir, settings)`` recomputes only this section of an existing ``accuracy.json``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from isoscribe.audio import SAMPLE_RATE, decode_audio
from isoscribe.benchmarks import known_speakers, speaker_count
from isoscribe.benchmarks.asr import SHARED_DATA, make_referenced_long_audio
from isoscribe.config import DiarizationSettings, Settings
from isoscribe.files import write_atomic
from isoscribe.logs import log_event
from isoscribe.pipeline.pieces import piece_cuts, piece_range
from isoscribe.stages import diarize, vad
from isoscribe.transcript import PIECE_S, SpeakerClusterRequest

__all__ = ["diarization_section", "diarization_acceptance", "refresh", "BACKENDS"]

logger = logging.getLogger("isoscribe.bench.diarization")

BACKENDS = ("campplus", "resemblyzer")
HOUR_S = 3600.0
HOUR_SPEAKERS = 5


def diarization_section(settings: Settings, data_dir: Path, temp: Path, quick: bool) -> dict[str, Any]:
    recordings = speaker_count.recordings(data_dir, temp / "count", quick)
    voices = known_speakers.voices(data_dir, temp / "voices")
    hour_s = 600.0 if quick else HOUR_S
    hour = temp / "hour.wav"
    make_referenced_long_audio(data_dir, hour, hour_s)
    section: dict[str, Any] = {"hour_file": {"audio_s": round(decode_audio(hour).size / SAMPLE_RATE, 1),
                                             "speakers_expected": HOUR_SPEAKERS}}
    for backend in BACKENDS:
        model = diarize.load(_settings(settings, backend))
        rows = [_row(model, recording) for recording in recordings]
        on_windows = [_on_windows(row, model.count_rule.eigengap_floor) for row in rows]
        section[backend] = {
            "count": speaker_count.leave_one_source_out(model, rows),
            "count_on_windows": speaker_count.leave_one_source_out(model, on_windows),
            "shipped_rule": {"rule": speaker_count.rule_fields(model.count_rule), **{
                source: speaker_count.measure(model, model.count_rule, rows, source) for source in speaker_count.SOURCES}},
            "known_speakers": known_speakers.leave_one_source_out(known_speakers.similarity_pairs(model, voices)),
            "shipped_known_speaker_similarity": model.known_speaker_similarity,
        }
        section["hour_file"][backend] = {**_one_worker(settings, backend, hour), "speakers_in_pieces": _in_pieces(model, hour)}
        log_event(logger, "bench_diarization", backend=backend, hour=section["hour_file"][backend],
                  count=speaker_count.table(section[backend]["count"]))
    ours, today = section["hour_file"]["campplus"], section["hour_file"]["resemblyzer"]
    section["hour_file"]["time_ratio"] = round(ours["wall_s"] / today["wall_s"], 2)
    section["hour_file"]["memory_ratio"] = round(ours["peak_rss_mb"] / today["peak_rss_mb"], 2)
    return section


def diarization_acceptance(section: dict[str, Any]) -> dict[str, bool]:
    """The issue's targets for the default backend: renders on the rule chosen without them, the rest
    with the shipped rule."""
    backend = section[DiarizationSettings().backend]
    real = {row["recording"]: row for row in backend["shipped_rule"]["real"]["recordings"]}
    hour = section["hour_file"][DiarizationSettings().backend]
    ours, today = section["hour_file"]["campplus"], section["hour_file"]["resemblyzer"]
    return {
        "speaker_count_right_on_90_percent_of_held_out_renders": backend["count"]["rendered"]["count_accuracy"] >= 0.9,
        "speaker_count_right_on_4_of_5_shared_real_clips": sum(
            real[path]["found"] == k for path, k in speaker_count.REAL_COUNTS.items()) >= 4,
        "falcon_der_at_most_0_15": "falcon test clip" in real and real["falcon test clip"]["der"] <= 0.15,
        "tst00_der_at_most_0_45": real["diarization/tst00.wav"]["der"] <= 0.45,
        "hour_file_5_plus_minus_1_speakers_same_in_pieces": (
            abs(hour["speakers_whole"] - HOUR_SPEAKERS) <= 1 and hour["speakers_in_pieces"] == hour["speakers_whole"]),
        "campplus_within_1_5x_of_resemblyzer_time_and_memory": max(
            ours["wall_s"] / today["wall_s"], ours["peak_rss_mb"] / today["peak_rss_mb"]) <= 1.5,
    }


def refresh(results_dir: Path, settings: Settings, data_dir: Path = SHARED_DATA, quick: bool = False) -> dict:
    path = Path(results_dir) / "accuracy.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="isoscribe-diarization-") as temp:
        results["diarization"] = diarization_section(settings, data_dir, Path(temp), quick)
    results.pop("speakers", None)
    results.setdefault("acceptance", {}).pop("speaker_count_right_on_90_percent_of_rendered", None)
    results["acceptance"].update(diarization_acceptance(results["diarization"]))
    write_atomic(path, json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results["diarization"]


def _settings(settings: Settings, backend: str) -> Settings:
    diarization = settings.diarization.model_copy(update={"enabled": True, "device": "cpu", "backend": backend})
    return settings.model_copy(update={"diarization": diarization})


def _row(model: diarize.Diarizer, recording: speaker_count.Recording) -> dict[str, Any]:
    vectors = speaker_count.vectors_of(model, recording)
    return {"name": recording.name, "source": recording.source, "speakers": recording.speakers,
            "rttm": recording.rttm, "vectors": vectors,
            "grid": speaker_count.grid_counts(vectors, model.count_rule.eigengap_floor)}


def _one_worker(settings: Settings, backend: str, hour: Path) -> dict[str, Any]:
    from isoscribe.isolation import Limits, StageSpec, run_isolated
    from isoscribe.pipeline import speech_request

    stage_settings = _settings(settings, backend)
    stage = StageSpec("isoscribe.stages.diarize", stage_settings, "diarize")
    result = run_isolated(stage, speech_request(stage_settings, hour), Limits(timeout_s=3600))
    audio_s = result.value.duration_s
    return {
        "speakers_whole": len(result.value.speakers),
        "wall_s": round(result.stats.wall_s, 1),
        "real_time_factor": round(result.stats.wall_s / audio_s, 4),
        "peak_rss_mb": round(result.stats.peak_rss_mb, 1),
    }


def _on_windows(row: dict[str, Any], eigengap_floor: bool) -> dict[str, Any]:
    """The recording's row counted on windows alone (the rule before local speakers)."""
    vectors = speaker_count.without_units(row["vectors"])
    return {**row, "vectors": vectors, "grid": speaker_count.grid_counts(vectors, eigengap_floor)}


def _in_pieces(model: diarize.Diarizer, hour: Path) -> int:
    """Speakers when the file comes in ``PIECE_S`` pieces: VAD and vectors per piece, one clustering."""
    audio = decode_audio(hour)
    cuts = piece_cuts(audio, PIECE_S)
    pieces = []
    for index in range(len(cuts) - 1):
        start, end = piece_range(cuts, index, len(cuts) - 1)
        regions = vad.detect(audio, [start, end]).seconds
        pieces.append(diarize.speaker_vectors(model, audio, regions, start / SAMPLE_RATE, end / SAMPLE_RATE))
    return len({turn.speaker for turn in diarize.cluster_pieces(model, SpeakerClusterRequest(pieces))})
