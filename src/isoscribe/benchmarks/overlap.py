"""``isoscribe bench overlap``: where do two voices speak at once? The threshold on segmentation-3.0's
probability of two voices, chosen by leave-one-source-out.

Three sources with reference turns:
* ``mixes``: real readers of the shared clips talking over each other (``make_mix``: a reader, a second
  one who starts 0.5-2.5 s before the first ends, then the first again; none of the clips below);
* ``rendered``: espeak-ng meetings of 2-5 voices (``meetings.make_meeting``, seeds 100-104), which have
  no overlap: what a threshold costs where nobody interrupts;
* ``real``: AMI's tst00 (four speakers, 17.8 of its 30 s with two or more), pyannote's sample and
  Picovoice's falcon test clip.

Each recording is diarized once (resemblyzer, its shipped count); only its overlap turns change with
the threshold. For each source, the threshold with the least mean DER (collar 0.25 s) over the other two
sources (each weighing the same) is measured on it, against no overlap turns and against the rule used
before (the majority of the chunks' most likely classes); the one chosen on all three is shipped
(``overlap.TWO_VOICES_PROBABILITY``). Results in ``overlap.json``.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from isoscribe.audio import SAMPLE_RATE, decode_audio
from isoscribe.benchmarks.asr import open_wav, write_samples
from isoscribe.benchmarks.meetings import make_meeting, meeting_rttm_path
from isoscribe.benchmarks.speaker_count import FALCON_CLIP, der
from isoscribe.config import Settings
from isoscribe.stages import diarize, overlap, vad
from isoscribe.stages.local_speakers import LocalActivity
from isoscribe.transcript import SpeakerClusterRequest

__all__ = ["main", "make_mix", "choose_threshold"]

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
THRESHOLDS = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
BEFORE, NONE = "majority_of_classes", "no_overlap_turns"
READERS = {
    "jfk": ["jfk/jfk.wav"],
    "librispeech 1089": ["librispeech/1089-134686-0000.wav", "librispeech/1089-134686-0002.wav"],
    "librispeech 61": ["librispeech/61-70968-0000.flac"],
    "librispeech 2412": ["librispeech/2412-153948-0000.flac"],
    "librivox": ["librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
                 "librivox/sense_and_sensibility_01_austen_64kb-0920.wav"],
    "sonnet": ["long/sonnet001.wav"],
    "mfa": ["long/acoustic_corpus.wav"],
}
"""The shared clips of each reader (none of the ``real`` source's recordings)."""
TURN_S = 8.0


def main(quick: bool, results_dir: Path, settings: Settings, data_dir: Path = SHARED_DATA) -> dict[str, Any]:
    with_overlap = settings.diarization.model_copy(update={"overlap": True})
    model = diarize.load(settings.model_copy(update={"diarization": with_overlap}))
    with tempfile.TemporaryDirectory(prefix="isoscribe-overlap-") as folder:
        rows = [dict(source=source, name=path.stem, **_ders(model, path, rttm))
                for source, path, rttm in _recordings(data_dir, Path(folder), quick)]
    report: dict[str, Any] = {"sources": _mean_ders(rows), "recordings": rows, "left_out": {}}
    sources = tuple(report["sources"])
    for held_out in sources:
        chosen = choose_threshold(report["sources"], tuple(s for s in sources if s != held_out))
        means = report["sources"][held_out]
        report["left_out"][held_out] = {"threshold": chosen, "mean_der": means[str(chosen)],
                                        BEFORE: means[BEFORE], NONE: means[NONE]}
    report["chosen_on_all_sources"] = choose_threshold(report["sources"], sources)
    report["shipped"] = overlap.TWO_VOICES_PROBABILITY
    (results_dir / "overlap.json").write_text(json.dumps(report, indent=1, sort_keys=True))
    return {key: report[key] for key in ("left_out", "chosen_on_all_sources", "shipped")}


def choose_threshold(sources: dict[str, dict[str, float]], tuned_on: tuple[str, ...]) -> float:
    """The threshold with the least mean DER over ``tuned_on`` (each source's mean weighing the same)."""
    return min(THRESHOLDS, key=lambda threshold: np.mean([sources[s][str(threshold)] for s in tuned_on]))


def make_mix(path: Path, seed: int, data_dir: Path = SHARED_DATA) -> Path:
    """Two readers, the second starting 0.5-2.5 s before the first ends, then the first again; each
    turn the first ``TURN_S`` of a clip at -3 to +3 dB. The RTTM beside it holds each turn's VAD speech."""
    rng = np.random.default_rng(seed)
    first, second = rng.choice(sorted(READERS), 2, replace=False)
    turns = [(first, READERS[first][0]), (second, READERS[second][-1]), (first, READERS[first][-1])]
    mix, rows, start_s = np.zeros(int(4 * TURN_S * SAMPLE_RATE), np.float32), [], 0.5
    for reader, clip in turns:
        audio = decode_audio(data_dir / clip)[: int(TURN_S * SAMPLE_RATE)]
        audio = audio * (0.05 / max(float(np.sqrt(np.mean(audio**2))), 1e-6)) * 10 ** (rng.uniform(-3, 3) / 20)
        offset = int(start_s * SAMPLE_RATE)
        mix[offset : offset + audio.size] += audio
        rows += [f"SPEAKER {path.stem} 1 {start_s + a:.3f} {b - a:.3f} <NA> <NA> {reader.replace(' ', '_')} <NA> <NA>"
                 for a, b in vad.detect(audio).seconds]
        start_s += audio.size / SAMPLE_RATE - rng.uniform(0.5, 2.5)
    with open_wav(path) as out:
        write_samples(out, mix[: int((start_s + 3.0) * SAMPLE_RATE)])
    path.with_suffix(".rttm").write_text("\n".join(rows) + "\n")
    return path


def _recordings(data_dir: Path, folder: Path, quick: bool) -> list[tuple[str, Path, Path]]:
    seeds = range(100, 102) if quick else range(100, 105)
    mixes = [("mixes", path, path.with_suffix(".rttm"))
             for seed in range(6 if quick else 12) for path in [make_mix(folder / f"mix{seed}.wav", seed, data_dir)]]
    rendered = [("rendered", path, meeting_rttm_path(path)) for seed in seeds for k in (2, 3, 4, 5)
                for path in [make_meeting(folder / f"meeting{k}_{seed}.wav", k, seed)]]
    real = [("real", data_dir / "diarization" / f"{name}.wav", data_dir / "diarization" / f"{name}.rttm")
            for name in ("tst00", "sample")]
    real.append(("real", FALCON_CLIP, FALCON_CLIP.with_suffix(".rttm")))
    return mixes + rendered + real


def _ders(model: diarize.Diarizer, path: Path, rttm: Path) -> dict[str, float]:
    """DER of the recording's turns with each threshold's overlap turns, the rule before, and none."""
    audio = decode_audio(path)
    vectors = diarize.speaker_vectors(model, audio, vad.detect(audio).seconds)
    activity = overlap.local_activity(model.segmenter, audio)
    frame_duration_s = model.segmenter.frame_duration_s
    arms = {str(t): overlap.overlap_regions(activity, frame_duration_s, t) for t in THRESHOLDS}
    arms[BEFORE] = _majority_regions(activity, frame_duration_s)
    arms[NONE] = []
    turns = diarize.cluster_pieces(model, SpeakerClusterRequest([replace(vectors, overlaps=[])]))
    return {arm: der(rttm, overlap.add_overlap_turns(turns, spans)) for arm, spans in arms.items()}


def _majority_regions(activity: LocalActivity, frame_duration_s: float) -> list[tuple[float, float]]:
    """The rule before: two voices in the most likely class of most chunks that hear the frame (as a
    probability of 1 or 0 per chunk, above one half)."""
    classes = replace(activity, two_voices=(activity.active.sum(axis=-1) >= 2).astype(np.float32))
    return overlap.overlap_regions(classes, frame_duration_s, 0.5)


def _mean_ders(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    arms = [key for key in rows[0] if key not in ("source", "name")]
    return {source: {arm: round(float(np.mean([r[arm] for r in rows if r["source"] == source])), 4) for arm in arms}
            for source in dict.fromkeys(r["source"] for r in rows)}
