"""``isoscribe bench asr``: the speech stage through the isolation runtime vs direct calls, same run.

Measured on the same clips with identical settings:
* isolated: the speech stage in a warm ``WorkerPool`` worker (model loaded once; wall time measured
  in this process around each task, so IPC is included), plus one cold ``run_isolated`` task
  (spawn + model load + transcribe);
* direct: faster-whisper's ``WhisperModel.transcribe`` called in this process with the options the
  stage uses (``transcription_options``) on the same decoded audio; the diarized case calls the speech
  stage's ``load``/``run`` in this process.
Reported: real-time factors and their ratio, peak RSS (the worker's from TaskStats, this process's
``ru_maxrss`` for the direct calls, which run after every isolated task so nothing else inflates it),
and WER of both paths, which must be identical. The full mode adds a 60 minute file built from the
shared clips: diarization alone and transcription + diarization, each in a fresh worker, peak RSS
against the 2 GB target.
"""

from __future__ import annotations

import json
import logging
import re
import resource
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from isoscribe.audio import SAMPLE_RATE, decode_audio
from isoscribe.config import Settings
from isoscribe.isolation import Limits, StageSpec, WorkerPool, run_isolated
from isoscribe.logs import log_event
from isoscribe.pipeline import speech_request, speech_stage

__all__ = ["main", "make_long_audio", "make_referenced_long_audio", "open_wav", "write_samples", "RSS_TARGET_MB"]

logger = logging.getLogger("isoscribe.bench.asr")

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
LONG_AUDIO_S = 3600.0
RSS_TARGET_MB = 2048.0


def main(quick: bool, results_dir: Path, settings: Settings, data_dir: Path = SHARED_DATA) -> dict[str, Any]:
    clips = _clips(data_dir, quick)
    settings = settings.model_copy(deep=True)
    # Both paths load the speaker encoder with the stage, so the diarized figures exclude model loads.
    settings.diarization.enabled = True
    results: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "model": settings.asr.model,
        "device": settings.asr.device,
        "compute_type": settings.asr.compute_type,
        "clips": [c["path"] for c in clips],
        "audio_s": round(sum(c["duration_s"] for c in clips), 3),
    }
    sample = data_dir / "diarization" / "sample.wav"
    isolated = _isolated(settings, clips, data_dir, sample)
    direct = _direct(settings, clips, data_dir, sample)
    results["isolated"], results["direct"] = isolated["summary"], direct["summary"]
    results["ratios"] = {
        "warm_rtf_isolated_over_direct": _ratio(isolated["summary"]["warm_rtf"], direct["summary"]["warm_rtf"]),
        "cold_wall_isolated_over_direct": _ratio(isolated["summary"]["cold_wall_s"], direct["summary"]["cold_wall_s"]),
        "diarized_rtf_isolated_over_direct": _ratio(
            isolated["summary"]["diarized_rtf"], direct["summary"]["diarized_rtf"]
        ),
        "peak_rss_isolated_over_direct": _ratio(
            isolated["summary"]["peak_rss_mb"], direct["summary"]["peak_rss_mb"]
        ),
    }
    results["wer"] = {
        "isolated": isolated["summary"]["mean_wer"],
        "direct": direct["summary"]["mean_wer"],
        "identical": isolated["texts"] == direct["texts"],
    }
    if not quick:
        results["long_audio"] = _long_audio(settings, data_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "asr.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    log_event(logger, "bench_asr_done", path=results_dir / "asr.json", wer_identical=results["wer"]["identical"])
    return results


def _clips(data_dir: Path, quick: bool) -> list[dict]:
    manifest = json.loads((data_dir / "manifest.json").read_text())["clips"]
    prefixes = ("jfk/jfk.wav", "librispeech/") if quick else ("jfk/", "librispeech/", "librivox/")
    return [c for c in manifest if c["reference_text"] and c["path"].startswith(prefixes)]


def _isolated(settings: Settings, clips: list[dict], data_dir: Path, sample: Path) -> dict[str, Any]:
    stage, limits = speech_stage(settings), Limits(timeout_s=settings.isolation.asr_timeout_s)
    cold_settings = settings.model_copy(deep=True)
    cold_settings.diarization.enabled = False  # like the direct cold path: Whisper only
    cold_started = time.perf_counter()
    cold = run_isolated(speech_stage(cold_settings), _plain(cold_settings, data_dir / clips[0]["path"]), limits)
    cold_wall_s = time.perf_counter() - cold_started
    texts, errors, walls, peaks = [], [], [], [cold.stats.peak_rss_mb]
    with WorkerPool(stage, size=1, prespawn=True, limits=limits) as pool:
        pool.run(_plain(settings, data_dir / clips[0]["path"]))  # warm-up: the first task pays lazy setup
        for clip in clips:
            started = time.perf_counter()
            result = pool.run(_plain(settings, data_dir / clip["path"]))
            walls.append(time.perf_counter() - started)
            texts.append(result.value.text)
            errors.append(_wer(clip["reference_text"], result.value.text))
            peaks.append(result.stats.peak_rss_mb)
        started = time.perf_counter()
        diarized = pool.run(speech_request(settings, sample, diarize=True))
        diarized_wall_s = time.perf_counter() - started
    peaks.append(diarized.stats.peak_rss_mb)
    return {
        "texts": texts,
        "summary": {
            "warm_rtf": sum(walls) / sum(c["duration_s"] for c in clips),
            "cold_wall_s": cold_wall_s,
            "diarized_rtf": diarized_wall_s / diarized.value.duration_s,
            "diarized_speakers": len(diarized.value.speakers),
            "peak_rss_mb": max(peaks),
            "mean_wer": sum(errors) / len(errors),
            "per_clip_wer": [round(e, 4) for e in errors],
        },
    }


def _direct(settings: Settings, clips: list[dict], data_dir: Path, sample: Path) -> dict[str, Any]:
    from isoscribe.stages import speech

    texts, errors, walls, cold_wall_s = _direct_transcriptions(settings, clips, data_dir)
    models = speech.load(settings)
    started = time.perf_counter()
    diarized = speech.run(models, speech_request(settings, sample, diarize=True))
    diarized_wall_s = time.perf_counter() - started
    return {
        "texts": texts,
        "summary": {
            "warm_rtf": sum(walls) / sum(c["duration_s"] for c in clips),
            "cold_wall_s": cold_wall_s,
            "diarized_rtf": diarized_wall_s / diarized.duration_s,
            "diarized_speakers": len(diarized.speakers),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "mean_wer": sum(errors) / len(errors),
            "per_clip_wer": [round(e, 4) for e in errors],
        },
    }


def _direct_transcriptions(
    settings: Settings, clips: list[dict], data_dir: Path
) -> tuple[list[str], list[float], list[float], float]:
    """faster-whisper called directly: (texts, WERs, wall seconds per clip, cold wall seconds).

    The cold time includes importing faster-whisper, as a fresh worker process has to.
    """
    cold_started = time.perf_counter()
    from faster_whisper import WhisperModel

    from isoscribe.models import is_english_only, resolve_model
    from isoscribe.stages.options import transcription_options
    from isoscribe.stages.transcribe import resolve_compute_type, resolve_device
    from isoscribe.tuning import cpu_threads

    asr = settings.asr
    model_dir = resolve_model(asr.model, asr.model_cache_dir)
    device = resolve_device(asr.device)
    model = WhisperModel(
        str(model_dir), device=device, compute_type=resolve_compute_type(asr.compute_type, device),
        cpu_threads=cpu_threads(asr), local_files_only=True,
    )
    english_only = is_english_only(model_dir)

    def transcribe_text(path: Path) -> str:
        options = transcription_options(asr, _plain(settings, path), english_only)
        segments, _ = model.transcribe(decode_audio(path), **options.engine_kwargs())
        return " ".join(s.text.strip() for s in segments).strip()

    transcribe_text(data_dir / clips[0]["path"])
    cold_wall_s = time.perf_counter() - cold_started
    texts, errors, walls = [], [], []
    for clip in clips:
        started = time.perf_counter()
        text = transcribe_text(data_dir / clip["path"])
        walls.append(time.perf_counter() - started)
        texts.append(text)
        errors.append(_wer(clip["reference_text"], text))
    return texts, errors, walls, cold_wall_s


def _plain(settings: Settings, path: Path):
    """A transcription-only request (no diarization) for ``path``."""
    return speech_request(settings, path, diarize=False)


def _long_audio(settings: Settings, data_dir: Path) -> dict[str, Any]:
    """Diarization alone and transcription + diarization of 60 minutes, each in a fresh worker."""
    with tempfile.TemporaryDirectory(prefix="isoscribe-bench-") as temp:
        path = make_long_audio(data_dir, Path(temp) / "hour.wav", LONG_AUDIO_S)
        limits = Limits(timeout_s=settings.isolation.asr_timeout_s)
        report: dict[str, Any] = {"audio_s": LONG_AUDIO_S, "rss_target_mb": RSS_TARGET_MB}
        runs = {
            "diarize_only": StageSpec("isoscribe.stages.diarize", settings, "diarize"),
            "transcribe_and_diarize": speech_stage(settings),
        }
        for name, stage in runs.items():
            result = run_isolated(stage, speech_request(settings, path, diarize=True), limits)
            report[name] = {
                "wall_s": result.stats.wall_s,
                "rtf": result.stats.wall_s / LONG_AUDIO_S,
                "peak_rss_mb": result.stats.peak_rss_mb,
                "under_target": result.stats.peak_rss_mb < RSS_TARGET_MB,
                "speakers": len(result.value.speakers),
                "turns": len(result.value.speaker_turns),
            }
            log_event(logger, "bench_asr_long", run=name, **report[name])
    return report


def make_long_audio(data_dir: Path, path: Path, duration_s: float) -> Path:
    """Real speech from the shared clips, repeated in order until ``duration_s``, written as 16-bit WAV."""
    sources = ["diarization/sample.wav", "jfk/jfk.wav", "long/acoustic_corpus.wav", "diarization/tst00.wav"]
    _write_rounds(path, [decode_audio(data_dir / source) for source in sources], duration_s, whole_clips=False)
    return path


def make_referenced_long_audio(data_dir: Path, path: Path, duration_s: float) -> str:
    """Like ``make_long_audio`` from clips that all have a reference transcript (five voices), whole
    clips only (the file ends after the clip that reaches ``duration_s``); returns the joined reference."""
    manifest = {clip["path"]: clip for clip in json.loads((data_dir / "manifest.json").read_text())["clips"]}
    sources = ["diarization/sample.wav", "jfk/jfk.wav", "long/acoustic_corpus.wav", "long/sonnet001.wav"]
    clips = _write_rounds(path, [decode_audio(data_dir / source) for source in sources], duration_s, whole_clips=True)
    return " ".join(manifest[sources[index % len(sources)]]["reference_text"] for index in range(clips))


def _write_rounds(path: Path, pieces: list[np.ndarray], duration_s: float, whole_clips: bool) -> int:
    """``pieces`` in turn until ``duration_s`` (the last one cut there unless ``whole_clips``); returns
    how many clips were written."""
    total = int(duration_s * SAMPLE_RATE)
    written, index = 0, 0
    with open_wav(path) as out:
        while written < total:
            piece = pieces[index % len(pieces)]
            piece = piece if whole_clips else piece[: total - written]
            write_samples(out, piece)
            written += piece.size
            index += 1
    return index


def open_wav(path: Path) -> wave.Wave_write:
    """A 16 kHz mono 16-bit WAV open for writing ``write_samples``."""
    out = wave.open(str(path), "wb")
    out.setnchannels(1)
    out.setsampwidth(2)
    out.setframerate(SAMPLE_RATE)
    return out


def write_samples(out: wave.Wave_write, samples: np.ndarray) -> None:
    out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def _wer(reference: str, hypothesis: str) -> float:
    """Word error rate after lower-casing and dropping punctuation (word-level Levenshtein)."""
    ref, hyp = _words(reference), _words(hypothesis)
    distances = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        previous_diagonal, distances[0] = distances[0], i
        for j, hyp_word in enumerate(hyp, start=1):
            substitution = previous_diagonal + (ref_word != hyp_word)
            previous_diagonal = distances[j]
            distances[j] = min(distances[j] + 1, distances[j - 1] + 1, substitution)
    return distances[-1] / max(len(ref), 1)


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w\s']", " ", text.lower().replace("-", " ")).split()


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None

