"""``isoscribe bench throughput``: ``isoscribe run`` with default settings against a direct faster-whisper
loop as peers run it (one process, all threads), on the same distinct files in the same run.

* Files: pairs of the shared clips that have a reference, joined with 0.5 s of silence, each pair once,
  until there are ``FULL_AUDIO_S`` (``--quick``: ``QUICK_AUDIO_S``) seconds; every file has distinct
  bytes, so the batch's ledger transcribes each.
* Baseline: one process, ``WhisperModel(cpu_threads=cores)``, a loop over the files with the options
  the speech stage uses (``transcription_options``: same model, VAD, word timestamps), model load included.
* Candidate: ``isoscribe run FILES --no-diarize --no-summarize --formats json`` with no other flag, in a
  fresh interpreter, start-up included; the machine's calibration is made first and timed apart.
* Baseline and candidate alternate (``REPEATS`` times in the full run); each keeps its best wall time.
* Grid: the same batch with every ``--workers`` × ``asr.cpu_threads`` pair on the cores (on a third of
  the files), for the PNG.
* Long file (full run only): a 60-minute file of referenced clips transcribed and diarized, one
  speech worker against the defaults, each scored against the joined references.
* VAD once: one Silero pass over the files (and the long file), timed alone. The speech stage now runs
  one pass per file where it ran one for the decoder, one for diarization, one for language cuts
  (multilingual models) and one per stretch checked for skipped speech: a diarized file saves at least
  one pass, a multilingual diarized one at least two.
WER is computed for both paths against the joined references; cores and load average are recorded.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from isoscribe.audio import SAMPLE_RATE, decode_audio
from isoscribe.benchmarks.asr import SHARED_DATA, _wer, make_referenced_long_audio, open_wav, write_samples
from isoscribe.config import Settings
from isoscribe.files import write_atomic
from isoscribe.tuning import available_cores, cached_calibration, calibrate

__all__ = ["main", "distinct_files"]

FULL_AUDIO_S = 600.0
QUICK_AUDIO_S = 120.0
REPEATS = 2
LONG_AUDIO_S = 3600.0
LONG_FILE_SPEAKERS = 5
"""Voices in ``make_referenced_long_audio``: two in the pyannote sample, JFK, the MFA speaker, the sonnet's reader."""
GAP_S = 0.5
RUN_FLAGS = ["--no-diarize", "--no-summarize", "--formats", "json", "--no-progress"]


def main(quick: bool, results_dir: Path, settings: Settings, data_dir: Path = SHARED_DATA) -> dict[str, Any]:
    cores = available_cores()
    results: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "model": settings.asr.model,
        "cores": cores,
        "load_average_start": _load_average(),
    }
    calibration_started = time.perf_counter()
    calibration = cached_calibration(settings.asr) or calibrate(settings)
    results["calibration"] = {**calibration.to_dict(), "wall_s": round(time.perf_counter() - calibration_started, 2)}
    with tempfile.TemporaryDirectory(prefix="isoscribe-bench-throughput-") as scratch:
        scratch_dir = Path(scratch)
        files = distinct_files(data_dir, scratch_dir / "audio", QUICK_AUDIO_S if quick else FULL_AUDIO_S)
        audio_s = sum(f["duration_s"] for f in files)
        results["files"], results["audio_s"] = len(files), round(audio_s, 1)
        baseline, candidate = [], []
        for repeat in range(1 if quick else REPEATS):
            baseline.append(_direct_loop(settings, files, cores))
            candidate.append(_isoscribe_run(files, scratch_dir / f"default-{repeat}", {}))
        results["direct"] = _best(baseline, audio_s)
        results["isoscribe"] = _best(candidate, audio_s)
        results["throughput_ratio"] = round(results["direct"]["wall_s"] / results["isoscribe"]["wall_s"], 3)
        results["wer_difference"] = round(results["isoscribe"]["wer"] - results["direct"]["wer"], 4)
        results["grid"] = _grid(files[: max(3, len(files) // 3)], scratch_dir, cores)
        results["vad_once"] = {"pass_s": _vad_pass_s([f["path"] for f in files])}
        if not quick:
            results["long_file"] = _long_file(data_dir, scratch_dir)
            results["vad_once"]["long_file_pass_s"] = _vad_pass_s([scratch_dir / "hour" / "hour.wav"])
        results["vad_once"].update(_vad_saving(results))
    results["load_average_end"] = _load_average()
    results["goals"] = _goals(results)
    results_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(results_dir / "throughput.json", json.dumps(results, indent=2, sort_keys=True) + "\n")
    write_atomic(results_dir / "throughput.png", _plot(results))
    return results


def distinct_files(data_dir: Path, folder: Path, total_s: float) -> list[dict[str, Any]]:
    """Pairs of referenced mono clips joined by silence, each pair once, until ``total_s`` of audio."""
    manifest = json.loads((data_dir / "manifest.json").read_text())["clips"]
    clips = [c for c in manifest if c["reference_text"] and c["channels"] == 1 and c["path"] != "jfk/jfk.flac"]
    audio = {c["path"]: decode_audio(data_dir / c["path"]) for c in clips}
    folder.mkdir(parents=True, exist_ok=True)
    files: list[dict[str, Any]] = []
    total = 0.0
    step = 1
    while total < total_s:
        for index, first in enumerate(clips):
            if total >= total_s:
                break
            second = clips[(index + step) % len(clips)]
            samples = np.concatenate([audio[first["path"]], np.zeros(int(GAP_S * SAMPLE_RATE), np.float32),
                                      audio[second["path"]]])
            path = folder / f"pair-{len(files):03d}.wav"
            _write_wav(path, samples)
            reference = f"{first['reference_text']} {second['reference_text']}"
            files.append({"path": path, "duration_s": samples.size / SAMPLE_RATE, "reference": reference})
            total += samples.size / SAMPLE_RATE
        step += 1
    return files


def _write_wav(path: Path, samples: np.ndarray) -> None:
    with open_wav(path) as out:
        write_samples(out, samples)


def _duration_s(path: Path) -> float:
    with wave.open(str(path), "rb") as audio:
        return audio.getnframes() / audio.getframerate()


def _direct_loop(settings: Settings, files: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    """faster-whisper as peers call it, in a fresh interpreter so that nothing here is shared with it."""
    script = (
        "import json, sys, time\n"
        "from isoscribe.benchmarks.throughput import direct_transcriptions\n"
        "print(json.dumps(direct_transcriptions(json.loads(sys.argv[1]), int(sys.argv[2]))))\n"
    )
    paths = [str(f["path"]) for f in files]
    started = time.perf_counter()
    output = subprocess.run(
        [sys.executable, "-c", script, json.dumps(paths), str(cores)], check=True, capture_output=True, text=True
    ).stdout
    wall_s = time.perf_counter() - started
    texts = json.loads(output.splitlines()[-1])
    return {"wall_s": wall_s, "wer": _mean_wer(files, texts), "threads": cores, "load_average_after": _load_average()}


def direct_transcriptions(paths: list[str], threads: int) -> list[str]:
    """One WhisperModel with ``threads`` threads, one file after another (run by ``_direct_loop``)."""
    from faster_whisper import WhisperModel

    from isoscribe.config import load_settings
    from isoscribe.models import resolve_model
    from isoscribe.pipeline import speech_request
    from isoscribe.stages.options import transcription_options
    from isoscribe.stages.transcribe import resolve_compute_type

    settings = load_settings()
    asr = settings.asr
    model = WhisperModel(
        str(resolve_model(asr.model, asr.model_cache_dir)), device="cpu",
        compute_type=resolve_compute_type(asr.compute_type, "cpu"), cpu_threads=threads, local_files_only=True,
    )
    english_only = not model.model.is_multilingual
    texts = []
    for path in paths:
        options = transcription_options(asr, speech_request(settings, path, diarize=False), english_only)
        segments, _ = model.transcribe(decode_audio(path), **options.engine_kwargs())
        texts.append(" ".join(s.text.strip() for s in segments).strip())
    return texts


def _isoscribe_run(files: list[dict[str, Any]], out_dir: Path, env: dict[str, str], *flags: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "isoscribe.cli", "run", *[str(f["path"]) for f in files],
               "--out", str(out_dir), *RUN_FLAGS, *flags]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, **env})
    wall_s = time.perf_counter() - started
    texts = []
    for f in files:
        stem = f["path"].stem
        transcript = json.loads((out_dir / stem / f"{stem}.json").read_text())
        texts.append(" ".join(s["text"].strip() for s in transcript["segments"]).strip())
    report = json.loads((out_dir / "report.json").read_text())
    return {"wall_s": wall_s, "wer": _mean_wer(files, texts), "workers": report["workers"],
            "load_average_after": _load_average()}


def _mean_wer(files: list[dict[str, Any]], texts: list[str]) -> float:
    """Word errors over reference words, all files together."""
    errors = sum(_wer(f["reference"], text) * len(f["reference"].split()) for f, text in zip(files, texts))
    return round(errors / sum(len(f["reference"].split()) for f in files), 4)


def _best(runs: list[dict[str, Any]], audio_s: float) -> dict[str, Any]:
    best = min(runs, key=lambda run: run["wall_s"])
    return {
        **{k: v for k, v in best.items() if k not in ("wall_s", "load_average_after")},
        "wall_s": round(best["wall_s"], 2),
        "audio_s_per_s": round(audio_s / best["wall_s"], 2),
        "runs": [{"wall_s": round(run["wall_s"], 2), "load_average_after": run["load_average_after"]} for run in runs],
    }


def _grid(files: list[dict[str, Any]], scratch_dir: Path, cores: int) -> list[dict[str, Any]]:
    audio_s = sum(f["duration_s"] for f in files)
    cells = []
    for workers in range(1, cores + 1):
        for threads in range(1, cores + 1):
            env = {"ISOSCRIBE_ASR__CPU_THREADS": str(threads)}
            run = _isoscribe_run(files, scratch_dir / f"grid-{workers}x{threads}", env, "--workers", str(workers))
            cells.append({"workers": workers, "threads": threads, "wall_s": round(run["wall_s"], 2),
                          "audio_s_per_s": round(audio_s / run["wall_s"], 2), "wer": run["wer"]})
    return cells


def _long_file(data_dir: Path, scratch_dir: Path) -> dict[str, Any]:
    """60 minutes transcribed and diarized: one speech worker with CTranslate2's default threads (the
    settings before ``auto``; its pieces one after another) against the defaults, both scored against
    the clips' references."""
    (scratch_dir / "hour").mkdir()
    path = scratch_dir / "hour" / "hour.wav"
    reference = make_referenced_long_audio(data_dir, path, LONG_AUDIO_S)
    flags = ["--diarize", "--no-summarize", "--formats", "json", "--no-progress"]
    runs: dict[str, Any] = {"audio_s": round(_duration_s(path), 1), "speakers_expected": LONG_FILE_SPEAKERS}
    sequential = (["--workers", "1"], {"ISOSCRIBE_ASR__CPU_THREADS": "0"})
    for name, (extra, env) in (("sequential", sequential), ("default", ([], {}))):
        out_dir = scratch_dir / f"hour-{name}"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "isoscribe.cli", "run", str(path), "--out", str(out_dir), *flags, *extra],
                       check=True, capture_output=True, env={**os.environ, **env})
        runs[name] = {"wall_s": round(time.perf_counter() - started, 2), "load_average_after": _load_average()}
        transcript = json.loads((out_dir / "hour" / "hour.json").read_text())
        runs[name]["speakers"] = len(transcript["speakers"])
        runs[name]["wer"] = round(_wer(reference, " ".join(s["text"].strip() for s in transcript["segments"])), 4)
    runs["wer_difference"] = round(runs["default"]["wer"] - runs["sequential"]["wer"], 4)
    runs["ratio"] = round(runs["default"]["wall_s"] / runs["sequential"]["wall_s"], 3)
    return runs


def _vad_pass_s(paths: list[Path]) -> float:
    """Wall seconds of one VAD pass (``stages.vad.detect``, as the speech stage runs it) over ``paths``."""
    from isoscribe.pipeline.pieces import piece_cuts
    from isoscribe.stages import vad
    from isoscribe.transcript import PIECE_S

    total = 0.0
    for path in paths:
        audio = decode_audio(path)
        started = time.perf_counter()
        vad.detect(audio, piece_cuts(audio, PIECE_S))
        total += time.perf_counter() - started
    return round(total, 2)


def _vad_saving(results: dict[str, Any]) -> dict[str, Any]:
    """What running the VAD once saves, in passes of the timings above (skipped-speech stretches not counted)."""
    vad_once = results["vad_once"]
    saving = {"share_of_isoscribe_wall_per_pass": round(vad_once["pass_s"] / results["isoscribe"]["wall_s"], 4)}
    if "long_file_pass_s" in vad_once:
        saving["long_file_saved_s_at_least"] = vad_once["long_file_pass_s"]
        saving["long_file_saved_share_at_least"] = round(
            vad_once["long_file_pass_s"] / results["long_file"]["default"]["wall_s"], 4
        )
    return saving


def _goals(results: dict[str, Any]) -> dict[str, bool]:
    goals = {
        "throughput_ratio_at_least_1_6": results["throughput_ratio"] >= 1.6,
        "wer_within_0_005": abs(results["wer_difference"]) <= 0.005,
    }
    if "long_file" in results:
        goals["long_file_ratio_at_most_0_6"] = results["long_file"]["ratio"] <= 0.6
        goals["long_file_wer_within_0_01"] = abs(results["long_file"]["wer_difference"]) <= 0.01
    return goals


def _load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _plot(results: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = results["grid"]
    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    for threads in sorted({cell["threads"] for cell in grid}):
        cells = [cell for cell in grid if cell["threads"] == threads]
        axes.plot([c["workers"] for c in cells], [c["audio_s_per_s"] for c in cells], marker="o",
                  label=f"{threads} thread(s) per worker")
    axes.set_xlabel("speech workers (--workers)")
    axes.set_ylabel("audio seconds per wall second")
    axes.set_xticks(sorted({cell["workers"] for cell in grid}))
    load = results["load_average_start"]
    axes.set_title(f"isoscribe run throughput, {results['cores']} cores, load {load[0]:.2f} at start", fontsize="small")
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
